"""Words and figures a person reads while and after training: phase texts, time left, a verdict.

The engine (core.training.train) records; this module turns records into plain language; the Train page
only shows the result. Nothing here imports TensorFlow or Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.jobs import JobSnapshot
from core.models.run import Run
from core.training.config import TrainConfig

#: Phase texts, named once (the engine sets them, the page and tests read them).
PHASE_DECODING = "Preparing: decoding images"
PHASE_RESTYLING = "Preparing: giving training images other slices' intensities"
PHASE_COMPILING = "Preparing: compiling the model for the first batch, usually under a minute"
PHASE_CANCELLING = "Cancelling…"
MIN_MEASURED_BATCHES = 2  # no time estimate before this many batches after the first were timed


def seconds_left(measured_batches: int, measured_seconds: float, remaining_batches: int,
                 min_batches: int = MIN_MEASURED_BATCHES) -> float | None:
    """Time left from measured steps only, or None while there are too few to say.

    Args:
        measured_batches: batches finished after the first one (the first batch also traces
            the graph, which takes far longer than a step, so it never counts).
        measured_seconds: wall time those batches took (validation passes in between included).
        remaining_batches: batches still to run in the whole job.
    """
    if measured_batches < min_batches or measured_seconds <= 0 or remaining_batches < 0:
        return None
    return measured_seconds / measured_batches * remaining_batches


@dataclass(frozen=True)
class Verdict:
    """A plain reading of a finished run: ``level`` is success, info or warning (the page's colour)."""

    level: str
    headline: str
    advice: str


def fmt_seconds(s: float | None) -> str:
    """A duration as people read it: seconds up to 90, then minutes; "…" when not known yet."""
    if s is None:
        return "…"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def progress_text(snap: JobSnapshot) -> str:
    """The Train page's progress line: phase, epoch and batch, time left, or that it is cancelling."""
    if snap.cancel_requested:
        return f"{PHASE_CANCELLING} (finishing the current step; nothing will be saved)"
    text = snap.phase or "Starting"
    if snap.batches and snap.batch:
        text += f" · epoch {snap.epoch}/{snap.epochs} · batch {snap.batch}/{snap.batches}"
        text += f" · about {fmt_seconds(snap.eta_s)} left" if snap.eta_s is not None else " · estimating the time left"
    return text


def chance_level(n_classes: int) -> float:
    """Accuracy of guessing among ``n_classes`` balanced classes."""
    return 1.0 / max(1, n_classes)


def training_verdict(val_accuracy: float, macro_f1: float, n_classes: int, epochs_run: int,
                     epochs_planned: int) -> Verdict:
    """What a validation score means, in words, with a next step when it is poor.

    Near chance (within 10 points of 1/k, or macro-F1 below 0.3) the model learned nothing
    useful; a middling score is a start; a high score is explained with what it does not prove.
    """
    chance = chance_level(n_classes)
    figures = (f"Validation accuracy {val_accuracy:.1%}; guessing among {n_classes} classes would score about "
               f"{chance:.0%}.")
    if val_accuracy < chance + 0.10 or macro_f1 < 0.3:
        few = epochs_run <= 3 or epochs_run < epochs_planned // 2
        why = ("likely too few epochs" if few else "likely too small a dataset, too high a learning rate or "
               "too small a model")
        return Verdict("warning", f"The model learned nothing useful yet: {figures}",
                       f"This is about chance level: {why}. Try more epochs (20 or more), keep class weighting "
                       "on, and if it stays at chance lower the learning rate (e.g. 1e-3) or widen the model.")
    if val_accuracy < 0.80:
        return Verdict("info", f"The model learned something, but not enough to rely on: {figures}",
                       f"{1 - val_accuracy:.0%} of the validation images are misclassified. More epochs, more "
                       "data or a transfer model usually help.")
    return Verdict("success", f"A good validation score: {figures}",
                   f"About {val_accuracy:.0%} of images the model did not train on were classified correctly. "
                   "Validation images guided early stopping, so confirm on the held-out test split (Evaluate "
                   "page) before trusting the figure.")


def finished_summary(run: Run, epochs_run: int, total_s: float | None = None) -> tuple[str, Verdict]:
    """What the Train page says when a run has finished: its figures, its run id, and a verdict.

    ``total_s`` (the job's whole time) includes the calibration after saving, which the card's
    training time leaves out (issue 24: "Finished in 2.1 min" hid 40-70 s of calibration).
    """
    res = run.card.results
    took = (f"in {fmt_seconds(total_s)} in all ({fmt_seconds(run.card.train_seconds)} training, the rest calibrating "
            "the probabilities and warnings)" if total_s else f"in {fmt_seconds(run.card.train_seconds)}")
    message = (f"Finished: validation accuracy {res.val_accuracy:.1%} (macro-F1 {res.val_macro_f1:.3f}, "
               f"ECE {res.val_ece:.3f}) {took}. Saved as model run {run.run_id} (listed under Past runs below "
               "and on the Evaluate and Predict & Explain pages).")  # not the server's folder: a browser user cannot open it
    verdict = training_verdict(res.val_accuracy, res.val_macro_f1, len(run.class_names), epochs_run,
                               TrainConfig.from_card(run.card).epochs)
    return message, verdict


@dataclass(frozen=True)
class TrainSettings:
    """What a training job was started with (``Job.settings``), shown when a page reattaches."""

    config: TrainConfig
    dataset: str  # the dataset's name, for people


def settings_rows(config: TrainConfig, dataset: str) -> list[tuple[str, str]]:
    """A training configuration as (label, value) rows a person reads."""
    from core.models.architectures import ARCHITECTURES
    from core.training.augment import describe_augment

    arch = ARCHITECTURES.get(config.arch)
    rows = [("Dataset", dataset), ("Architecture", arch.title if arch else str(config.arch)),
            ("Image size", f"{config.image_size} px"), ("Epochs (at most)", str(config.epochs)),
            ("Batch size", str(config.batch_size)), ("Learning rate", f"{config.learning_rate:g}"),
            ("Split", "leakage-free" if config.leakage_free else "the folder's own"),
            ("Augmentation", describe_augment(config.augment))]
    if config.max_train_batches:
        rows.append(("Batches per epoch (capped)", str(config.max_train_batches)))
    if config.precision != "float32":
        from core.training.options import PRECISIONS

        rows.append(("Precision", PRECISIONS.title(config.precision)))
    return rows

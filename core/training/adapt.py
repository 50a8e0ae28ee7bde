"""Site adaptation: a registered model fine-tuned on a few labelled images of a new site, as a NEW run.

The recipe, by principle (the issue's probe: 62 % -> 77 % on another source, in-source
accuracy kept within half a point):

- **replay**: a class-balanced sample of the parent's own training images is mixed in, with the
  same preprocessing, so the model does not forget what it knew (without replay in-source
  accuracy fell 5 points);
- the parent's **augmentation**, a **low learning rate** (the weights move a little, not
  re-learn), **class balance** within the site and within the replay, and the two carrying
  equal weight, so 100 site images are not drowned by 400 replayed ones;
- **early stopping** on the site's validation part: the epoch with the lowest validation loss;
- temperature, warnings and prediction sets **refitted on the site's validation part**.

The parent is never changed. A cancel, a failure, or a parent deleted or changed meanwhile
leaves nothing in the registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.jobs import Job, JobCancelled
from core.training.adapt_data import site_weights, source_test, source_test_files  # noqa: F401 (public here too)
from core.training.adapt_verdict import adaptation_verdict


@dataclass(frozen=True)
class AdaptConfig:
    """How a model is adapted to a site (saved in the new run's card as its recipe)."""

    epochs: int = 8  # upper bound; the best site-validation epoch is kept
    learning_rate: float = 1e-4  # low: a few dozen parent steps' worth of change, not a new training
    replay: int = 400  # parent training images mixed in (class-balanced)
    batch_size: int = 32
    patience: int = 3  # epochs without a better site-validation loss before stopping
    seed: int = 1
    source_check: int = 400  # parent validation images scored each epoch (0: no forgetting guard)
    max_source_drop: float = 0.005  # the epoch kept may lose at most this much accuracy on them
    max_class_drop: float = 0.03  # ... and at most this much of any class's recall (or two of its images)

    def __post_init__(self) -> None:
        checks = ((1 <= self.epochs <= 200, "epochs must be between 1 and 200"),
                  (0 < self.learning_rate < 0.1, "the learning rate must be above 0 and below 0.1"),
                  (0 <= self.replay <= 20000, "replayed images must be between 0 and 20000"),
                  (1 <= self.batch_size <= 1024, "the batch size must be between 1 and 1024"),
                  (0 <= self.patience <= 200, "patience must be between 0 and 200"),
                  (0 <= self.source_check <= 20000, "source images checked must be between 0 and 20000"),
                  (0 <= self.max_source_drop <= 1, "the allowed source drop must be between 0 and 1"),
                  (0 <= self.max_class_drop <= 1, "the allowed drop of a class's recall must be between 0 and 1"))
        for ok, message in checks:
            if not ok:
                raise WorkbenchError(message, "adaptation settings")

    to_dict = dataclasses.asdict


@dataclass
class AdaptResult:
    """The new run and the before/after table (accuracy on the site's test part and the parent's own test)."""

    run: Any
    before: dict[str, Any]  # {"site": acc, "source": acc or None, ...}
    after: dict[str, Any]
    site: dict[str, Any]  # counts, copies, unreadable
    members: list[str] | None = None  # an adapted ensemble: its adapted member run ids (None: one network)
    kept: list[str] = dataclasses.field(default_factory=list)  # per network: which weights were kept, and why

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``--json`` object (an ensemble adds ``members``)."""
        out = {"run_id": self.run.run_id, "parent_run": self.run.card.extra["lineage"]["parent_run"],
               "before": self.before, "after": self.after, "site": self.site, "kept": list(self.kept)}
        out["verdict"] = adaptation_verdict(out).to_json()  # what the before/after table can show, and cannot
        if self.members is not None:
            out["members"] = list(self.members)
        return out


@dataclass
class StagedRun:
    """An adapted run assembled in its staging folder, not yet published (see :func:`adapt_staged`)."""

    run: Any  # core.models.runs.Run whose path is the staging folder
    before: dict[str, Any]  # the table by class name (see _named)
    after: dict[str, Any]

    @property
    def stage(self) -> Path:
        return self.run.path


#: Card sections an evaluation stores its figures in: they describe the model, they do not change it.
EVALUATION_SECTIONS = ("evaluation", "evaluations")


def card_digest(parent) -> str:
    """The sha256 of what a run's card says about the model (OSError when it is gone; ValueError when damaged).

    The evaluation sections are left out: evaluating a member on the Evaluate page or with ``python -m
    core evaluate`` while its ensemble was being adapted stored figures in its card, and the adaptation
    threw away minutes of work as if the member had been changed. A changed model file, temperature,
    threshold or class list still counts.
    """
    card = json.loads((parent.path / "card.json").read_bytes())
    kept = {k: v for k, v in card.items() if k not in EVALUATION_SECTIONS} if isinstance(card, dict) else card
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def check_parent_unchanged(parent, digest: str) -> None:
    """Raise when the parent run was deleted or changed while it was being adapted."""
    from core.models.runs import file_sha256

    try:
        same = (file_sha256(parent.model_path) == parent.card.model_sha256 and card_digest(parent) == digest)
    except (OSError, ValueError):  # gone, or a card that no longer reads
        same = False
    if not same:
        raise WorkbenchError("the model being adapted was deleted or changed while it was adapted, so the adapted "
                             "model cannot be trusted and nothing was saved. Choose the model again and restart.",
                             parent.run_id)


def accuracy(runner, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy and per-class recall of a runner on labelled images ({} when there are none)."""
    if len(x) == 0:
        return {"accuracy": None, "n": 0, "recall": {}}
    return scores(runner.logits(x).argmax(axis=1), y, n_classes)


def scores(pred: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy and per-class recall of predicted class indices ``pred`` against ``y``."""
    if len(y) == 0:
        return {"accuracy": None, "n": 0, "recall": {}}
    recall = {int(c): float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()}
    return {"accuracy": float((pred == y).mean()), "n": int(len(y)), "recall": recall}


def log_site(job, site) -> None:
    """One log line: the site's counts, copies of the parent's training images and unreadable files."""
    job.add_log(f"site: {site.counts()} ({len(site.copies)} copies of the model's training images, "
                f"{len(site.unreadable)} unreadable files)")


def adapt_model(parent, folder: str | Path, cfg: AdaptConfig, job: Job) -> AdaptResult:
    """Adapt ``parent`` (a registered Run) to the labelled site in ``folder``; register the new run.

    One network only: :func:`core.training.adapt_ensemble.adapt_run` takes either kind and adapts
    an ensemble member by member (with :func:`adapt_staged`) into a new ensemble.

    Raises:
        JobCancelled: the user cancelled; nothing is left in the registry.
        WorkbenchError: bad site data, missing training images, the parent changed meanwhile, or an
            ensemble given.
    """
    from core.training.adapt_data import prepare_site

    if parent.card.is_ensemble:
        raise WorkbenchError("this run is an ensemble: it is adapted as a whole (each of its models on the same "
                             "site images, then a new ensemble of them), not as one network", parent.run_id)
    t0 = time.perf_counter()
    digest = card_digest(parent)
    job.update(phase="Reading the site's images", progress=0.01, epochs=cfg.epochs)
    site = prepare_site(folder, parent, seed=cfg.seed)
    log_site(job, site)
    job.check_cancelled()
    staged = adapt_staged(parent, site, cfg, job, t0)
    try:
        check_parent_unchanged(parent, digest)
        job.check_cancelled()
        from core.models.runs import publish

        run = publish(staged.stage, staged.run.run_id)
    except BaseException:
        shutil.rmtree(staged.stage, ignore_errors=True)  # cancelled or failed: nothing half-done is left
        raise
    job.add_log(f"saved {run.path}")
    return AdaptResult(run, staged.before, staged.after, run.card.extra["lineage"]["site"], kept=[kept_note(run)])


def adapt_staged(parent, site, cfg: AdaptConfig, job: Job, t0: float | None = None) -> StagedRun:
    """The recipe on one network: ``parent`` (a single-model Run) fine-tuned on ``site`` (already read
    for it, :meth:`SiteData.read_for`), recalibrated, its card written, all in a staging folder.

    Nothing is published: the caller checks the parent and publishes (or removes the folder).

    Raises:
        JobCancelled: cancelled; the staging folder is removed.
        WorkbenchError: missing training images, or the model cannot be loaded.
    """
    from core.inference.runner import ModelRunner
    from core.lazy_tensorflow import keras
    from core.models.runs import load_model, new_run_id, staging_dir
    from core.training.adapt_card import save_adapted
    from core.training.adapt_data import replay_sample

    t0 = time.perf_counter() if t0 is None else t0
    keras().utils.set_random_seed(cfg.seed)
    job.update(phase="Reading replayed training images", progress=0.04)
    x_rep, y_rep, _ = replay_sample(parent, cfg.replay, cfg.seed) if cfg.replay else (
        np.zeros((0, *site.x["adapt"].shape[1:]), np.uint8), np.zeros(0, np.int64), [])
    job.check_cancelled()
    job.update(phase="Scoring the model before adaptation", progress=0.08)
    model = load_model(parent)
    k = len(parent.class_names)
    x_src, y_src = source_test(parent)
    runner = ModelRunner(model, parent.card.tta)
    before = {"site": accuracy(runner, site.x["test"], site.y["test"], k),
              "source": accuracy(runner, x_src, y_src, k)}
    job.check_cancelled()

    run_id = new_run_id(parent.card.arch)
    stage = staging_dir(run_id)
    try:
        history, kept = _fine_tune(model, parent, site, x_rep, y_rep, cfg, job, stage)
        runner = ModelRunner(model, parent.card.tta)
        after = {"site": accuracy(runner, site.x["test"], site.y["test"], k),
                 "source": accuracy(runner, x_src, y_src, k)}
        job.check_cancelled()
        run = save_adapted(model, parent, site, x_rep, y_rep, cfg, job, stage, run_id, history, before, after,
                           time.perf_counter() - t0, kept)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # cancelled or failed: nothing half-done is left
        raise
    return StagedRun(run, named_table(before, parent.class_names), named_table(after, parent.class_names))


def named_table(table: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The before/after table as shown: per-class recall keyed by class name, and the headline accuracies."""
    out = {}
    for part, res in table.items():
        out[part] = res["accuracy"]
        out[f"{part}_n"] = res["n"]
        out[f"{part}_recall"] = {names[int(c)]: v for c, v in res["recall"].items()}
    return out


def kept_note(run: Any) -> str:
    """An adapted run's card: which weights its adaptation kept, and why ("" on cards written before)."""
    return str(((run.card.extra.get("lineage") or {}).get("recipe") or {}).get("kept") or "")


def guard_note(guard: Any, max_drop: float, n_source: int, class_names: list[str] | None = None,
               max_class_drop: float | None = None) -> str:
    """What the forgetting guard kept, in words for the job's log and the adapted run's card."""
    where = f"the model's {100 * guard.baseline:.1f} % on {n_source} of its own validation images" \
        if guard.baseline is not None else "the model's own validation images (not on this machine)"
    limits = f"within {100 * max_drop:g} points of {where}" + (
        f", no class's recall down by more than {100 * max_class_drop:g} points" if max_class_drop is not None
        else "")
    forgot = sorted({c for cs in getattr(guard, "forgot", {}).values() for c in cs})
    named = ", ".join(class_names[c] if class_names else str(c) for c in forgot)
    if guard.chosen == 0:
        why = []
        if getattr(guard, "not_better", False):
            why.append("no epoch did better on the site's validation images than the model itself")
        if forgot:
            why.append(f"fine-tuning made it forget the source ({named} recognised less often)")
        if not why:
            why.append(f"every epoch lost more than {100 * max_drop:g} points of {where} without gaining more on "
                       "the site's validation images")
        return ("kept the original weights: " + "; ".join(why) + ". The new run is the model recalibrated for the "
                "site (temperature, warnings and prediction sets), not retrained.")
    passed = f" (epochs that forgot {named} were passed over)" if forgot else ""
    if getattr(guard, "tier", 2) == 1:
        return (f"kept epoch {guard.chosen} of fine-tuning: it lost more than the limit on {where}, but gained more "
                f"on the site's validation images than it lost there (the largest net gain){passed}.")
    return (f"kept epoch {guard.chosen} of fine-tuning: it fitted the site's validation images better than the "
            f"model did, and stayed {limits}{passed}.")


def _fine_tune(model, parent, site, x_rep, y_rep, cfg: AdaptConfig, job: Job, stage: Path) -> tuple[list[dict], str]:
    """Fine-tune ``model`` in place; it ends on the epoch with the best site-validation loss among those
    that keep the parent's accuracy on its own validation images (:mod:`core.training.forgetting`), or
    on the parent's weights. Returns the history and what was kept, in words."""
    import math

    from core.lazy_tensorflow import keras
    from core.training.callbacks import progress_callback
    from core.training.config import TrainConfig
    from core.training.forgetting import forgetting_guard, source_validation
    from core.training.loop import compile_model
    from core.training.pipeline import eval_dataset, train_dataset

    k = keras()
    pcfg = TrainConfig.from_card(parent.card)
    n = len(parent.class_names)
    x = np.concatenate([site.x["adapt"], x_rep]) if len(x_rep) else site.x["adapt"]
    y = np.concatenate([site.y["adapt"], y_rep]) if len(y_rep) else site.y["adapt"]
    weights = site_weights(site.y["adapt"], y_rep, n)
    train_ds = train_dataset(x, y, n, cfg.batch_size, pcfg.augment, cfg.seed, weights, mixup=pcfg.mixup)
    val_ds = eval_dataset(site.x["val"], site.y["val"], n, cfg.batch_size)
    steps = math.ceil(len(x) / cfg.batch_size)
    compile_model(model, dataclasses.replace(pcfg, learning_rate=cfg.learning_rate), cfg.learning_rate)
    job.add_log(f"adapting: {len(site.x['adapt'])} site + {len(x_rep)} replayed images, {cfg.epochs} epochs "
                f"× {steps} batches at learning rate {cfg.learning_rate:g}")
    x_sv, y_sv = source_validation(parent, cfg.source_check, cfg.seed)
    # the parent's own site-validation loss, the way fit reports val_loss: an epoch must beat it to be kept
    site_loss = float(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"]) if len(site.y["val"]) else None
    guard = forgetting_guard(x_sv, y_sv, cfg.max_source_drop, site.x["val"], site.y["val"], site_loss,
                             cfg.max_class_drop)
    # the guard first: it adds the source accuracy to each epoch's logs before the progress callback reads them
    callbacks = [guard, progress_callback(job, steps, cfg.epochs, 0, cfg.epochs, "Adapting to the site"),
                 k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience)]
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=steps, callbacks=callbacks,
              verbose=0, shuffle=False)
    job.check_cancelled()
    guard.restore()
    note = guard_note(guard, cfg.max_source_drop, len(y_sv), list(parent.class_names), cfg.max_class_drop)
    job.add_log(note)
    return job.snapshot().history, note


__all__ = ["AdaptConfig", "AdaptResult", "JobCancelled", "StagedRun", "adapt_model", "adapt_staged",
           "check_parent_unchanged"]

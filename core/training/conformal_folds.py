"""Fit a run's prediction sets on more images: its validation images and its training images
scored out of fold (:mod:`core.training.out_of_fold`), for a single run or an ensemble.

The one path behind ``python -m core calibrate --conformal-only --conformal-folds K`` and the
Evaluate page's "Fit the sets on more images" job. Fold models are trained only for networks
whose stored ``oof.npz`` does not fit (:func:`plan_folds` says how many before anything starts).
A cancel stops the fold training between batches; the run's sets are written only after every
score is in, so a cancelled fit leaves them as they were (a member's completed scores stay
stored in its ``oof.npz`` for the next try).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import WorkbenchError
from core.jobs import Job, JobStage

MIN_FOLDS, MAX_FOLDS_PAGE, DEFAULT_FOLDS = 2, 5, 3
# A float32 epoch takes this many times a bfloat16 one of the same recipe on a CPU with native bfloat16
# (bench section 8: 74 s against 52 s per epoch, medians; the step alone is 2.0x, but augmentation and
# the validation pass do not speed up). Only for the plan's time estimate.
BF16_EPOCH_SPEEDUP = 1.42
_TRAINING_SHARE = 0.9  # of the job's bar; the rest is scoring the validation images and writing the sets


@dataclass(frozen=True)
class FoldPlan:
    """What fitting a run's sets on out-of-fold scores will take, before it starts."""

    folds: int  # fold models per network that needs them
    networks: int  # 1 for a run, the member count for an ensemble
    trainings: int  # fold models to train: 0 when every network's stored scores fit
    seconds: float | None  # rough duration of those trainings (None: a network's card records no training time)


def check_folds(folds: int) -> int:
    """``folds`` when it makes out-of-fold scores (2 or more).

    Raises:
        WorkbenchError: fewer than 2 folds.
    """
    if folds < MIN_FOLDS:
        raise WorkbenchError(f"out-of-fold scores need at least {MIN_FOLDS} folds (0: validation images only), "
                             f"got {folds}", "--conformal-folds")
    return folds


def networks(run: Any, cached_hashes: bool = False) -> list[Any]:
    """The runs whose fold models are trained: an ensemble's members (checked), else the run itself.

    ``cached_hashes``: check the members' model files with hashes remembered per file size and time
    (:func:`core.models.runs.cached_file_sha256`), for what a page asks on every rerun.
    """
    if run.card.is_ensemble:
        from core.models.ensemble import member_runs
        from core.models.runs import cached_file_sha256

        return member_runs(run, sha256_of=cached_file_sha256 if cached_hashes else None)
    return [run]


def plan_folds(run: Any, folds: int, cfg_override: dict | None = None) -> FoldPlan:
    """How many fold trainings fitting ``run``'s sets on ``folds`` folds needs, and about how long.

    A network whose ``oof.npz`` fits (:func:`core.inference.oof_store.load_oof`) needs none. A fold
    model trains on (folds-1)/folds of the network's training images with its recipe, so it takes
    about that share of the network's recorded training time.

    The Evaluate page asks on every rerun, so model files are hashed once per size and time
    (:func:`core.models.runs.cached_file_sha256`); the fit itself hashes them afresh.

    Raises:
        WorkbenchError: a model file is missing or differs from its card, or a member is missing.
    """
    from core.inference.oof_store import depends_on, load_oof
    from core.models.runs import cached_file_sha256

    check_folds(folds)
    nets = networks(run, cached_hashes=True)
    trainings, seconds = 0, 0.0
    for net in nets:
        stored, _ = load_oof(net, depends_on(net, folds, cfg_override, sha256_of=cached_file_sha256))
        if stored is not None:
            continue
        trainings += folds
        train_s = net.card.train_seconds
        if seconds is None or train_s is None:
            seconds = None
        else:
            seconds += folds * train_s * (folds - 1) / folds * _precision_factor(net, cfg_override)
    return FoldPlan(folds, len(nets), trainings, seconds if trainings else 0.0)


def _precision_factor(net: Any, cfg_override: dict | None) -> float:
    """How much longer a fold model takes than ``net`` took, for a precision the override changes."""
    own = (net.card.train_config or {}).get("precision", "float32")
    wanted = (cfg_override or {}).get("precision", own)
    if wanted == own:
        return 1.0
    return 1 / BF16_EPOCH_SPEEDUP if wanted == "bfloat16" else BF16_EPOCH_SPEEDUP


def precision_override(precision: str | None) -> dict | None:
    """The fold models' settings change for a precision (None: each network's own recipe)."""
    return {"precision": precision} if precision else None


def stored_fold_precision(run: Any, folds: int) -> str | None:
    """The fold precision whose stored out-of-fold scores save the most trainings for ``run`` on
    ``folds`` folds: None (each network's own recipe) unless scores stored with fold models in one
    precision need fewer. So a run whose scores were made with ``--fold-precision bfloat16`` is not
    offered hours of retraining by a later fit that does not name the precision.

    Raises:
        WorkbenchError: as :func:`plan_folds`.
    """
    from core.training.options import PRECISIONS

    best, fewest = None, trainings_needed(run, folds)
    for name in PRECISIONS:
        if fewest == 0:
            break
        n = trainings_needed(run, folds, precision_override(name))
        if n < fewest:
            best, fewest = name, n
    return best


def trainings_needed(run: Any, folds: int, cfg_override: dict | None = None) -> int:
    """Fold models to train before ``run``'s sets can be fitted on ``folds`` folds (0: all stored)."""
    return plan_folds(run, folds, cfg_override).trainings


def check_training_data(run: Any) -> None:
    """Refuse, before any work, a network whose data folder is not on this machine or no longer holds
    what it was trained on: other classes, or images its card records are gone. Such a folder would
    split differently, and the fit would fail only inside the job.

    Cheap enough for every page rerun: the folder is listed, no image is read. The fit compares the
    whole split again when it scans the images (:func:`core.training.out_of_fold.out_of_fold_probabilities`).

    Raises:
        WorkbenchError: the folder its card records is missing, its classes differ from the model's
            (both named), or some recorded validation, test or training images are missing (how many,
            with one example: a file name, or for training images a class, as the card records only
            their count per class).
    """
    from core.data.datasets import open_folder

    listed: dict[str, Any] = {}  # an ensemble's members share one folder: list it once
    for net in networks(run, cached_hashes=True):  # the page asks on every rerun; the fit hashes afresh
        root = net.data_root
        if not root.is_dir():
            raise WorkbenchError("the images this model was trained on are not on this machine, so its prediction "
                                 "sets cannot be fitted on more of them (the folder its card records is missing)",
                                 str(root))
        key = str(root.resolve())
        if key not in listed:
            listed[key] = open_folder(root)
        problem = _data_difference(net, listed[key])
        if problem:
            raise WorkbenchError(f"{problem}: the folder's images would be split differently from when the model "
                                 "was trained, so its prediction sets cannot be fitted on more of them", str(root))


def _data_difference(net: Any, ds: Any) -> str | None:
    """How the listed data folder ``ds`` differs from what ``net``'s card recorded at training, or None."""
    from collections import Counter

    from core.classes import display_name

    def names(classes: Any) -> str:
        return ", ".join(display_name(c) for c in classes)

    if list(ds.class_names) != list(net.class_names):
        order = " in that order" if sorted(ds.class_names) == sorted(net.class_names) else ""
        return (f"the data folder's classes ({names(ds.class_names)}) are not the ones the model was trained "
                f"on ({names(net.class_names)}{order})")
    data = net.card.data
    present = set(ds.files["path"])
    for field, what in (("val_files", "validation"), ("test_files", "held-out test")):
        recorded = list(data.get(field) or [])
        missing = [f for f in recorded if f not in present]
        if missing:
            return (f"{len(missing)} of the model's {len(recorded)} {what} images are no longer in its data folder "
                    f"(e.g. {missing[0]})")
    # Training images are the folder's other images; the card keeps only their count per class, so a
    # class with fewer of them now has lost some (more is not checked here: unreadable files count too).
    held_out = set(data.get("val_files") or []) | set(data.get("test_files") or [])
    found = Counter(ds.files.loc[~ds.files["path"].isin(held_out), "label"])
    trained = {c: int(n) for c, n in ((data.get("counts") or {}).get("train") or {}).items()}
    short = {c: n - found[c] for c, n in trained.items() if n > found[c]}
    if short:
        c = next(iter(short))
        return (f"{sum(short.values())} of the model's {sum(trained.values())} training images are no longer in its "
                f"data folder (e.g. {display_name(c)}: {trained[c]} at training, {found[c]} now)")
    return None


def fit_sets_out_of_fold(run: Any, folds: int, job: Job | JobStage | None = None,
                         log: Callable[[str], None] | None = None, cfg_override: dict | None = None) -> Any:
    """Refit ``run``'s prediction sets on its validation images and its training images' out-of-fold
    scores (stored ones reused, else ``folds`` fold models per network trained and stored); the
    temperature and the model are kept. Returns the run with its updated card.

    Args:
        job: receives progress and log lines; its cancel stops the work (:class:`core.jobs.JobCancelled`)
            and leaves the run's sets unchanged.
        log: where log lines go (default: the job's log, else stdout).
        cfg_override: TrainConfig fields changed for the fold models (tests: ``max_train_batches``).
    Raises:
        WorkbenchError: too few folds, the data is not on this machine or no longer splits as it did,
            or an ensemble's members do not share their training images.
    """
    from core.inference.conformal_fit import fit_run_conformal_out_of_fold
    from core.training.ensemble_oof import ensemble_out_of_fold
    from core.training.out_of_fold import stored_or_computed

    check_folds(folds)
    if log is None:
        log = job.add_log if job is not None else print
    check_training_data(run)
    val = (None, None)
    if run.card.is_ensemble:  # its averaged members' outputs; a member that changed is refused before training
        from core.inference.ensemble_fit import ensemble_validation_logits

        val = ensemble_validation_logits(run)
    training = job.stage(0.0, _TRAINING_SHARE) if job is not None else None
    if run.card.is_ensemble:  # each member's scores (stored in its oof.npz, or computed there), averaged
        probs, labels, oof = ensemble_out_of_fold(run, folds, log, cfg_override, training)
    else:
        scores, reused = stored_or_computed(run, folds, log, cfg_override, training)
        probs, labels, oof = scores.probs, scores.labels, {**scores.summary(), "reused": reused}
    if cfg_override:  # the fold models' recipe differs from the run's there: the card must say so
        oof = {**oof, "fold_settings_changed": dict(cfg_override)}
    if job is not None:
        job.check_cancelled()  # the last point a cancel is honoured: after it the sets are written whole
        job.update(phase="Fitting the prediction sets on validation and out-of-fold scores",
                   progress=_TRAINING_SHARE)
    run = fit_run_conformal_out_of_fold(run, probs, labels, oof, *val)
    log(f"{run.run_id}: prediction sets fitted on {run.card.results.conformal['fitted_on']}")
    return run

"""More calibration data for prediction sets: the training images' out-of-fold probabilities.

A run's prediction sets are calibrated on its validation images: about 200 per class, drawn
from fewer patients than images (a patient's slices come in near-duplicate groups). Per-class
thresholds at 90 % or 95 % then rest on the 10-20 least confident images of each class, and a
held-out test from other patients can fall well below the promise (issue 21: glioma 80.8 % at
90 %). Cross-fitting (the CV+ idea of Barber et al. 2021; Vovk's cross-conformal predictors)
adds the training split: K models are trained with the run's own recipe, each without one
fold of the training images, and score that fold. Folds keep near-duplicate groups whole (a
slice's near-copy in the fold's training part would flatter its score) and classes stratified.
Every fold model gets its own temperature, fitted on the run's validation images, as the run
got its own. The test split is never read.

The fold models are thrown away; only their calibrated probabilities are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.config import DataConfig
from core.errors import WorkbenchError
from core.inference.oof_store import OOF_FILE, OutOfFold, depends_on, load_oof, save_oof
from core.jobs import Job, JobStage
from core.training.config import TrainConfig


def fold_assignment(files: Any, folds: int, seed: int) -> np.ndarray:
    """(N,) fold index 0..folds-1 of each row of ``files`` (scan rows with label and near_group),
    near-duplicate groups kept whole and classes stratified (:func:`core.data.splits.grouped_split`)."""
    from core.data.splits import grouped_split

    if folds < 2:
        raise WorkbenchError(f"out-of-fold scores need at least 2 folds, got {folds}", "--conformal-folds")
    names = {f"fold{i}": 1.0 / folds for i in range(1, folds)}  # the remainder ("train") is fold 0
    split = grouped_split(files, names, seed)
    return split.map(lambda s: 0 if s == "train" else int(s[4:])).to_numpy(np.int64)


def out_of_fold_probabilities(run: Any, folds: int = 3, log: Callable[[str], None] = print,
                              cfg_override: dict | None = None, job: Job | JobStage | None = None) -> OutOfFold:
    """The run's training images (relative paths), labels and calibrated probabilities, out of fold.

    Always trains ``folds`` models (:func:`stored_or_computed` reuses a stored result instead).
    ``cfg_override``: TrainConfig fields changed for the fold models (e.g. ``max_train_batches`` in tests).
    ``job``: where the fold trainings report progress (fold k fills the k-th share of its bar); its
    cancel stops a fold model at the next batch (:class:`core.jobs.JobCancelled`, nothing returned).

    Raises:
        WorkbenchError: the run's data folder is missing or no longer splits the way it did at training.
    """
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.lazy_tensorflow import keras
    from core.models.architectures import get_arch
    from core.training.data import PreparedData, prepare_data

    card = run.card
    cfg = TrainConfig.from_card(card, **{"strategy": "default", **(cfg_override or {})})
    data_cfg = DataConfig.from_dict(card.data.get("data_config"))
    ds = open_folder(run.data_root)
    report = scan_dataset(ds, threshold=data_cfg.near_dup_threshold)
    data = prepare_data(ds, report, cfg, data_cfg)
    if sorted(data.paths["val"]) != sorted(card.data.get("val_files") or []):
        raise WorkbenchError("the dataset no longer splits as it did when this model was trained (its validation "
                             "images differ), so training images cannot be told from test images", str(ds.root))
    recorded = (card.data.get("counts") or {}).get("train")
    if recorded and {c: int(n) for c, n in recorded.items() if int(n)} != \
            {c: n for c, n in data.counts()["train"].items() if n}:
        raise WorkbenchError("the dataset no longer holds the training images this model was trained on (the "
                             "counts per class differ from its card), so they cannot be scored out of fold",
                             str(ds.root))
    if list(data.class_names) != run.class_names:
        raise WorkbenchError(f"the data folder's classes [{', '.join(data.class_names)}] are not the model's "
                             f"[{', '.join(run.class_names)}] in the same order", str(ds.root))
    rows = report.readable.set_index("path").loc[data.paths["train"]].reset_index()
    fold = fold_assignment(rows, folds, data_cfg.split_seed + 1)
    spec = get_arch(cfg.arch)
    n_classes = len(data.class_names)
    probs = np.zeros((len(fold), n_classes))
    temperatures = []
    for k in range(folds):
        keep = fold != k
        log(f"fold {k + 1} of {folds}: training on {int(keep.sum())} images, scoring {int((~keep).sum())}")
        part = PreparedData({**data.x, "train": data.x["train"][keep]}, {**data.y, "train": data.y["train"][keep]},
                            data.paths, data.hashes, data.class_names, data.content_digest,
                            None if data.styled is None else data.styled[keep])
        keras().utils.set_random_seed(cfg.seed + 1000 + k)
        fold_job = job.stage(k / folds, (k + 1) / folds, f"fold {k + 1} of {folds}: ") if job is not None \
            else Job("train", "out-of-fold model")
        fold_job.check_cancelled()
        probs[~keep], t = _fold_probabilities(part, data.x["train"][~keep], cfg, spec, n_classes, log, fold_job)
        temperatures.append(t)
    return OutOfFold(tuple(data.paths["train"]), np.asarray(data.y["train"], np.int64), probs,
                     tuple(float(t) for t in temperatures))


def stored_or_computed(run: Any, folds: int, log: Callable[[str], None] = print,
                       cfg_override: dict | None = None, job: Job | JobStage | None = None) -> tuple[OutOfFold, bool]:
    """(a run's out-of-fold scores, whether they were reused): the stored ones when they fit, else
    computed (``folds`` trainings) and stored in ``oof.npz`` for the next calibration
    (:mod:`core.inference.oof_store`). Every choice is logged. ``job``: progress and cancel of the
    trainings (:func:`out_of_fold_probabilities`); a cancel stores nothing.

    Raises:
        WorkbenchError: the model file differs from its card, or the scores cannot be computed
            (:func:`out_of_fold_probabilities`).
    """
    expected = depends_on(run, folds, cfg_override)
    oof, problem = load_oof(run, expected)
    if oof is not None:
        log(f"{run.run_id}: reusing its stored out-of-fold scores ({OOF_FILE}: {oof.folds} folds, "
            f"{len(oof.files)} training images)")
        return oof, True
    log(f"{run.run_id}: {problem}; computing them again ({folds} trainings)" if problem
        else f"{run.run_id}: no stored out-of-fold scores; computing them ({folds} trainings)")
    oof = out_of_fold_probabilities(run, folds, log, cfg_override, job)
    oof = OutOfFold(oof.files, oof.labels, oof.probs, oof.fold_temperatures, expected)
    save_oof(run.path, oof)
    log(f"{run.run_id}: out-of-fold scores stored in {OOF_FILE} for reuse")
    return oof, False


def _fold_probabilities(part: Any, images: np.ndarray, cfg: TrainConfig, spec: Any, n_classes: int,
                        log: Callable[[str], None], job: Job | JobStage) -> tuple[np.ndarray, float]:
    """Train one fold model on ``part`` and return (calibrated probabilities of ``images``, its temperature);
    ``job`` receives the training's progress, and its cancel stops it between batches."""
    import tempfile
    from pathlib import Path

    from core.inference.calibration import fit_temperature, softmax
    from core.inference.runner import ModelRunner
    from core.inference.tta import tta_logits
    from core.training.loop import fit_phases
    from core.training.options import strategy_for
    from core.training.precision import float32_model
    from core.training.train import build_and_compile

    strategy = strategy_for(cfg)
    model, _ = build_and_compile(cfg, spec, n_classes, strategy, job)
    with tempfile.TemporaryDirectory(prefix="oof_") as folder:
        fit_phases(model, part, cfg, spec, strategy, job, Path(folder))
    model = float32_model(model, cfg.arch, cfg.image_size, cfg.width)
    runner = ModelRunner(model, "none", batch_size=128)

    def logits(batch: np.ndarray) -> np.ndarray:
        return runner.run(batch).logits

    val_logits = tta_logits(logits, part.x[cfg.validate_on], cfg.tta)
    t = fit_temperature(val_logits, part.y[cfg.validate_on])
    val_acc = float((val_logits.argmax(axis=1) == part.y[cfg.validate_on]).mean())
    job.check_cancelled()
    log(f"  fold model: validation accuracy {val_acc:.4f}, temperature {t:.2f}")
    return softmax(tta_logits(logits, images, cfg.tta), t), t


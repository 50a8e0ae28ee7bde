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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.jobs import Job, JobCancelled


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

    def __post_init__(self) -> None:
        checks = ((1 <= self.epochs <= 200, "epochs must be between 1 and 200"),
                  (0 < self.learning_rate < 0.1, "the learning rate must be above 0 and below 0.1"),
                  (0 <= self.replay <= 20000, "replayed images must be between 0 and 20000"),
                  (1 <= self.batch_size <= 1024, "the batch size must be between 1 and 1024"),
                  (0 <= self.patience <= 200, "patience must be between 0 and 200"),
                  (0 <= self.source_check <= 20000, "source images checked must be between 0 and 20000"),
                  (0 <= self.max_source_drop <= 1, "the allowed source drop must be between 0 and 1"))
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

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run.run_id, "parent_run": self.run.card.extra["lineage"]["parent_run"],
                "before": self.before, "after": self.after, "site": self.site}


def _card_digest(parent) -> str:
    return hashlib.sha256((parent.path / "card.json").read_bytes()).hexdigest()


def check_parent_unchanged(parent, card_digest: str) -> None:
    """Raise when the parent run was deleted or changed while it was being adapted."""
    from core.models.runs import file_sha256

    try:
        same = (file_sha256(parent.model_path) == parent.card.model_sha256 and _card_digest(parent) == card_digest)
    except OSError:
        same = False
    if not same:
        raise WorkbenchError("the model being adapted was deleted or changed while it was adapted, so the adapted "
                             "model cannot be trusted and nothing was saved. Choose the model again and restart.",
                             parent.run_id)


def site_weights(y_site: np.ndarray, y_replay: np.ndarray, n_classes: int) -> np.ndarray:
    """Sample weights: class-balanced within the site and within the replay, each side half the total."""
    from core.training.pipeline import class_weights

    parts = []
    total = len(y_site) + len(y_replay)
    for y in (y_site, y_replay):
        if len(y):
            w = class_weights(y, n_classes)[y]
            parts.append(w / w.sum() * total / (2 if len(y_site) and len(y_replay) else 1))
    return np.concatenate(parts).astype(np.float32)


def accuracy(runner, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy and per-class recall of a runner on labelled images ({} when there are none)."""
    if len(x) == 0:
        return {"accuracy": None, "n": 0, "recall": {}}
    pred = runner.logits(x).argmax(axis=1)
    recall = {int(c): float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()}
    return {"accuracy": float((pred == y).mean()), "n": int(len(y)), "recall": recall}


def source_test(parent) -> tuple[np.ndarray, np.ndarray]:
    """The parent's own held-out test images (empty when they are not on this machine)."""
    from core.classes import canonical_class
    from core.data.preprocess import load_many

    files = list(parent.card.data.get("test_files") or [])
    paths = [parent.data_root / f for f in files]
    if not files or not all(p.is_file() for p in paths):
        return np.zeros((0, parent.image_size, parent.image_size, 1), np.uint8), np.zeros(0, np.int64)
    labels = np.array([parent.class_names.index(canonical_class(Path(f).parent.name)) for f in files])
    return load_many(paths, parent.image_size, preprocessing=parent.preprocessing), labels


def adapt_model(parent, folder: str | Path, cfg: AdaptConfig, job: Job) -> AdaptResult:
    """Adapt ``parent`` (a registered Run) to the labelled site in ``folder``; register the new run.

    Raises:
        JobCancelled: the user cancelled; nothing is left in the registry.
        WorkbenchError: bad site data, missing training images, or the parent changed meanwhile.
    """
    from core.inference.runner import ModelRunner
    from core.lazy_tensorflow import keras
    from core.models.runs import load_model, new_run_id, staging_dir
    from core.training.adapt_data import prepare_site, replay_sample

    t0 = time.perf_counter()
    keras().utils.set_random_seed(cfg.seed)
    digest = _card_digest(parent)
    job.update(phase="Reading the site's images", progress=0.01, epochs=cfg.epochs)
    site = prepare_site(folder, parent, seed=cfg.seed)
    job.add_log(f"site: {site.counts()} ({len(site.copies)} copies of the model's training images, "
                f"{len(site.unreadable)} unreadable files)")
    job.check_cancelled()
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
        history = _fine_tune(model, parent, site, x_rep, y_rep, cfg, job, stage)
        runner = ModelRunner(model, parent.card.tta)
        after = {"site": accuracy(runner, site.x["test"], site.y["test"], k),
                 "source": accuracy(runner, x_src, y_src, k)}
        job.check_cancelled()
        run = _save(model, parent, site, x_rep, y_rep, cfg, job, stage, run_id, history, before, after,
                    time.perf_counter() - t0)
        check_parent_unchanged(parent, digest)
        job.check_cancelled()
        from core.models.runs import publish

        run = publish(stage, run_id)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # cancelled or failed: nothing half-done is left
        raise
    job.add_log(f"saved {run.path}")
    return AdaptResult(run, _named(before, parent.class_names), _named(after, parent.class_names),
                       run.card.extra["lineage"]["site"])


def _named(table: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Per-class recall keyed by class name, and the two headline accuracies."""
    out = {}
    for part, res in table.items():
        out[part] = res["accuracy"]
        out[f"{part}_n"] = res["n"]
        out[f"{part}_recall"] = {names[int(c)]: v for c, v in res["recall"].items()}
    return out


def _fine_tune(model, parent, site, x_rep, y_rep, cfg: AdaptConfig, job: Job, stage: Path) -> list[dict]:
    """Fine-tune ``model`` in place; it ends on the epoch with the best site-validation loss among those
    that keep the parent's accuracy on its own validation images (:mod:`core.training.forgetting`)."""
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
    guard = forgetting_guard(x_sv, y_sv, cfg.max_source_drop)
    # the guard first: it adds the source accuracy to each epoch's logs before the progress callback reads them
    callbacks = [guard, progress_callback(job, steps, cfg.epochs, 0, cfg.epochs, "Adapting to the site"),
                 k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience)]
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=steps, callbacks=callbacks,
              verbose=0, shuffle=False)
    job.check_cancelled()
    guard.restore()
    if guard.baseline is not None:
        job.add_log(f"kept epoch {guard.chosen}: the best site-validation loss among the epochs within "
                    f"{100 * cfg.max_source_drop:g} points of the model's {100 * guard.baseline:.1f} % on "
                    f"{len(y_sv)} of its own validation images")
    return job.snapshot().history


def _save(model, parent, site, x_rep, y_rep, cfg: AdaptConfig, job: Job, stage: Path, run_id: str,
          history: list[dict], before: dict, after: dict, seconds: float):
    """Calibrate on the site's validation part, write the run into ``stage``, fit its warnings there."""
    from core.inference.calibration_fit import fit_calibration
    from core.models.runs import CARD_FILE, HISTORY_FILE, MODEL_FILE, OOD_FILE, Run, write_card
    from core.training.adapt_card import adapted_card
    from core.training.saving import inference_copy, write_history

    job.update(phase="Recalibrating on the site's validation images", progress=0.95)
    x_train = np.concatenate([site.x["adapt"], x_rep]) if len(x_rep) else site.x["adapt"]
    y_train = np.concatenate([site.y["adapt"], y_rep]) if len(y_rep) else site.y["adapt"]
    results, ood = fit_calibration(model, {"train": x_train, "val": site.x["val"]},
                                   {"train": y_train, "val": site.y["val"]}, "val", parent.card.tta, cfg.seed,
                                   job.check_cancelled, class_names=list(parent.class_names), conformal_dir=stage)
    job.check_cancelled()
    inference_copy(model).save(stage / MODEL_FILE)
    ood.save(stage / OOD_FILE)
    write_history(stage / HISTORY_FILE, history)
    card = adapted_card(parent, run_id, stage, model, site, len(x_rep), cfg, results, before, after, seconds)
    write_card(stage / CARD_FILE, card)
    job.check_cancelled()
    return _fit_site_warnings(Run(run_id, stage, card), model, job)


def _fit_site_warnings(run, model, job: Job):
    """Warnings refitted on the site's validation part (inside the staging folder, before publishing)."""
    from core.inference.trust_fit import fit_run_warnings

    job.update(phase="Fitting the warnings on the site's validation images", progress=0.98)
    try:
        return fit_run_warnings(run, model=model)
    except WorkbenchError as exc:
        job.add_log(f"warnings keep their basic thresholds: {exc.reason}")
        return run


__all__ = ["AdaptConfig", "AdaptResult", "JobCancelled", "adapt_model", "check_parent_unchanged"]

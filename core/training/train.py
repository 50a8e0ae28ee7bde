"""The training engine: one function that turns (config, dataset) into a registered model.

It runs the same way from the Train page (in a background job) and the CLI. All progress
goes through a :class:`core.jobs.Job`; the engine knows nothing about any UI.
"""

from __future__ import annotations

import csv
import math
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DataConfig, TrainConfig
from core.data.datasets import Dataset
from core.data.scan import ScanReport
from core.errors import WorkbenchError
from core.jobs import Job, JobCancelled
from core.models.registry import (
    CARD_FILE,
    CARD_VERSION,
    HISTORY_FILE,
    MODEL_FILE,
    OOD_FILE,
    Run,
    file_sha256,
    new_run_id,
    publish,
    staging_dir,
    write_json_atomic,
)
from core.training.averaging import WeightAverager


@dataclass
class PreparedData:
    """Arrays for one training run, with the split they came from."""

    x: dict[str, np.ndarray]  # split -> (N, S, S, 1) uint8
    y: dict[str, np.ndarray]  # split -> (N,) int class index
    paths: dict[str, list[str]]  # split -> relative paths
    hashes: dict[str, list[str]]  # split -> perceptual hashes (hex)
    class_names: list[str]
    content_digest: str = ""  # core.data.data_changes.content_digest of the scanned images


def prepare_data(ds: Dataset, report: ScanReport, cfg: TrainConfig, data_cfg: DataConfig,
                 job: Job | None = None) -> PreparedData:
    """Split the scanned dataset and load every split's images at the configured size."""
    from core.data.splits import make_split
    from core.training.pipeline import cached_images
    from core.training.train_feedback import PHASE_DECODING

    mode = "leakage_free" if cfg.leakage_free else "dataset"
    files = report.readable.copy()
    files["split"] = make_split(report, data_cfg, mode)
    index = {c: i for i, c in enumerate(ds.class_names)}
    paths_all = [ds.abspath(p) for p in files["path"]]

    def progress(done: int, total: int) -> None:
        if job:
            job.update(phase=f"{PHASE_DECODING} {done:,}/{total:,}", progress=0.05 * done / total)
            job.check_cancelled()

    images = cached_images(paths_all, cfg.image_size, ds.fingerprint, progress, preprocessing=cfg.preprocessing)
    from core.data.data_changes import content_digest

    out = PreparedData({}, {}, {}, {}, list(ds.class_names), content_digest(report.readable))
    for split in ("train", "val", "test"):
        mask = (files["split"] == split).to_numpy()
        out.x[split] = images[mask]
        out.y[split] = files.loc[mask, "label"].map(index).to_numpy(np.int64)
        out.paths[split] = files.loc[mask, "path"].tolist()
        out.hashes[split] = files.loc[mask, "phash"].tolist()
    if len(out.x["train"]) == 0 or len(out.x[cfg.validate_on]) == 0:
        raise WorkbenchError("the split left no training or validation images; the dataset is too small",
                             ds.name)
    return out


class _ProgressCallback:
    """Keras callback writing per-batch and per-epoch progress into the job; cancels between batches.

    A cancel raises :class:`core.jobs.JobCancelled` out of ``fit`` at the next batch boundary
    (training or validation). Setting ``stop_training`` alone would still run the epoch's whole
    validation pass, the checkpoint save and early stopping's weight restore: seconds to tens of
    seconds on a CPU. The ETA counts only batches after the first, whose time is graph tracing.
    """

    def __new__(cls, *args: Any, **kwargs: Any):  # subclass keras.callbacks.Callback lazily
        from core.tfrt import keras
        from core.training.train_feedback import PHASE_COMPILING, seconds_left

        k = keras()

        class ProgressCallback(k.callbacks.Callback):
            def __init__(self, job: Job, steps: int, total_epochs: int, epoch_offset: int, phase_epochs: int,
                         phase: str):
                """``epoch_offset``: epochs already trained (steps continue from there);
                ``phase_epochs``: epochs still planned from here on (for the ETA)."""
                super().__init__()
                self.job, self.steps, self.total_epochs = job, steps, total_epochs
                self.epoch_offset, self.phase_epochs, self.phase = epoch_offset, phase_epochs, phase
                self.t_epoch = time.perf_counter()
                self.t_first: float | None = None  # end of the first batch: the clock for the ETA
                self.done_batches = 0

            def _lr(self) -> float:
                return float(k.ops.convert_to_numpy(self.model.optimizer.learning_rate))

            def on_train_begin(self, logs=None):
                self.job.check_cancelled()
                self.job.update(phase=PHASE_COMPILING, eta_s=None)

            def on_epoch_begin(self, epoch, logs=None):
                self.job.check_cancelled()
                self.t_epoch = time.perf_counter()
                self.job.update(epoch=epoch + 1, batch=0, batches=self.steps,
                                **({} if self.t_first is None else {"phase": self.phase}))

            def on_train_batch_begin(self, batch, logs=None):
                self.job.check_cancelled()

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                self.done_batches += 1
                now = time.perf_counter()
                if self.t_first is None:
                    self.t_first = now
                    self.job.update(phase=self.phase)
                step = self.epoch_offset * self.steps + self.done_batches
                global_frac = step / max(1, self.steps * self.total_epochs)
                eta = seconds_left(self.done_batches - 1, now - self.t_first,
                                   self.steps * self.phase_epochs - self.done_batches)
                self.job.update(batch=batch + 1, progress=0.05 + 0.9 * min(1.0, global_frac), eta_s=eta)
                self.job.add_batch({"step": step, "epoch": self.job.epoch, "loss": float(logs.get("loss", np.nan)),
                                    "accuracy": float(logs.get("accuracy", np.nan)), "lr": self._lr()})
                self.job.check_cancelled()

            def on_test_batch_begin(self, batch, logs=None):
                self.job.check_cancelled()

            def on_test_batch_end(self, batch, logs=None):
                self.job.check_cancelled()

            def on_epoch_end(self, epoch, logs=None):
                self.job.check_cancelled()  # a cut-short epoch is not a result
                row = {"epoch": epoch + 1, "phase": self.phase, "lr": self._lr(),
                       "seconds": time.perf_counter() - self.t_epoch}
                row.update({k_: float(v) for k_, v in (logs or {}).items() if k_ != "learning_rate"})
                self.job.add_epoch(row)
                self.job.add_log(f"epoch {epoch + 1}: " + ", ".join(
                    f"{k_}={v:.4f}" for k_, v in row.items() if isinstance(v, float) and k_ != "seconds"))

        return ProgressCallback(*args, **kwargs)


class _CosineCallback:
    """Per-batch cosine learning-rate decay with a short linear warm-up (Loshchilov & Hutter 2017)."""

    def __new__(cls, peak_lr: float, total_steps: int, warmup_steps: int):
        from core.tfrt import keras

        k = keras()

        class CosineCallback(k.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.step = 0

            def on_train_batch_begin(self, batch, logs=None):
                if self.step < warmup_steps:
                    lr = peak_lr * (self.step + 1) / warmup_steps
                else:
                    t = (self.step - warmup_steps) / max(1, total_steps - warmup_steps)
                    lr = 0.5 * peak_lr * (1 + math.cos(math.pi * min(1.0, t)))
                self.model.optimizer.learning_rate.assign(max(lr, peak_lr * 1e-3))
                self.step += 1

        return CosineCallback()


def _optimizer(cfg: TrainConfig, lr: float):
    from core.tfrt import keras

    k = keras()
    if cfg.optimizer == "adamw":
        return k.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return k.optimizers.Adam(learning_rate=lr)
    return k.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)


def _strategy(cfg: TrainConfig):
    from core.tfrt import tf

    tf = tf()
    if cfg.strategy != "mirrored":
        return tf.distribute.get_strategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def _set_backbone_trainable(model, trainable_top: int | None) -> None:
    """Freeze the backbone (None) or unfreeze its top K non-BatchNorm layers.

    BatchNorm layers stay frozen, which in Keras also runs them in inference mode: fine-tuning
    with tiny batches would otherwise wreck the ImageNet statistics.
    """
    from core.models.architectures import backbone_layers
    from core.tfrt import keras

    bn = keras().layers.BatchNormalization
    layers = backbone_layers(model)
    for layer in layers:
        layer.trainable = False
    if trainable_top:
        for layer in layers[-trainable_top:]:
            if not isinstance(layer, bn):
                layer.trainable = True


def train_model(ds: Dataset, report: ScanReport, cfg: TrainConfig, job: Job,
                data_cfg: DataConfig = DataConfig(), keep_partial: bool = False) -> Run:
    """Train, calibrate and register a model. Runs in the calling thread (use a Job thread).

    Raises:
        JobCancelled: the user cancelled; nothing usable is left in the registry.
        WorkbenchError: bad data or configuration; earlier models are untouched.
    """
    from core.models.architectures import build_model, get_arch
    from core.tfrt import keras, tf
    from core.training.pipeline import class_weights, eval_dataset, train_dataset
    from core.training.train_feedback import PHASE_COMPILING, PHASE_DECODING

    tf, k = tf(), keras()
    spec = get_arch(cfg.arch)
    k.utils.set_random_seed(cfg.seed)  # python, numpy and TF seeds, inside the worker thread
    t0 = time.perf_counter()
    job.update(phase=PHASE_DECODING, epochs=cfg.epochs + (cfg.finetune.epochs if spec.transfer else 0))
    data = prepare_data(ds, report, cfg, data_cfg, job)
    n_classes = len(data.class_names)
    job.add_log(f"train={len(data.x['train'])} val={len(data.x['val'])} test={len(data.x['test'])} images")
    job.check_cancelled()
    job.update(phase=PHASE_COMPILING)

    weights = cfg.weights if spec.transfer else "none"
    weights_note = "not applicable (trained from scratch)"
    strategy = _strategy(cfg)
    with strategy.scope():
        if weights == "imagenet":
            from core.models.weights import weight_status

            status = weight_status(cfg.arch)
            if status.state != "cached":
                job.add_log(f"ImageNet weights {status.state}: {status.message}")
            try:
                model = build_model(cfg.arch, n_classes, cfg.image_size, "imagenet")
                weights_note = "ImageNet (Keras cache)"
            except Exception as exc:  # noqa: BLE001 - offline downloads raise URLError/OSError/...
                raise WorkbenchError(
                    f"ImageNet weights for {spec.title} could not be loaded ({type(exc).__name__}); this "
                    "machine is probably offline. Place the weights file in the Keras cache (see the Train "
                    "page), upload it, or choose 'random initialisation'.", cfg.arch) from None
        else:
            model = build_model(cfg.arch, n_classes, cfg.image_size, "none", cfg.width)
            if spec.transfer:
                weights_note = "random initialisation (no ImageNet weights)"
        if spec.transfer:
            _set_backbone_trainable(model, None)
        model.compile(optimizer=_optimizer(cfg, cfg.learning_rate),
                      loss=k.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                      metrics=["accuracy"])
    job.check_cancelled()

    sw = class_weights(data.y["train"], n_classes)[data.y["train"]] if cfg.class_weighting else None
    train_ds = train_dataset(data.x["train"], data.y["train"], n_classes, cfg.batch_size, cfg.augment, cfg.seed, sw,
                             mixup=cfg.mixup)
    val_ds = eval_dataset(data.x[cfg.validate_on], data.y[cfg.validate_on], n_classes, cfg.batch_size)
    steps = math.ceil(len(data.x["train"]) / cfg.batch_size)
    if cfg.max_train_batches:
        steps = min(steps, cfg.max_train_batches)

    run_id = new_run_id(cfg.arch)
    stage = staging_dir(run_id)
    try:
        total_epochs = cfg.epochs + (cfg.finetune.epochs if spec.transfer else 0)
        ckpt = stage / "checkpoint" / "best.keras"
        ckpt.parent.mkdir()

        finetuning = spec.transfer and cfg.finetune.epochs > 0
        # Weights are averaged over the tail of the last phase; the averaged model replaces "best epoch".
        averager = None
        if cfg.average_epochs:
            last_epochs = cfg.finetune.epochs if finetuning else cfg.epochs
            averager = WeightAverager(min(cfg.average_epochs, last_epochs), last_epochs)

        def callbacks(phase: str, offset: int, epochs: int, lr: float, last: bool) -> list:
            cbs = [
                # First, so a cancel stops the epoch before the checkpoint is written.
                # ETA: phase 1 still has phase 2 ahead of it; phase 2 only itself.
                _ProgressCallback(job, steps, total_epochs, offset, epochs if phase == "finetune" else total_epochs,
                                  phase),
                k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                          restore_best_weights=averager is None),
                k.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True),
            ]
            if cfg.lr_schedule == "cosine":
                cbs.append(_CosineCallback(lr, steps * epochs, warmup_steps=min(steps, steps * epochs // 10)))
            else:
                cbs.append(k.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                         patience=max(1, cfg.patience // 2), min_lr=lr * 1e-3))
            if last and averager is not None:
                cbs.append(averager)
            return cbs

        job.add_log(f"phase 1: {cfg.epochs} epochs × {steps} batches")
        # shuffle=False: train_ds is already shuffled (Keras would only warn that it ignores it).
        hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=steps,
                         callbacks=callbacks("train" if not spec.transfer else "head", 0, cfg.epochs,
                                             cfg.learning_rate, last=not finetuning), verbose=0, shuffle=False)
        epochs_done = len(hist.history.get("loss", []))
        job.check_cancelled()
        if finetuning:
            job.add_log(f"phase 2: unfreezing the top {cfg.finetune.unfreeze_layers} backbone layers")
            lr2 = cfg.learning_rate * cfg.finetune.lr_factor
            with strategy.scope():
                _set_backbone_trainable(model, cfg.finetune.unfreeze_layers)
                model.compile(optimizer=_optimizer(cfg, lr2),
                              loss=k.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                              metrics=["accuracy"])
            # Steps continue from the epochs phase 1 really ran (early stopping may end it sooner).
            model.fit(train_ds, validation_data=val_ds, initial_epoch=epochs_done,
                      epochs=epochs_done + cfg.finetune.epochs, steps_per_epoch=steps,
                      callbacks=callbacks("finetune", epochs_done, cfg.finetune.epochs, lr2, last=True), verbose=0,
                      shuffle=False)
            job.check_cancelled()
        averaging = _average_weights(model, averager, data, cfg, job) if averager is not None else None
        train_seconds = time.perf_counter() - t0

        job.update(phase="Calibrating and saving", progress=0.96)
        results, ood = _post_training(model, data, cfg, n_classes, job)
        if averaging:
            results["averaging"] = averaging
        job.check_cancelled()
        _inference_copy(model).save(stage / MODEL_FILE)
        ood.save(stage / OOD_FILE)
        shutil.rmtree(ckpt.parent, ignore_errors=True)  # the best weights are already in the model
        _write_history(stage / HISTORY_FILE, job.snapshot()["history"])
        card = _model_card(run_id, spec, cfg, data_cfg, ds, data, model, stage, results, weights_note,
                           train_seconds, status="complete")
        write_json_atomic(stage / CARD_FILE, card)
        job.check_cancelled()
        run = publish(stage, run_id)
        job.add_log(f"saved {run.path}")
        return _fit_warnings(run, model, job)
    except BaseException:
        # Cancelled or failed: nothing half-done may look like a usable model.
        if keep_partial and (stage / MODEL_FILE).exists():
            job.add_log("keeping partial run as requested")
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def _fit_warnings(run: Run, model, job: Job) -> Run:
    """Fit the warning thresholds on validation images and their shifted copies (core.inference.trust_fit).

    A run whose validation images cannot be read again keeps its older thresholds: it is
    still usable, only its warnings are less well tuned, and the log says so.
    """
    from core.inference.trust_fit import fit_run_warnings

    job.update(phase="Fitting the warnings on shifted validation images", progress=0.98)
    try:
        run = fit_run_warnings(run, model=model, job=_WarningFitJob(job))
    except WorkbenchError as exc:
        job.add_log(f"warnings keep their basic thresholds: {exc.reason}")
        return run
    except JobCancelled:
        # The model is already saved and usable: a cancel here only skips the fine-tuning of its warnings.
        job.add_log("warnings keep their basic thresholds: cancelled while fitting them (the model is saved)")
        return run
    trust = run.card["results"]["trust"]
    job.add_log(f"warnings: confidence below {trust['min_confidence']:.3f}, feature distance above "
                f"{trust['max_distance'] or float('nan'):.1f}, mirrored views disagree: {trust['flag_unstable']}")
    return run


class _WarningFitJob:
    """The training job as seen by core.inference.trust_fit: its progress maps into the last 2 % of the bar."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def update(self, progress: float = 0.0, phase: str = "", **_: Any) -> None:
        self.job.update(progress=0.98 + 0.02 * min(1.0, progress),
                        phase=f"Fitting the warnings on shifted validation images ({phase.lower()})")

    def check_cancelled(self) -> None:
        self.job.check_cancelled()


def _average_weights(model, averager, data: PreparedData, cfg: TrainConfig, job: Job) -> dict[str, Any]:
    """Swap in the tail-averaged weights and re-estimate batch-norm statistics.

    Validation accuracy (no test-time augmentation) is recorded at each step, so the card shows
    what averaging and re-estimation each did on this run.
    """
    from core.training.averaging import recompute_bn_statistics, set_trainable_weights

    job.update(phase="Averaging weights")
    split = cfg.validate_on
    run = _feature_probe(model)

    def val_accuracy() -> float:
        return float((run(data.x[split])[1].argmax(axis=1) == data.y[split]).mean())

    out: dict[str, Any] = {"val_accuracy_last_epoch": val_accuracy()}
    job.check_cancelled()
    recompute_bn_statistics(model, data.x["train"], check=job.check_cancelled)
    out["val_accuracy_last_epoch_bn"] = val_accuracy()
    job.check_cancelled()
    weights, count = averager.averaged()
    set_trainable_weights(model, weights)
    recompute_bn_statistics(model, data.x["train"], check=job.check_cancelled)
    job.check_cancelled()
    out.update(epochs_averaged=count, val_accuracy_averaged=val_accuracy())
    job.add_log(f"averaged the last {count} epochs: validation accuracy {out['val_accuracy_last_epoch']:.4f} "
                f"(last epoch) → {out['val_accuracy_last_epoch_bn']:.4f} (re-estimated batch norm) → "
                f"{out['val_accuracy_averaged']:.4f} (averaged weights)")
    return out


def calibration_results(val_logits: np.ndarray, y: np.ndarray, n_classes: int, split: str,
                        tta: str) -> dict[str, Any]:
    """Validation metrics, fitted temperature and low-confidence threshold from validation logits.

    ``val_logits`` must be computed the way inference will compute them (with ``tta``).
    """
    from sklearn.metrics import accuracy_score, f1_score

    from core.inference.calibration import (
        expected_calibration_error,
        fit_temperature,
        low_confidence_threshold,
        softmax,
    )

    temperature = fit_temperature(val_logits, y)
    probs_raw, probs = softmax(val_logits), softmax(val_logits, temperature)
    pred = probs.argmax(axis=1)
    return {
        "validated_on": split,
        "tta": tta,
        "val_accuracy": float(accuracy_score(y, pred)),
        "val_macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
        "val_ece_raw": expected_calibration_error(probs_raw, y),
        "val_ece": expected_calibration_error(probs, y),
        "temperature": temperature,
        "low_confidence_threshold": low_confidence_threshold(probs, y),
        "n_val": int(len(y)),
    }


def _feature_probe(model):
    """A batched numpy runner returning (pooled features, logits) without test-time augmentation."""
    from core.inference.runner import ModelRunner

    runner = ModelRunner(model, "none", batch_size=128)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = runner.run(x)
        return out.features, out.logits

    return run


def _post_training(model, data: PreparedData, cfg: TrainConfig, n_classes: int, job: Job | None = None):
    """Validation metrics, temperature, low-confidence threshold and the OOD model."""
    from core.inference.ood import fit_ood
    from core.inference.tta import tta_logits

    check = job.check_cancelled if job is not None else (lambda: None)
    run = _feature_probe(model)
    split = cfg.validate_on
    val_feat, _ = run(data.x[split])
    check()

    def logits(x: np.ndarray) -> np.ndarray:  # one call per test-time view: a cancel point each
        check()
        return run(x)[1]

    val_logits = tta_logits(logits, data.x[split], cfg.tta)
    check()
    rng = np.random.default_rng(cfg.seed)
    sub = rng.choice(len(data.x["train"]), size=min(3000, len(data.x["train"])), replace=False)
    train_feat, _ = run(data.x["train"][sub])
    check()
    results = calibration_results(val_logits, data.y[split], n_classes, split, cfg.tta)
    ood = fit_ood(train_feat, data.y["train"][sub], val_feat, val_logits / results["temperature"])
    results["ood"] = {"mahalanobis_threshold": ood.maha_threshold, "energy_threshold": ood.energy_threshold}
    return results, ood


def recalibrate_run(run: Run, tta: str) -> Run:
    """Refit a registered run's temperature, thresholds and validation metrics for ``tta``.

    Reads the run's own validation files (recorded in its card) from its training data folder;
    only the card changes, so the model file and its sha256 stay as they are.

    Raises:
        WorkbenchError: unknown mode, or the validation images are not on this machine.
    """
    from core.classes import canonical_class
    from core.data.preprocess import load_many
    from core.inference.ood import energy
    from core.inference.tta import TTA_MODES, tta_logits
    from core.models.registry import load_model, update_card

    if tta not in TTA_MODES:
        raise WorkbenchError(f"unknown test-time augmentation '{tta}' (choose {', '.join(TTA_MODES)})", "tta")
    data = run.card["data"]
    root = run.data_root
    files = data["val_files"]
    paths = [root / f for f in files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise WorkbenchError(f"{len(missing)} validation images are missing, e.g. {missing[0]}", str(root))
    y = np.array([run.class_names.index(canonical_class(Path(f).parent.name)) for f in files])
    model_run = _feature_probe(load_model(run))
    logits = tta_logits(lambda x: model_run(x)[1], load_many(paths, run.image_size,
                                                             preprocessing=run.preprocessing), tta)
    split = (run.card.get("results") or {}).get("validated_on", "val")
    results = dict(run.card.get("results") or {})
    results.update(calibration_results(logits, y, len(run.class_names), split, tta))
    ood = dict(results.get("ood") or {})
    ood["energy_threshold"] = float(np.quantile(energy(logits / results["temperature"]), 0.99))
    results["ood"] = ood
    return update_card(run, results=results)


def _inference_copy(model):
    """An uncompiled copy with the same weights: the saved file carries no optimizer state
    (AdamW's two slots per weight would triple its size) and is only ever used for inference."""
    from core.tfrt import keras

    # from_config, not clone_model: Keras 3's clone_model carries the optimizer along.
    copy = keras().Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _model_card(run_id, spec, cfg, data_cfg, ds, data, model, stage, results, weights_note, train_seconds,
                status) -> dict[str, Any]:
    import keras as _k
    import tensorflow as _tf

    from core.data.preprocess import get_recipe

    model_path = stage / MODEL_FILE
    return {
        "card_version": CARD_VERSION,
        "run_id": run_id,
        "status": status,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "arch": spec.key,
        "arch_title": spec.title,
        "class_names": data.class_names,
        "image_size": cfg.image_size,
        "input_channels": 1,
        "preprocessing": {
            "id": cfg.preprocessing,
            "description": get_recipe(cfg.preprocessing).description,
        },
        "weights": weights_note,
        "versions": {"tensorflow": _tf.__version__, "keras": _k.__version__, "python": platform.python_version()},
        "model_file": MODEL_FILE,
        "model_sha256": file_sha256(model_path),
        "model_bytes": model_path.stat().st_size,
        "params": int(model.count_params()),
        "train_config": cfg.to_dict(),
        "data": {
            "name": ds.name,
            "root": str(ds.root),
            "kind": ds.kind,
            "synthetic": ds.synthetic,
            "fingerprint": ds.fingerprint,  # paths, sizes and file times: for caches
            "content_digest": data.content_digest,  # paths and bytes: did the images change?
            "split_mode": "leakage_free" if cfg.leakage_free else "dataset",
            "data_config": data_cfg.to_dict(),
            "counts": {s: {c: int((data.y[s] == i).sum()) for i, c in enumerate(data.class_names)}
                       for s in ("train", "val", "test")},
            "val_files": data.paths["val"],
            "test_files": data.paths["test"],
            "train_hashes": data.hashes["train"],
        },
        "results": results,
        "timings": {"train_seconds": round(train_seconds, 1)},
    }

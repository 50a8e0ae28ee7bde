"""The fit loop: one or two phases of ``model.fit`` with the engine's callbacks, then weight averaging.

Phase 1 trains the whole custom CNN, or only the new head of a transfer model; phase 2
(transfer models with fine-tuning epochs) unfreezes the top of the backbone at a lower rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from core.errors import WorkbenchError
from core.jobs import Job
from core.lazy_tensorflow import keras
from core.models.architectures import ArchSpec, backbone_layers
from core.training.averaging import recompute_bn_statistics, set_trainable_weights, weight_averager
from core.training.callbacks import progress_callback
from core.training.config import TrainConfig
from core.training.data import PreparedData
from core.training.distributed import shard_by_data
from core.training.options import OPTIMIZERS, SCHEDULES
from core.training.pipeline import class_weights, eval_dataset, train_dataset

CHECKPOINT = "best.weights.h5"  # ModelCheckpoint's best-validation-loss weights, read back after each phase


def compile_model(model: Any, cfg: TrainConfig, lr: Any) -> None:
    """Compile with the configured optimizer at ``lr`` (a number or a Keras learning-rate schedule)
    and label-smoothed cross-entropy."""
    k = keras()
    model.compile(optimizer=OPTIMIZERS.check(cfg.optimizer).build(cfg, lr),
                  loss=k.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing), metrics=["accuracy"])


def set_backbone_trainable(model: Any, trainable_top: int | None) -> None:
    """Freeze the backbone (None) or unfreeze its top K non-BatchNorm layers.

    BatchNorm layers stay frozen, which in Keras also runs them in inference mode: fine-tuning
    with tiny batches would otherwise wreck the ImageNet statistics.
    """
    bn = keras().layers.BatchNormalization
    layers = backbone_layers(model)
    for layer in layers:
        layer.trainable = False
    if trainable_top:
        for layer in layers[-trainable_top:]:
            if not isinstance(layer, bn):
                layer.trainable = True


def fit_phases(model: Any, data: PreparedData, cfg: TrainConfig, spec: ArchSpec, strategy: Any, job: Job,
               folder: Path) -> dict[str, Any] | None:
    """Train ``model`` in place; returns what weight averaging did (None when it is off).

    ``folder`` receives the checkpoint of each phase's best validation loss; without averaging
    the model ends on those weights (the checkpoint is the best epoch, read back from disk).
    With progressive resizing (``cfg.small_epochs``) a twin of the model first trains on
    scaled-down images (:mod:`core.training.progressive`); its weights and optimizer state then
    carry over, and the learning-rate schedule runs on across the change of size.
    """
    train_ds, val_ds, steps = _datasets(data, cfg, strategy)
    finetuning = spec.transfer and cfg.finetune.epochs > 0
    total_epochs = cfg.epochs + (cfg.finetune.epochs if spec.transfer else 0)
    # Weights are averaged over the tail of the last phase; the averaged model replaces "best epoch".
    averager = None
    if cfg.average_epochs:
        last_epochs = cfg.finetune.epochs if finetuning else cfg.epochs - cfg.small_epochs
        averager = weight_averager(min(cfg.average_epochs, last_epochs), last_epochs)
    checkpoint = folder / CHECKPOINT

    def callbacks(phase: str, offset: int, epochs: int, last: bool, steering: list) -> list:
        k = keras()
        return [
            # First, so a cancel stops the epoch before the checkpoint is written.
            # ETA: phase 1 still has phase 2 ahead of it; phase 2 only itself.
            progress_callback(job, steps, total_epochs, offset, epochs if phase == "finetune" else total_epochs - offset,
                              phase),
            k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience),
            k.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
            *steering,
            *([averager] if last and averager is not None else []),
        ]

    def end_phase() -> None:
        job.check_cancelled()
        if averager is None and checkpoint.exists():  # absent only if no epoch had a finite val_loss
            model.load_weights(str(checkpoint))

    # One schedule spans every epoch of phase 1, whatever the image size (cosine: warm-up, then decay).
    rate, steering = SCHEDULES.check(cfg.lr_schedule).build(cfg, cfg.learning_rate, steps, cfg.epochs)
    start = 0
    if cfg.small_epochs:
        from core.training.progressive import fit_small_first

        if spec.transfer:
            raise WorkbenchError("progressive resizing is for networks trained from scratch (the custom CNN); "
                                 f"{spec.title} keeps one image size", cfg.arch)
        start = fit_small_first(model, data, cfg, strategy, job, rate, steps,
                                lambda epochs: callbacks("train", 0, epochs, False, steering), _datasets, compile_model)
        checkpoint.unlink(missing_ok=True)  # a small-image validation loss is no yardstick for the full size
    else:
        with strategy.scope():
            compile_model(model, cfg, rate)
    phase = "train" if not spec.transfer else "head"
    job.add_log(f"phase 1: {cfg.epochs - start} epochs × {steps} batches at {cfg.image_size} pixels")
    # shuffle=False: train_ds is already shuffled (Keras would only warn that it ignores it).
    hist = model.fit(train_ds, validation_data=val_ds, initial_epoch=start, epochs=cfg.epochs, steps_per_epoch=steps,
                     callbacks=callbacks(phase, start, cfg.epochs - start, not finetuning, steering), verbose=0,
                     shuffle=False)
    end_phase()
    if finetuning:
        epochs_done = start + len(hist.history.get("loss", []))
        job.add_log(f"phase 2: unfreezing the top {cfg.finetune.unfreeze_layers} backbone layers")
        lr2 = cfg.learning_rate * cfg.finetune.lr_factor
        rate2, steering2 = SCHEDULES.check(cfg.lr_schedule).build(cfg, lr2, steps, cfg.finetune.epochs)
        checkpoint.unlink(missing_ok=True)  # phase 2's best is judged on its own
        with strategy.scope():
            set_backbone_trainable(model, cfg.finetune.unfreeze_layers)
            compile_model(model, cfg, rate2)
        # Steps continue from the epochs phase 1 really ran (early stopping may end it sooner).
        model.fit(train_ds, validation_data=val_ds, initial_epoch=epochs_done,
                  epochs=epochs_done + cfg.finetune.epochs, steps_per_epoch=steps,
                  callbacks=callbacks("finetune", epochs_done, cfg.finetune.epochs, True, steering2), verbose=0,
                  shuffle=False)
        end_phase()
    return average_weights(model, averager, data, cfg, job, checkpoint) if averager is not None else None


def _datasets(data: PreparedData, cfg: TrainConfig, strategy: Any) -> tuple[Any, Any, int]:
    """(training tf.data, validation tf.data, batches per epoch) for the configured run."""
    n_classes = len(data.class_names)
    sw = class_weights(data.y["train"], n_classes)[data.y["train"]] if cfg.class_weighting else None
    train_ds = train_dataset(data.x["train"], data.y["train"], n_classes, cfg.batch_size, cfg.augment, cfg.seed, sw,
                             mixup=cfg.mixup, styled=data.styled, style_mix=cfg.style_mix)
    val_ds = eval_dataset(data.x[cfg.validate_on], data.y[cfg.validate_on], n_classes, cfg.batch_size)
    train_ds, val_ds = shard_by_data(strategy, train_ds), shard_by_data(strategy, val_ds)  # several machines only
    steps = math.ceil(len(data.x["train"]) / cfg.batch_size)
    return train_ds, val_ds, min(steps, cfg.max_train_batches) if cfg.max_train_batches else steps


def average_weights(model: Any, averager: Any, data: PreparedData, cfg: TrainConfig, job: Job,
                    checkpoint: Path | None = None) -> dict[str, Any]:
    """Swap in the tail-averaged weights and re-estimate batch-norm statistics.

    Validation accuracy (no test-time augmentation) is recorded at each step, and for the
    best-validation-loss checkpoint, so the card shows what averaging did against "best epoch".
    """
    from core.inference.runner import ModelRunner

    job.update(phase="Averaging weights")
    split = cfg.validate_on
    runner = ModelRunner(model, "none", features=False, batch_size=128)

    def val_accuracy() -> float:
        return float((runner.run(data.x[split]).logits.argmax(axis=1) == data.y[split]).mean())

    out: dict[str, Any] = {"val_accuracy_last_epoch": val_accuracy()}
    job.check_cancelled()
    if checkpoint is not None and checkpoint.exists():
        last = model.get_weights()
        model.load_weights(str(checkpoint))
        out["val_accuracy_best_epoch"] = val_accuracy()
        model.set_weights(last)
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

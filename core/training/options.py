"""The training choices a person makes by name: optimizers, schedules, weights sources, strategies, precisions.

Each is one :class:`core.options.Option`; ``TrainConfig`` validates against these registries,
and the Train page and ``python -m core train`` list their titles, help and keys from them.
Builders import Keras when called, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.options import Option, Registry

if TYPE_CHECKING:  # config imports these registries to validate its fields; annotations only here
    from core.training.config import TrainConfig


def _adamw(cfg: TrainConfig, lr: float) -> Any:
    from core.lazy_tensorflow import keras

    return keras().optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay)


def _adam(cfg: TrainConfig, lr: float) -> Any:
    from core.lazy_tensorflow import keras

    return keras().optimizers.Adam(learning_rate=lr)


def _sgd(cfg: TrainConfig, lr: float) -> Any:
    from core.lazy_tensorflow import keras

    return keras().optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)


OPTIMIZERS = Registry("optimizer", [
    Option("adamw", "AdamW (decoupled weight decay)",
           "Adam with weight decay kept apart from the gradient step; a safe default.", _adamw),
    Option("adam", "Adam", "Adaptive steps per weight, no weight decay.", _adam),
    Option("sgd", "SGD with Nesterov momentum",
           "Plain gradient descent with momentum 0.9: slower to tune, sometimes generalises better.", _sgd),
])


def warmup_cosine(peak_lr: float, total_steps: int, warmup_steps: int) -> Any:
    """Keras's ``CosineDecay`` with its built-in linear warm-up (Loshchilov & Hutter 2017; Goyal et al.
    2017): the rate climbs from 1/1000 of ``peak_lr`` to ``peak_lr`` over ``warmup_steps`` optimizer
    steps, then falls along a half cosine to 1/1000 of the peak at ``total_steps``."""
    from core.lazy_tensorflow import keras

    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    return keras().optimizers.schedules.CosineDecay(
        initial_learning_rate=peak_lr * 1e-3, decay_steps=max(1, total_steps - warmup_steps), alpha=1e-3,
        warmup_target=peak_lr, warmup_steps=warmup_steps)


def _cosine(cfg: TrainConfig, lr: float, steps: int, epochs: int) -> tuple[Any, list]:
    schedule = warmup_cosine(lr, steps * epochs, warmup_steps=min(steps, steps * epochs // 10))
    return float(schedule(0)), [scheduled_rate(schedule)]


def scheduled_rate(schedule: Any) -> Any:
    """A Keras callback that sets the optimizer's rate from ``schedule`` before every training batch.

    Why not hand the schedule to the optimizer: AdamW's weight decay asks for the rate once per
    weight, and each ask builds the schedule's warm-up branch into the training graph again, so
    the first batch (graph tracing) took 1.6 times as long on the fast preset's network (5.4 against
    3.3 s on a quiet machine, later batches alike; bench/RESULTS.md section 18). Here the rate is
    one variable the graph reads, set from the same Keras schedule at the optimizer's step count,
    so every batch uses the rate the schedule gives, as before.
    """
    from core.lazy_tensorflow import keras

    class ScheduledRate(keras().callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.schedule = schedule

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            optimizer = self.model.optimizer
            step = int(keras().ops.convert_to_numpy(optimizer.iterations))
            optimizer.learning_rate = float(self.schedule(step))

    return ScheduledRate()


def _plateau(cfg: TrainConfig, lr: float, steps: int, epochs: int) -> tuple[Any, list]:
    from core.lazy_tensorflow import keras

    return lr, [keras().callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                    patience=max(1, cfg.patience // 2), min_lr=lr * 1e-3)]


#: Builders take (config, peak learning rate, batches per epoch, epochs of this phase) and return
#: (the optimizer's starting learning rate, the callbacks that steer it from there).
SCHEDULES = Registry("learning-rate schedule", [
    Option("cosine", "Cosine decay with warm-up",
           "The rate rises over the first tenth of the phase, then falls smoothly to 1/1000 of its peak.", _cosine),
    Option("plateau", "Drop when validation loss stalls",
           "The rate is cut to 30 % whenever the validation loss has not improved for half the patience.",
           _plateau),
])

WEIGHTS = Registry("weights source", [
    Option("imagenet", "ImageNet (pre-trained)",
           "Start from weights learned on ImageNet photographs; downloaded once into the Keras cache "
           "(offline machines need the file placed there)."),
    Option("none", "Random initialisation", "Start from random weights: no download, but needs more data and epochs."),
])


def _default_strategy() -> Any:
    from core.lazy_tensorflow import tf

    return tf().distribute.get_strategy()


def _mirrored_strategy() -> Any:
    from core.lazy_tensorflow import tf

    tf_ = tf()
    gpus = [d.name for d in tf_.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf_.config.list_logical_devices("CPU")]
    return tf_.distribute.MirroredStrategy(devices=devices)


def _multiworker_strategy() -> Any:
    from core.training.distributed import multiworker_strategy

    return multiworker_strategy()


STRATEGIES = Registry("distribution strategy", [
    Option("default", "One device", "Train on this machine's default device.", _default_strategy),
    Option("mirrored", "All GPUs of this machine (mirrored)",
           "tf.distribute.MirroredStrategy: one replica per GPU (or per logical CPU device), gradients summed.",
           _mirrored_strategy),
    Option("multiworker", "Several machines (multi-worker, command line)",
           "tf.distribute.MultiWorkerMirroredStrategy: every machine in the TF_CONFIG environment variable runs "
           "python -m core train with the same settings; each trains on its slice of every batch, gradients are "
           "summed across machines and the chief publishes the run.", _multiworker_strategy),
])


#: Builders return the Keras dtype-policy name the training layers use (core.training.precision).
PRECISIONS = Registry("precision", [
    Option("float32", "float32 (standard)", "Every layer computes in 32-bit floats.", lambda: "float32"),
    Option("bfloat16", "bfloat16 mixed (fast)",
           "Layers compute in bfloat16 with float32 weights, loss, logits and batch-norm statistics; about "
           "twice as fast on CPUs with AVX512-BF16 or AMX and on GPUs. The saved model is float32, so "
           "calibration, evaluation and Grad-CAM are unchanged.", lambda: "mixed_bfloat16"),
])


def strategy_for(cfg: TrainConfig) -> Any:
    """The tf.distribute strategy the config names (built now: it inspects the devices)."""
    return STRATEGIES.check(cfg.strategy, "strategy").build()

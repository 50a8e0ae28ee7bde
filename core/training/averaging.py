"""Tail weight averaging and batch-norm re-estimation: a steadier final model than "best epoch".

Late in a cosine schedule the weights wander in a flat basin; the epoch that happens to score
best on validation is partly luck, and choosing it biases the validation figure upwards.
Averaging the weights of the last few epochs (stochastic weight averaging, Izmailov et al.
2018) lands nearer the basin's centre with no selection at all. Averaged weights need batch-norm
statistics of their own, and the running averages kept during training (momentum 0.9, i.e. the
last ~10 augmented batches) are noisy anyway, so both are re-estimated with one pass over the
training images ("precise BN", Wu & Johnson 2021).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def weight_averager(n_epochs: int, total_epochs: int) -> Any:
    """A Keras callback that sums the trainable weights at the end of the last ``n_epochs`` epochs.

    Args:
        n_epochs: how many final epochs to average.
        total_epochs: how many epochs this ``fit`` call runs (counted from its first epoch, so a
            fine-tuning phase started at ``initial_epoch`` works the same way).

    The class is defined on call: subclassing keras.callbacks.Callback at import time would load
    TensorFlow whenever the engine is imported.
    """
    from core.lazy_tensorflow import keras

    class WeightAverager(keras().callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.sums: list[np.ndarray] | None = None
            self.count = 0
            self.last: list[np.ndarray] | None = None  # fallback when stopped before the tail
            self.first_epoch: int | None = None  # a second phase's fit starts at initial_epoch

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            values = [np.asarray(v, dtype=np.float64) for v in self.model.trainable_variables]
            self.last = values
            if self.first_epoch is None:
                self.first_epoch = epoch
            if epoch - self.first_epoch < total_epochs - n_epochs:
                return
            self.sums = values if self.sums is None else [s + v for s, v in zip(self.sums, values)]
            self.count += 1

        def averaged(self) -> tuple[list[np.ndarray], int]:
            """(weights, number of epochs averaged); the last epoch alone if the run stopped early."""
            if self.sums is None:
                return (self.last or []), (1 if self.last else 0)
            return [s / self.count for s in self.sums], self.count

    return WeightAverager()


def set_trainable_weights(model: Any, values: list[np.ndarray]) -> None:
    """Assign ``values`` (in ``model.trainable_variables`` order) to the model."""
    variables = model.trainable_variables
    if len(variables) != len(values):
        raise ValueError(f"expected {len(variables)} arrays, got {len(values)}")
    for var, value in zip(variables, values):
        var.assign(value.astype(var.dtype))


def _trainable_batchnorms(model: Any) -> list:
    from core.lazy_tensorflow import keras

    bn_type = keras().layers.BatchNormalization
    found: list = []

    def walk(layer: Any) -> None:
        for sub in getattr(layer, "layers", []) or []:
            if isinstance(sub, bn_type):
                # Frozen BN layers (transfer backbones) run in inference mode and keep ImageNet stats.
                if sub.trainable:
                    found.append(sub)
            else:
                walk(sub)

    walk(model)
    return found


def recompute_bn_statistics(model: Any, images: np.ndarray, batch_size: int = 128,
                            check: Callable[[], None] | None = None) -> int:
    """Replace every trainable batch-norm layer's running mean/variance by the exact average over
    ``images`` (un-augmented, as inference sees them). Returns the number of layers updated.

    Momentum is set per batch to seen/(seen+batch), which turns the running update into a
    cumulative mean, then restored, so the saved configuration is unchanged. ``check`` runs
    before each batch (a job's cancel check raises there).
    """
    bns = _trainable_batchnorms(model)
    if not bns or len(images) == 0:
        return 0
    from core.lazy_tensorflow import keras

    # A view of the same layers whose inputs are a list, whatever structure the model was built with.
    forward = keras().Model(model.inputs, model.outputs)
    saved = [bn.momentum for bn in bns]
    try:
        seen = 0
        for start in range(0, len(images), batch_size):
            if check is not None:
                check()
            batch = images[start:start + batch_size].astype(np.float32)
            for bn in bns:
                bn.momentum = seen / (seen + len(batch))
            forward([batch], training=True)
            seen += len(batch)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
    return len(bns)

"""Progressive resizing: the first epochs on scaled-down images, the rest at the model's size.

Early in training a network learns coarse shapes, which small images show as well as large
ones at a fraction of the cost (a 96-pixel step costs about 56 % of a 128-pixel one); the last
epochs at full size teach the fine detail and the statistics the saved model needs (Howard's
fast.ai DAWNBench recipe; Touvron et al. 2019 on the train/test resolution gap; Tan & Le 2021).

The custom CNN has a fixed input size, so a twin is built at the small size with the same
builder: its convolution, batch-norm and dense weights have the same shapes as the model's
(global pooling makes them independent of the image size). After the small epochs the model
takes the twin's weights *and* its optimizer state (moments and step count), so AdamW and the
learning-rate schedule carry on as if nothing had changed but the image size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.jobs import Job
from core.training.config import TrainConfig
from core.training.data import PreparedData


def scaled_images(images: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """(N, size, size, C) uint8: ``images`` (N, S, S, C) uint8 scaled by area averaging (no aliasing)."""
    from core.lazy_tensorflow import tf

    tf_ = tf()
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, images.shape[3]), np.uint8)
    for i in range(0, len(images), chunk):
        part = tf_.image.resize(tf_.cast(images[i:i + chunk], tf_.float32), (size, size), method="area")
        out[i:i + chunk] = np.clip(np.rint(part.numpy()), 0, 255).astype(np.uint8)
    return out


def scaled_data(data: PreparedData, size: int, splits: set[str]) -> PreparedData:
    """``data`` with the images of ``splits`` (and the training images' restyled copies, which stand
    in for them) scaled to ``size``; other splits are left out."""
    small = dataclasses.replace(data, x={s: scaled_images(x, size) for s, x in data.x.items() if s in splits})
    if data.styled is not None:
        n, copies = data.styled.shape[:2]
        flat = scaled_images(data.styled.reshape((n * copies,) + data.styled.shape[2:]), size)
        small = dataclasses.replace(small, styled=flat.reshape((n, copies) + flat.shape[1:]))
    return small


def copy_optimizer_state(source: Any, target: Any) -> None:
    """Give ``target``'s optimizer the moments and step count of ``source``'s (same-shaped models).

    Raises:
        WorkbenchError: the two optimizers do not hold the same variables (different networks).
    """
    target.optimizer.build(target.trainable_variables)
    src, dst = source.optimizer.variables, target.optimizer.variables
    if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(src, dst)):
        raise WorkbenchError("the small-image network and the full-size one differ; progressive resizing needs "
                             "the same network at both sizes", "progressive resizing")
    for a, b in zip(dst, src):
        a.assign(b)


def fit_small_first(model: Any, data: PreparedData, cfg: TrainConfig, strategy: Any, job: Job, rate: Any,
                    steps: int, callbacks: Callable[[int], list], datasets: Callable[..., tuple],
                    compile_model: Callable[[Any, TrainConfig, Any], None]) -> int:
    """Train a twin of ``model`` at ``cfg.small_image_size`` for ``cfg.small_epochs`` epochs, then move its
    weights and optimizer state into ``model`` (compiled here with ``rate``). Returns the epochs done.

    ``callbacks(epochs)`` gives the engine's callbacks for these epochs (progress, checkpoint, ...);
    ``datasets(data, cfg, strategy)`` and ``compile_model`` are the fit loop's own (core.training.loop),
    passed in so that this module does not import the loop that calls it.
    """
    from core.models.architectures import build_model
    from core.training.precision import precision_scope

    size = cfg.small_image_size
    job.add_log(f"progressive resizing: {cfg.small_epochs} epochs at {size} pixels, then "
                f"{cfg.epochs - cfg.small_epochs} at {cfg.image_size}")
    small = scaled_data(data, size, {"train", cfg.validate_on})
    train_ds, val_ds, _ = datasets(small, cfg, strategy)
    with strategy.scope(), precision_scope(cfg.precision):
        twin = build_model(cfg.arch, model.output_shape[-1], size, "none", cfg.width)
        twin.set_weights(model.get_weights())  # the same starting point as a run without resizing
        compile_model(twin, cfg, rate)
    twin.fit(train_ds, validation_data=val_ds, epochs=cfg.small_epochs, steps_per_epoch=steps,
             callbacks=callbacks(cfg.small_epochs), verbose=0, shuffle=False)
    job.check_cancelled()
    with strategy.scope():
        compile_model(model, cfg, rate)
        model.set_weights(twin.get_weights())
        copy_optimizer_state(twin, model)
    return cfg.small_epochs

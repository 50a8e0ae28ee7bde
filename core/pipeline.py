"""The tf.data input pipeline shared by training, evaluation and prediction.

decode → resize happens once per (dataset, image size) in parallel threads through
:func:`core.preprocess.load_many` and is cached on disk; then tf.data does
shuffle → batch → augment (training only, a parallel batched map) → prefetch.
Augmenting whole batches is ~10× cheaper than per-image maps on a CPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.config import AugmentConfig
from core.paths import cache_dir
from core.preprocess import PREPROCESSING_ID, load_many


def cached_images(paths: Sequence[Path], size: int, key: str,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, size, size, 1) uint8 for ``paths``, cached on disk under ``key`` (dataset fingerprint)."""
    digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:12]
    folder = cache_dir() / "arrays"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PREPROCESSING_ID}-{key}-{size}-{digest}.npy"
    if target.exists():
        try:
            arr = np.load(target, mmap_mode=None, allow_pickle=False)
            if arr.shape == (len(paths), size, size, 1):
                if progress:
                    progress(len(paths), len(paths))
                return arr
        except (OSError, ValueError):
            pass  # damaged cache: rebuild
    arr = load_many(paths, size, progress=progress)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, target)
    return arr


def train_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                  augment: AugmentConfig, seed: int, sample_weights: np.ndarray | None = None):
    """An infinite, shuffled, augmented, prefetched dataset of (x float32, y one-hot[, w]).

    Deterministic for a seed: the shuffle is seeded and each batch's augmentation key is
    (seed, global batch index), so a rerun sees exactly the same stream.
    """
    from core.augment import augment_batch
    from core.tfrt import tf

    tf = tf()
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    parts = (images, onehot) if sample_weights is None else (images, onehot, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size).enumerate()

    def _map(i, batch):
        x = tf.cast(batch[0], tf.float32)
        x = augment_batch(x, tf.stack([tf.constant(seed, tf.int64), i]), augment)
        return (x,) + tuple(batch[1:])

    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, labels: np.ndarray | None, num_classes: int, batch_size: int):
    """A finite, unshuffled dataset for validation/evaluation/prediction (no augmentation)."""
    from core.tfrt import tf

    tf = tf()
    x = tf.data.Dataset.from_tensor_slices(images).map(lambda a: tf.cast(a, tf.float32))
    if labels is not None:
        y = tf.data.Dataset.from_tensor_slices(np.eye(num_classes, dtype=np.float32)[labels])
        x = tf.data.Dataset.zip((x, y))
    return x.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, normalised so the mean weight per sample is 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights

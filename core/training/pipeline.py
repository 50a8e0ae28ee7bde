"""The tf.data input pipeline shared by training, evaluation and prediction.

decode → resize happens once per (dataset, image size) in parallel threads through
:func:`core.data.preprocess.load_many` and is cached on disk (:mod:`core.data.image_cache`); then tf.data does
shuffle → batch → augment (training only, a parallel batched map) → prefetch.
Augmenting whole batches is ~10× cheaper than per-image maps on a CPU.
"""

from __future__ import annotations

import numpy as np

from core.config import AugmentConfig


def mixup_batch(x, y, w, key, alpha: float):
    """Mixup (Zhang et al. 2018): blend each example with its neighbour in the batch.

    Each example gets its own weight lam ~ Beta(alpha, alpha), folded to lam >= 0.5 so the
    example keeps its identity; labels (and sample weights) blend with the same lam.
    ``key`` is a stateless seed pair: the same key gives the same mix.
    """
    # Called inside a traced tf.data map, where AutoGraph would try to convert core.lazy_tensorflow's
    # environment set-up; TensorFlow is already initialised by then, so import it directly.
    import tensorflow as tf

    n = tf.shape(x)[0]
    g = tf.random.stateless_gamma(tf.stack([n, 2]), seed=key, alpha=alpha, dtype=tf.float32)
    lam = g[:, 0] / (g[:, 0] + g[:, 1] + 1e-12)
    lam = tf.maximum(lam, 1.0 - lam)
    mix = lambda a: tf.roll(a, shift=1, axis=0)  # noqa: E731 - the partner of example i is i-1
    lam_x = tf.reshape(lam, [-1, 1, 1, 1])
    x = lam_x * x + (1.0 - lam_x) * mix(x)
    y = lam[:, None] * y + (1.0 - lam[:, None]) * mix(y)
    if w is not None:
        w = lam * w + (1.0 - lam) * mix(w)
    return x, y, w


def pick_styled(x, styled, key, share: float):
    """Per example, the original image or (with probability ``share``) one of its restyled copies.

    ``x`` (B, H, W, C) and ``styled`` (B, copies, H, W, C); ``key`` is a stateless seed pair.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    keys = tf.random.experimental.stateless_split(key, num=2)
    use = tf.random.stateless_uniform([b], seed=keys[0]) < share
    which = tf.random.stateless_uniform([b], seed=keys[1], maxval=tf.shape(styled)[1], dtype=tf.int32)
    copy = tf.gather(styled, which, batch_dims=1)
    return tf.where(tf.reshape(use, [-1, 1, 1, 1]), tf.cast(copy, x.dtype), x)


def train_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                  augment: AugmentConfig, seed: int, sample_weights: np.ndarray | None = None,
                  mixup: float = 0.0, styled: np.ndarray | None = None, style_mix: float = 0.0):
    """An infinite, shuffled, augmented, prefetched dataset of (x float32, y one-hot[, w]).

    Deterministic for a seed: the shuffle is seeded and each batch's augmentation key is
    (seed, global batch index), so a rerun sees exactly the same stream. ``mixup`` > 0 blends
    augmented examples pairwise (:func:`mixup_batch` with that alpha). ``styled`` (N, copies, S, S, 1)
    with ``style_mix`` > 0 shows that share of examples as one of their restyled copies
    (core.data.style_mix) before augmentation.
    """
    from core.lazy_tensorflow import tf as load_tf
    from core.training.augment import augment_batch

    tf = load_tf()
    mixing = styled is not None and style_mix > 0
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    parts = (images, styled) if mixing else (images,)
    parts += (onehot,) if sample_weights is None else (onehot, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size).enumerate()

    def _map(i, batch):
        x = tf.cast(batch[0], tf.float32)
        if mixing:
            x = pick_styled(x, batch[1], tf.stack([tf.constant(seed + 2, tf.int64), i]), style_mix)
            batch = batch[1:]
        x = augment_batch(x, tf.stack([tf.constant(seed, tf.int64), i]), augment)
        if not mixup:
            return (x,) + tuple(batch[1:])
        w = batch[2] if len(batch) > 2 else None
        x, y, w = mixup_batch(x, batch[1], w, tf.stack([tf.constant(seed + 1, tf.int64), i]), mixup)
        return (x, y) if w is None else (x, y, w)

    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, labels: np.ndarray | None, num_classes: int, batch_size: int):
    """A finite, unshuffled dataset for validation/evaluation/prediction (no augmentation)."""
    from core.lazy_tensorflow import tf as load_tf

    tf = load_tf()
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

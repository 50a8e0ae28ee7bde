"""Training-time augmentation from an :class:`AugmentConfig`, as batched TensorFlow ops.

The Augmentation Preview page calls :func:`augment_batch` with the same config the trainer
uses, so what an instructor sees is exactly what the network is fed. Randomness comes from
stateless ops keyed by an explicit seed, so a seed always gives the same variants.
"""

from __future__ import annotations

import math

import numpy as np

from core.config import AugmentConfig

#: Short explanations shown next to each control.
TRANSFORM_NOTES: dict[str, str] = {
    "rotation_deg": "Rotates the slice about its centre: patients' heads are rarely perfectly straight.",
    "zoom": "Scales in or out: head sizes and fields of view differ between scanners.",
    "translate": "Shifts the slice: the head is not always centred.",
    "horizontal_flip": "Mirrors left-right: tumours occur on either side, so this is anatomically safe.",
    "vertical_flip": "Turns the slice upside-down: no real scan looks like this.",
    "brightness": "Adds a constant: scanners and sequences differ in overall intensity.",
    "contrast": "Stretches intensities about the mean: windowing differs between sites.",
    "blur": "Blurs by a random amount: coarser acquisitions and smoother reconstructions look like this.",
    "noise": "Adds MRI-like (Rician) noise: lower field strengths and faster sequences are noisier.",
    "gamma": "Bends the contrast curve: other scanners and exports map tissue to grey levels differently.",
    "downsample": "Lowers the resolution and scales back up: coarser acquisitions and small exports look "
                  "like this.",
}


#: How each enabled transform reads in a sentence ("rotation up to ±10°"), by AugmentConfig field.
_DESCRIBE: dict[str, str] = {
    "rotation_deg": "rotation up to ±{v:g}°",
    "zoom": "zoom up to ±{v:.0%}",
    "translate": "shift up to ±{v:.0%} of the side",
    "horizontal_flip": "left-right flip",
    "vertical_flip": "upside-down flip",
    "brightness": "brightness up to ±{v:.0%}",
    "contrast": "contrast up to ±{v:.0%}",
    "blur": "blur up to σ {v:g} px",
    "noise": "noise up to σ {v:.0%}",
    "gamma": "contrast curve up to |log γ| {v:g}",
    "downsample": "resolution loss up to {v:.0%}",
}


def describe_augment(cfg: AugmentConfig) -> str:
    """The enabled transforms in plain words, e.g. 'rotation up to ±10°, left-right flip'."""
    parts = [_DESCRIBE[name].format(v=value) for name, value in cfg.to_dict().items() if value]
    return ", ".join(parts) or "no augmentation"


def anatomy_warnings(cfg: AugmentConfig) -> list[str]:
    """Plain warnings about settings that produce anatomically implausible training images."""
    out = []
    if cfg.vertical_flip:
        out.append("Vertical flip puts the cerebellum and skull base on top: the model learns from "
                   "images no scanner produces, and the pituitary region moves to the top.")
    if cfg.zoom > 0.25:
        out.append(f"Zoom up to ±{cfg.zoom:.0%} can crop small lesions (e.g. pituitary tumours near the "
                   "image edge) out of the picture while keeping the tumour label.")
    if cfg.translate > 0.15:
        out.append("Large shifts can push lesions out of the frame.")
    if cfg.rotation_deg > 30:
        out.append("Rotations beyond ±30° are rarely seen in practice.")
    if cfg.contrast > 0.4 or cfg.brightness > 0.3:
        out.append("Strong intensity changes can wash out subtle lesions.")
    if cfg.downsample > 0.7:
        out.append("Scaling down to under a third of the resolution can erase small lesions.")
    if cfg.blur > 1.5 or cfg.noise > 0.1:
        out.append("Strong blur or noise can erase small lesions while keeping the tumour label.")
    return out


def _uniform(seed, shape, lo, hi):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def augment_batch(images, seed, cfg: AugmentConfig):
    """Apply random transforms to a batch.

    Args:
        images: float32 tensor (B, H, W, C) in 0..255 (any C).
        seed: int tensor/array of shape (2,): the stateless RNG key for this batch.
        cfg: which transforms, and how strong.
    Returns:
        A float32 tensor of the same shape, clipped to 0..255. The input is not modified.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    if cfg.is_identity:
        return images
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    b = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    theta = _uniform(seeds[0], [b], -1.0, 1.0) * (cfg.rotation_deg * math.pi / 180.0)
    scale = 1.0 + _uniform(seeds[1], [b], -1.0, 1.0) * cfg.zoom
    tx = _uniform(seeds[2], [b], -1.0, 1.0) * cfg.translate * w
    ty = _uniform(seeds[3], [b], -1.0, 1.0) * cfg.translate * h
    ones = tf.ones([b])
    fx = tf.where(_uniform(seeds[4], [b], 0.0, 1.0) < 0.5, -ones, ones) if cfg.horizontal_flip else ones
    fy = tf.where(_uniform(seeds[5], [b], 0.0, 1.0) < 0.5, -ones, ones) if cfg.vertical_flip else ones
    out = affine_warp(images, theta, scale, tx, ty, fx, fy)
    if cfg.contrast > 0:
        factor = 1.0 + _uniform(seeds[6], [b, 1, 1, 1], -1.0, 1.0) * cfg.contrast
        mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
        out = (out - mean) * factor + mean
    if cfg.brightness > 0:
        out = out + _uniform(seeds[7], [b, 1, 1, 1], -1.0, 1.0) * (cfg.brightness * 255.0)
    if cfg.blur > 0 or cfg.noise > 0:
        # Keys of their own (folded in), so adding blur or noise leaves every other draw unchanged.
        extra = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1), num=3)
        out = tf.clip_by_value(out, 0.0, 255.0)
        if cfg.blur > 0:
            out = _random_blur(out, extra[0], cfg.blur)
        if cfg.noise > 0:
            sigma = _uniform(extra[1], [b, 1, 1, 1], 0.0, 1.0) * (cfg.noise * 255.0)
            n = tf.random.stateless_normal(tf.concat([[2], tf.shape(out)], 0), seed=extra[2])
            # Magnitude images carry Rician noise: the modulus of complex Gaussian noise on the signal.
            out = tf.sqrt(tf.square(out + sigma * n[0]) + tf.square(sigma * n[1]))
    if cfg.gamma > 0 or cfg.downsample > 0:
        # Keys of their own again, so presets without these transforms draw exactly as before.
        more = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 2), num=3)
        out = tf.clip_by_value(out, 0.0, 255.0)
        if cfg.gamma > 0:
            g = tf.exp(_uniform(more[0], [b, 1, 1, 1], -1.0, 1.0) * cfg.gamma)
            out = 255.0 * tf.pow(out / 255.0 + 1e-6, g)
        if cfg.downsample > 0:
            out = _random_downsample(out, more[1], more[2], cfg.downsample)
    return tf.clip_by_value(out, 0.0, 255.0)


def affine_warp(images, theta, scale, tx, ty, fx, fy):
    """Flip, rotate and scale each image about its centre, then shift it (bilinear, black outside).

    Args:
        images: float32 tensor (B, H, W, C).
        theta: (B,) rotation in radians; positive turns the picture clockwise as displayed
            (row 0 at the top).
        scale: (B,) zoom factor (> 1 enlarges).
        tx, ty: (B,) shift in pixels, to the right and downwards.
        fx, fy: (B,) +1 or -1; -1 mirrors left-right (fx) or upside-down (fy).
    Returns:
        float32 tensor of the same shape; pixels that come from outside the image are 0.
    """
    import keras
    import tensorflow as tf

    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    # affine_transform maps each output pixel to the input pixel it samples:
    # in = M (out - c - t) + c, with M = R(-theta) · diag(fx, fy) / scale.
    cos, sin = tf.cos(theta), tf.sin(theta)
    a0, a1 = cos * fx / scale, sin * fy / scale
    b0, b1 = -sin * fx / scale, cos * fy / scale
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    a2 = cx - (a0 * (cx + tx) + a1 * (cy + ty))
    b2 = cy - (b0 * (cx + tx) + b1 * (cy + ty))
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant",
                                            fill_value=0.0, data_format="channels_last")


def _random_downsample(images, seed_factor, seed_pick, max_loss: float):
    """Down-and-up sampling of a random half of the batch, by one factor in [1 - max_loss, 1] per batch.

    One factor per batch keeps the op a single static-shape resize pair; over many batches
    every factor is seen.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    factor = _uniform(seed_factor, [], 1.0 - max_loss, 1.0)
    small = tf.maximum(8, tf.cast(tf.round(tf.cast(h, tf.float32) * factor), tf.int32))
    small_w = tf.maximum(8, tf.cast(tf.round(tf.cast(w, tf.float32) * factor), tf.int32))
    low = tf.image.resize(images, tf.stack([small, small_w]), method="area")
    back = tf.image.resize(low, tf.stack([h, w]), method="bilinear")
    pick = tf.cast(_uniform(seed_pick, [b, 1, 1, 1], 0.0, 1.0) < 0.5, tf.float32)
    return pick * back + (1.0 - pick) * images


def _random_blur(images, seed, max_sigma: float):
    """Separable Gaussian blur with a sigma drawn per image in [0, max_sigma]."""
    import tensorflow as tf

    radius = max(1, math.ceil(3 * max_sigma))
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    sigma = tf.maximum(_uniform(seed, [b], 0.0, max_sigma), 1e-3)  # ~0 gives a delta kernel: no blur
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-tf.square(x)[None, :] / (2.0 * tf.square(sigma)[:, None]))
    k = k / tf.reduce_sum(k, axis=1, keepdims=True)  # (B, 2r+1)
    k = tf.reshape(tf.repeat(k, c, axis=0), [b * c, 2 * radius + 1])  # one kernel per (image, channel)
    # Images become channels of one picture, so depthwise convolution gives each its own kernel.
    x_img = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, b * c])
    horiz = tf.transpose(k)[None, :, :, None]  # (1, 2r+1, B·C, 1)
    vert = tf.transpose(k)[:, None, :, None]  # (2r+1, 1, B·C, 1)
    x_img = tf.nn.depthwise_conv2d(x_img, horiz, strides=[1, 1, 1, 1], padding="SAME")
    x_img = tf.nn.depthwise_conv2d(x_img, vert, strides=[1, 1, 1, 1], padding="SAME")
    return tf.transpose(tf.reshape(x_img, [h, w, b, c]), [2, 0, 1, 3])


def preview_variants(image: np.ndarray, cfg: AugmentConfig, n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` augmented variants of one (H, W) or (H, W, C) uint8 image, as uint8 (n, H, W[, C])."""
    squeeze = image.ndim == 2
    img = image[..., None] if squeeze else image
    batch = np.repeat(img[None].astype(np.float32), n, axis=0)
    out = augment_batch(batch, np.array([seed, 0], dtype=np.int64), cfg).numpy()
    out = np.rint(out).astype(np.uint8)
    return out[..., 0] if squeeze else out

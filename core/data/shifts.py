"""Simulated acquisition differences (other scanners and sites) applied to images.

Shifts act on the model-sized uint8 images, are deterministic for a seed, and sit in a small
registry. The robustness stress test (:mod:`core.evaluation.robustness`) and the fitting of a
run's warning thresholds (:mod:`core.inference.trust_fit`) both use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

#: Shifts act on the whole frame at this multiple of the model's input side, then the model's own
#: preprocessing follows (a head crop of a model-sized frame would lose resolution).
RAW_SCALE = 2


@dataclass(frozen=True)
class ShiftContext:
    """What a shift may need besides the images."""

    labels: np.ndarray | None = None  # class indices (the style shift borrows another class's look)
    scale: float = 1.0  # image side / model input side: pixel-sized strengths are stated at the model's size


@dataclass(frozen=True)
class Shift:
    """One simulated acquisition or source difference."""

    key: str
    title: str
    imitates: str  # what real-world difference it stands for, in plain words
    apply: Callable[[np.ndarray, np.random.Generator, ShiftContext], np.ndarray]  # (N,S,S,1) uint8 -> same
    group: str = "stress"  # stress (acquisition) | style (another source's framing and intensities)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gamma(g: float):
    table = _to_uint8(255.0 * (np.arange(256) / 255.0) ** g)
    return lambda x, rng, ctx: table[x]


def _contrast(factor: float):
    def apply(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
        f = x.astype(np.float32)
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        return _to_uint8(mean + factor * (f - mean))
    return apply


def _noise(sigma: float):
    def apply(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
        # Magnitude MRI noise is Rician: the modulus of complex Gaussian noise added to the signal.
        # Area-resizing to the model's size averages scale² pixels, dividing the noise's spread by
        # scale: multiplying by it keeps the strength as stated at the model's size.
        f = x.astype(np.float32)
        s = sigma * ctx.scale
        re = f + rng.normal(0, s, f.shape)
        im = rng.normal(0, s, f.shape)
        return _to_uint8(np.sqrt(re ** 2 + im ** 2))
    return apply


def _per_image(fn: Callable[[np.ndarray, ShiftContext], np.ndarray]):
    return lambda x, rng, ctx: np.stack([fn(img[..., 0], ctx)[..., None] for img in x]) if len(x) else x


def _blur(sigma: float):
    return _per_image(lambda img, ctx: cv2.GaussianBlur(img, (0, 0), sigma * ctx.scale))


def _low_resolution(factor: float):
    def one(img: np.ndarray, ctx: ShiftContext) -> np.ndarray:
        s = img.shape[0]
        small = cv2.resize(img, (max(8, int(s * factor)),) * 2, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    return _per_image(one)


def _jpeg(quality: int):
    def one(img: np.ndarray, ctx: ShiftContext) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    return _per_image(one)


def _bias_field(strength: float):
    def apply(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
        # A smooth multiplicative gradient in a random direction per image, as a receive coil leaves.
        n, s = len(x), x.shape[1]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(1, s - 1) - 0.5
        angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        ramp = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy  # in [-0.71, 0.71]
        field = 1.0 + strength * ramp / 0.71
        return _to_uint8(x.astype(np.float32) * field[..., None])
    return apply


def _reframe_one(img: np.ndarray, ctx: ShiftContext) -> np.ndarray:
    """The slice cropped to its head (6 % margin, square) and resized back: a tight field of view."""
    from core.data.preprocess import Framing, find_head, square_crop

    found = find_head(img)
    if found is None:
        return img.copy()
    h, w = img.shape
    left, top, right, bottom = square_crop(found[0], h, w)
    crop = Framing(left / w, top / h, right / w, bottom / h).crop(img)
    interp = cv2.INTER_AREA if crop.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(crop, (w, h), interpolation=interp)


def _match_histogram(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``source``'s head with ``reference``'s head intensities, the background as it was (the
    training option "intensity-style mixing" draws the same transform: core.data.style_mix)."""
    from core.data.style_mix import restyle

    return restyle(source, reference)


def _other_class_partner(labels: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """For each image, a random image of another class (any other image when labels are missing)."""
    partner = np.zeros(n, np.int64)
    for i in range(n):
        pool = np.flatnonzero(labels != labels[i]) if labels is not None else np.delete(np.arange(n), i)
        if len(pool) == 0:
            pool = np.delete(np.arange(n), i) if n > 1 else np.array([i])
        partner[i] = rng.choice(pool)
    return partner


def _histogram_style(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
    if len(x) == 0:
        return x.copy()
    partner = _other_class_partner(ctx.labels, len(x), rng)
    return np.stack([_match_histogram(x[i, ..., 0], x[j, ..., 0])[..., None] for i, j in enumerate(partner)])


def _reframe(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
    return _per_image(_reframe_one)(x, rng, ctx)


def _reframe_and_style(x: np.ndarray, rng: np.random.Generator, ctx: ShiftContext) -> np.ndarray:
    return _histogram_style(_reframe(x, rng, ctx), rng, ctx)


SHIFTS: dict[str, Shift] = {s.key: s for s in (
    Shift("none", "Unchanged", "the held-out images as they are", lambda x, rng, ctx: x.copy()),
    Shift("darker", "Darker mid-tones (gamma 1.5)", "a different contrast setting or export curve", _gamma(1.5)),
    Shift("brighter", "Brighter mid-tones (gamma 0.67)", "a different contrast setting or export curve",
          _gamma(1 / 1.5)),
    Shift("low_contrast", "Lower contrast (×0.7)", "a narrower display window", _contrast(0.7)),
    Shift("bias_field", "Intensity inhomogeneity (±25 %)", "a receive-coil bias field across the slice",
          _bias_field(0.25)),
    Shift("noise", "Rician noise (σ = 8)", "a lower field strength or faster, noisier sequence", _noise(8.0)),
    Shift("blur", "Blur (σ = 1 px)", "motion or a smoother reconstruction", _blur(1.0)),
    Shift("low_resolution", "Half resolution", "a coarser acquisition matrix", _low_resolution(0.5)),
    Shift("jpeg", "JPEG quality 30", "heavy compression by a PACS export or screenshot", _jpeg(30)),
    Shift("reframe", "Re-framed to the head", "another scanner's field of view: the head fills the frame",
          _reframe, "style"),
    Shift("histogram", "Intensities of another class's image",
          "another source's brightness and contrast (the head's histogram matched to the head of a random image "
          "of another class; the background left as it is)",
          _histogram_style, "style"),
    Shift("reframe_histogram", "Re-framed and other intensities", "both differences at once, as in a new "
          "hospital's images", _reframe_and_style, "style"),
)}


def shift_images(images: np.ndarray, key: str, seed: int = 0, labels: np.ndarray | None = None,
                 scale: float = 1.0) -> np.ndarray:
    """``images`` (N, S, S, 1) uint8 altered by the shift ``key`` (same seed, same result).

    Args:
        labels: class indices; the style shifts borrow the intensities of another class's image.
        scale: image side over the model's input side (pixel strengths are stated at the model's size).
    """
    if key not in SHIFTS:
        raise KeyError(f"unknown shift '{key}' (choose from {', '.join(SHIFTS)})")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"expected (N, S, S, 1) uint8 images, got {images.shape} {images.dtype}")
    ctx = ShiftContext(None if labels is None else np.asarray(labels), float(scale))
    return SHIFTS[key].apply(images, np.random.default_rng(seed), ctx)

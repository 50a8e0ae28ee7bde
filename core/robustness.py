"""Accuracy under simulated acquisition differences: a proxy for other scanners and sites.

No second, independent source of labelled MRI is available here, so the nearest honest check of
"does it hold elsewhere?" is how accuracy and confidence move when held-out slices are altered
the way another site's images differ: contrast curve, intensity inhomogeneity (bias field),
noise, blur, lower resolution, JPEG compression. It is a stress test, not external validation.

Shifts act on the model-sized uint8 images, are deterministic for a seed, and sit in a small
registry like the architectures and CAM methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Shift:
    """One simulated acquisition difference."""

    key: str
    title: str
    imitates: str  # what real-world difference it stands for, in plain words
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (N,S,S,1) uint8 -> same


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gamma(g: float):
    table = _to_uint8(255.0 * (np.arange(256) / 255.0) ** g)
    return lambda x, rng: table[x]


def _contrast(factor: float):
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = x.astype(np.float32)
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        return _to_uint8(mean + factor * (f - mean))
    return apply


def _noise(sigma: float):
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Magnitude MRI noise is Rician: the modulus of complex Gaussian noise added to the signal.
        f = x.astype(np.float32)
        re = f + rng.normal(0, sigma, f.shape)
        im = rng.normal(0, sigma, f.shape)
        return _to_uint8(np.sqrt(re ** 2 + im ** 2))
    return apply


def _per_image(fn: Callable[[np.ndarray], np.ndarray]):
    return lambda x, rng: np.stack([fn(img[..., 0])[..., None] for img in x]) if len(x) else x


def _blur(sigma: float):
    return _per_image(lambda img: cv2.GaussianBlur(img, (0, 0), sigma))


def _low_resolution(factor: float):
    def one(img: np.ndarray) -> np.ndarray:
        s = img.shape[0]
        small = cv2.resize(img, (max(8, int(s * factor)),) * 2, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    return _per_image(one)


def _jpeg(quality: int):
    def one(img: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    return _per_image(one)


def _bias_field(strength: float):
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # A smooth multiplicative gradient in a random direction per image, as a receive coil leaves.
        n, s = len(x), x.shape[1]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(1, s - 1) - 0.5
        angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        ramp = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy  # in [-0.71, 0.71]
        field = 1.0 + strength * ramp / 0.71
        return _to_uint8(x.astype(np.float32) * field[..., None])
    return apply


SHIFTS: dict[str, Shift] = {s.key: s for s in (
    Shift("none", "Unchanged", "the held-out images as they are", lambda x, rng: x.copy()),
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
)}


def shift_images(images: np.ndarray, key: str, seed: int = 0) -> np.ndarray:
    """``images`` (N, S, S, 1) uint8 altered by the shift ``key`` (same seed, same result)."""
    if key not in SHIFTS:
        raise KeyError(f"unknown shift '{key}' (choose from {', '.join(SHIFTS)})")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"expected (N, S, S, 1) uint8 images, got {images.shape} {images.dtype}")
    return SHIFTS[key].apply(images, np.random.default_rng(seed))


def robustness_table(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
                     n_classes: int, temperature: float = 1.0, shifts: list[str] | None = None,
                     seed: int = 0) -> pd.DataFrame:
    """Accuracy, macro-F1 and mean confidence of a model under each shift.

    Args:
        logits_fn: (N, S, S, 1) uint8 -> (N, C) logits, computed as inference computes them.
        images, labels: the evaluation images (model-sized uint8) and their class indices.
        temperature: the model's calibration temperature (confidence = softmax(logits / T)).
    Returns:
        One row per shift: shift, title, imitates, accuracy, change (accuracy minus the unchanged
        images', in points), macro_f1, mean_confidence, overconfidence (mean confidence minus accuracy).
    """
    from sklearn.metrics import f1_score

    from core.calibration import softmax

    rows = []
    for key in shifts or list(SHIFTS):
        probs = softmax(np.asarray(logits_fn(shift_images(images, key, seed)), dtype=np.float64), temperature)
        pred = probs.argmax(axis=1)
        acc = float((pred == labels).mean())
        rows.append({"shift": key, "title": SHIFTS[key].title, "imitates": SHIFTS[key].imitates, "accuracy": acc,
                     "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(n_classes)),
                                                zero_division=0)),
                     "mean_confidence": float(probs.max(axis=1).mean())})
    table = pd.DataFrame(rows)
    base = table.loc[table["shift"] == "none", "accuracy"]
    table["change"] = 100 * (table["accuracy"] - (float(base.iloc[0]) if len(base) else np.nan))
    table["overconfidence"] = table["mean_confidence"] - table["accuracy"]
    return table[["shift", "title", "imitates", "accuracy", "change", "macro_f1", "mean_confidence",
                  "overconfidence"]]

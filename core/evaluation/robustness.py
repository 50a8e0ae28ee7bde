"""Accuracy under simulated acquisition differences: a proxy for other scanners and sites.

No second, independent source of labelled MRI is available here, so the nearest honest check of
"does it hold elsewhere?" is how accuracy and confidence move when held-out slices are altered
the way another site's images differ: contrast curve, intensity inhomogeneity (bias field),
noise, blur, lower resolution, JPEG compression. It is a stress test, not external validation.

The shifts themselves are data transforms: :mod:`core.data.shifts`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from core.data.shifts import SHIFTS, shift_images


def shifted_logits(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
                   shifts: list[str] | None = None, seed: int = 0,
                   prepare_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                   scale: float = 1.0) -> dict[str, np.ndarray]:
    """Logits (N, C) of a model on each shifted copy of ``images``, keyed by shift.

    Args:
        logits_fn: model inputs -> logits, computed as inference computes them.
        images: (N, R, R, 1) uint8 "as acquired" images (the whole frame).
        labels: class indices (the style shifts need them).
        prepare_fn: shifted images -> model inputs (the model's own preprocessing recipe);
            None when ``images`` already are model inputs.
        scale: R over the model's input side.
    """
    out = {}
    for key in shifts or list(SHIFTS):
        shifted = shift_images(images, key, seed, labels=labels, scale=scale)
        out[key] = np.asarray(logits_fn(prepare_fn(shifted) if prepare_fn else shifted), dtype=np.float64)
    return out


def robustness_table(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
                     n_classes: int, temperature: float = 1.0, shifts: list[str] | None = None,
                     seed: int = 0, prepare_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                     scale: float = 1.0, logits: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Accuracy, macro-F1, ECE and mean confidence of a model under each shift.

    Args:
        logits_fn: (N, S, S, 1) uint8 -> (N, C) logits, computed as inference computes them.
        images, labels: the evaluation images and their class indices (see :func:`shifted_logits`).
        temperature: the model's calibration temperature (confidence = softmax(logits / T)).
        prepare_fn, scale: see :func:`shifted_logits`.
        logits: already computed :func:`shifted_logits` (then ``logits_fn`` is not called).
    Returns:
        One row per shift: shift, title, imitates, group, accuracy, change (accuracy minus the
        unchanged images', in points), macro_f1, ece, mean_confidence, overconfidence (mean
        confidence minus accuracy).
    """
    from sklearn.metrics import f1_score

    from core.inference.calibration import expected_calibration_error, softmax

    if logits is None:
        logits = shifted_logits(logits_fn, images, labels, shifts, seed, prepare_fn, scale)
    rows = []
    for key in shifts or list(logits):
        probs = softmax(logits[key], temperature)
        pred = probs.argmax(axis=1)
        acc = float((pred == labels).mean()) if len(labels) else float("nan")
        rows.append({"shift": key, "title": SHIFTS[key].title, "imitates": SHIFTS[key].imitates,
                     "group": SHIFTS[key].group, "accuracy": acc,
                     "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(n_classes)),
                                                zero_division=0)),
                     "ece": expected_calibration_error(probs, labels) if len(labels) else float("nan"),
                     "mean_confidence": float(probs.max(axis=1).mean()) if len(labels) else float("nan")})
    table = pd.DataFrame(rows)
    base = table.loc[table["shift"] == "none", "accuracy"]
    table["change"] = 100 * (table["accuracy"] - (float(base.iloc[0]) if len(base) else np.nan))
    table["overconfidence"] = table["mean_confidence"] - table["accuracy"]
    return table[["shift", "title", "imitates", "group", "accuracy", "change", "macro_f1", "ece",
                  "mean_confidence", "overconfidence"]]

"""Test-time augmentation: average the logits of a slice and its left-right mirror.

Brains are roughly left-right symmetric and tumours occur on either side, so the mirrored
slice is an equally valid view; averaging the two removes some of the network's side bias.
A run's card says whether it is used (``results.tta``); its temperature and thresholds were
fitted on validation logits computed the same way, so calibration stays valid. Grad-CAM
always explains the unmirrored pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.options import Option, Registry

TTA = Registry("test-time augmentation", [
    Option("none", "None", "Each slice is scored once, as it is."),
    Option("hflip", "Average with the mirrored slice",
           "Each slice is scored as it is and left-right mirrored; the two answers are averaged."),
])
TTA_MODES = tuple(TTA)  # the keys, for membership tests


def mirrored(images: np.ndarray) -> np.ndarray:
    """Left-right mirror of a (N, H, W, C) batch (a copy, the input is not modified)."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1, :])


def tta_logits(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str) -> np.ndarray:
    """``logits_fn(images)``, averaged with the mirrored pass when ``mode == 'hflip'``."""
    logits = np.asarray(logits_fn(images), dtype=np.float64)
    if mode == "hflip":
        logits = (logits + np.asarray(logits_fn(mirrored(images)), dtype=np.float64)) / 2.0
    return logits

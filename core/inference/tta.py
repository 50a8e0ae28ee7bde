"""Test-time augmentation: average the logits of a slice and its left-right mirror.

Brains are roughly left-right symmetric and tumours occur on either side, so the mirrored
slice is an equally valid view; averaging the two removes some of the network's side bias.
A run's card says whether it is used (``results.tta``); its temperature and thresholds were
fitted on validation logits computed the same way, so calibration stays valid. Grad-CAM
always explains the unmirrored pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

TTA_MODES = ("none", "hflip")


def tta_mode(card: dict[str, Any]) -> str:
    """The card's test-time augmentation ('none' for cards written before it existed)."""
    mode = (card.get("results") or {}).get("tta", "none")
    return mode if mode in TTA_MODES else "none"


def mirrored(images: np.ndarray) -> np.ndarray:
    """Left-right mirror of a (N, H, W, C) batch (a copy, the input is not modified)."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1, :])


def tta_logits(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str) -> np.ndarray:
    """``logits_fn(images)``, averaged with the mirrored pass when ``mode == 'hflip'``."""
    logits = np.asarray(logits_fn(images), dtype=np.float64)
    if mode == "hflip":
        logits = (logits + np.asarray(logits_fn(mirrored(images)), dtype=np.float64)) / 2.0
    return logits

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

from core.data.tta import mirrored  # the choices (TTA) and the mirror itself are data-stage


def tta_logits(logits_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str) -> np.ndarray:
    """``logits_fn(images)``, averaged with the mirrored pass when ``mode == 'hflip'``."""
    logits = np.asarray(logits_fn(images), dtype=np.float64)
    if mode == "hflip":
        logits = (logits + np.asarray(logits_fn(mirrored(images)), dtype=np.float64)) / 2.0
    return logits

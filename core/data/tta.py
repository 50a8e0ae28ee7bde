"""Test-time augmentation choices and the mirror transform they use.

Brains are roughly left-right symmetric and tumours occur on either side, so the mirrored
slice is an equally valid view. The registry sits in the data stage because the model card
(models) and the training settings validate against it; averaging logits is
:func:`core.inference.tta.tta_logits`.
"""

from __future__ import annotations

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

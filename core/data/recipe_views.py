"""What each preprocessing recipe feeds the network, and how much a scanner-style change moves it.

For teaching (the Augmentation Preview page): one slice through every registered recipe, as
given and after one of the robustness test's intensity or acquisition shifts, with the mean
change of the network's input. A recipe that standardises intensities shows a small change
under a contrast curve; the raw frame passes it straight through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.preprocess import RECIPES, prepare_framed, resize_square
from core.data.shifts import SHIFTS, shift_images

#: The shifts a slice can be shown under: those that act on one image alone (the style shifts
#: borrow another class's image, which a single upload does not have).
SINGLE_IMAGE_SHIFTS = tuple(k for k, s in SHIFTS.items() if k != "none" and "histogram" not in k)
WORK_SCALE = 4  # the slice is shifted at this multiple of the input side, as the stress test does


@dataclass(frozen=True)
class RecipeView:
    """One recipe's input for a slice, as given and shifted, and the mean absolute change (0–255)."""

    key: str
    title: str
    plain: np.ndarray  # (S, S) uint8
    shifted: np.ndarray  # (S, S) uint8
    change: float
    head_found: bool


def recipe_views(pixels: np.ndarray, size: int, shift: str = "darker") -> list[RecipeView]:
    """Every registered recipe's (size × size) input for a 2-D uint8 slice, as given and under ``shift``.

    Raises:
        KeyError: ``shift`` is not one of :data:`SINGLE_IMAGE_SHIFTS`.
    """
    if shift not in SINGLE_IMAGE_SHIFTS:
        raise KeyError(f"unknown shift '{shift}' (choose from {', '.join(SINGLE_IMAGE_SHIFTS)})")
    img = np.asarray(pixels, dtype=np.uint8)
    img = img[..., 0] if img.ndim == 3 else img
    # The stress test shifts whole frames at WORK_SCALE × the model's side; do the same here so
    # the pixel strengths (noise σ, blur σ) mean what they mean there.
    work = resize_square(img, WORK_SCALE * size)
    moved = shift_images(work[None], shift, seed=0, scale=WORK_SCALE)[0, ..., 0]
    views = []
    for key, recipe in RECIPES.items():
        a, b = prepare_framed(work[..., 0], size, key), prepare_framed(moved, size, key)
        change = float(np.abs(a.pixels.astype(np.int16) - b.pixels.astype(np.int16)).mean())
        views.append(RecipeView(key, recipe.title, a.pixels[..., 0], b.pixels[..., 0], change, a.framing.head_found))
    return views

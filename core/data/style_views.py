"""What intensity-style mixing does to one slice, for teaching (the Augmentation Preview page).

The slice is restyled onto a partner slice's grey-level histogram exactly as new training runs do it
(:func:`core.data.style_mix.restyle` on the raw slice, then the model's recipe), and both
are returned as given and as the network sees them, with a few plain numbers. No drawing here.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.preprocess import get_recipe, prepare
from core.data.style_mix import restyle
from core.errors import WorkbenchError


@dataclass(frozen=True)
class StyleView:
    """A slice, its partner and the slice restyled onto the partner's histogram, raw and prepared.

    Raw arrays are 2-D uint8 at their own size; ``*_input`` arrays are (S, S) uint8, the network's input.
    Brightness is the mean grey level, contrast its standard deviation (0–255 scale).
    """

    original: np.ndarray
    partner: np.ndarray
    restyled: np.ndarray
    original_input: np.ndarray
    partner_input: np.ndarray
    restyled_input: np.ndarray
    input_change: float  # mean |restyled_input - original_input|, 0–255
    brightness: tuple[float, float, float]  # (original, partner, restyled)
    contrast: tuple[float, float, float]  # (original, partner, restyled)


def _gray(pixels: np.ndarray, what: str) -> np.ndarray:
    """A 2-D uint8 view of ``pixels`` ((H, W) or (H, W, 1)); a plain error otherwise."""
    img = np.asarray(pixels)
    img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    if img.ndim != 2 or img.dtype != np.uint8 or img.size == 0:
        raise WorkbenchError(f"expected a 2-D 8-bit grey image, got shape {img.shape} of {img.dtype}", what)
    return img


def style_view(pixels: np.ndarray, partner: np.ndarray, size: int, preprocessing: str) -> StyleView:
    """``pixels`` restyled onto ``partner``'s intensity histogram, as training's style mixing does it.

    Args:
        pixels: the slice, 2-D uint8 (raw, before any recipe).
        partner: the slice whose intensities are borrowed, 2-D uint8 (any size).
        size: the network's input side.
        preprocessing: a registered recipe id; the three slices go through it.

    Raises:
        WorkbenchError: an unknown recipe, or an input that is not a 2-D 8-bit image.
    """
    get_recipe(preprocessing)  # fail before any work
    src, ref = _gray(pixels, "slice"), _gray(partner, "partner")
    moved = restyle(src, ref)
    inputs = [prepare(img, size, preprocessing)[..., 0] for img in (src, ref, moved)]
    change = float(np.abs(inputs[2].astype(np.int16) - inputs[0].astype(np.int16)).mean())
    # Copies, so the caller's arrays are never aliased by what a page may later hand around.
    return StyleView(src.copy(), ref.copy(), moved, *inputs, input_change=change,
                     brightness=tuple(float(a.mean()) for a in (src, ref, moved)),
                     contrast=tuple(float(a.std()) for a in (src, ref, moved)))


def choose_partner(paths: Sequence[str], labels: Sequence[str], current: str, label: str | None,
                   draw: int) -> int | None:
    """Index of a partner slice of another class than ``label`` (any class when None), or None if none.

    Deterministic for (``current``, ``draw``): the same slice and draw number give the same partner,
    another draw usually another one. ``current`` is never its own partner.
    """
    candidates = [i for i, (p, lab) in enumerate(zip(paths, labels)) if p != current and (label is None or lab != label)]
    if not candidates:
        return None
    # crc32, not hash(): Python salts str hashes per process, and a teacher's "draw 3" should repeat.
    rng = np.random.default_rng([int(draw), zlib.crc32(current.encode())])
    return candidates[int(rng.integers(len(candidates)))]

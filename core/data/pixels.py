"""The canonical decoded image and the two pixel helpers both decoders share.

Kept apart from :mod:`core.data.imageio` so that the DICOM decoder can use them without
importing the raster decoder that calls it (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import WorkbenchError

MAX_PIXELS = 40_000_000  # ~6300×6300; far above any MRI slice (every format, DICOM included)
MIN_SIDE = 16  # a thumbnail-sized file carries no diagnostic content


@dataclass
class DecodedImage:
    """A decoded image in canonical form plus what was learned while decoding it."""

    pixels: np.ndarray  # (H, W) uint8 grayscale
    source_format: str  # JPEG, PNG, BMP, TIFF or DICOM
    source_mode: str  # Pillow mode (L, RGB, I;16, ...) or DICOM photometric interpretation
    colourfulness: float  # Hasler–Süsstrunk metric on the original colours; ~0 for grayscale
    meta: dict[str, Any] = field(default_factory=dict)  # safe header fields (never patient data)
    colour_share: float | None = None  # share of pixels whose channels really differ (None: not measured)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def scale_to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None,
                   label: str | None = None) -> np.ndarray:
    """Linearly map [low, high] (default: min..max) onto 0..255, clipping outside.

    Raises:
        WorkbenchError: some values are NaN or infinite (they would become a made-up picture).
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise WorkbenchError("some pixel values are not numbers (NaN or infinity); the image cannot be shown "
                             "or classified reliably", label)
    lo = float(np.min(values)) if low is None else low
    hi = float(np.max(values)) if high is None else high
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


COLOUR_STEP = 24  # channels further apart than this (of 255) are a real colour, not JPEG chroma noise


def colour_share(rgb: np.ndarray) -> float:
    """Share of pixels whose largest and smallest channel differ by more than :data:`COLOUR_STEP`.

    Judges colour by channel difference, not by the stored mode: grey slices saved as RGB JPEGs
    carry chroma noise at edges (a few % of pixels), a colour photo differs almost everywhere.
    """
    small = rgb[:: max(1, rgb.shape[0] // 256), :: max(1, rgb.shape[1] // 256)].astype(np.int16)
    return float(((small.max(axis=2) - small.min(axis=2)) > COLOUR_STEP).mean())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness; grayscale stored as RGB scores ~0."""
    small = rgb[:: max(1, rgb.shape[0] // 128), :: max(1, rgb.shape[1] // 128)].astype(np.float32)
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))

"""The one preprocessing path shared by training, evaluation and prediction.

A file becomes a (S, S, 1) uint8 array here; everything after that (scaling to the range a
network expects, channel replication for ImageNet backbones) lives *inside* the Keras model,
so the saved model cannot be fed differently at inference than it was at training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from core.imageio import DecodedImage, decode_image

#: Recorded in every model card; bump when this function's output changes.
PREPROCESSING_ID = "gray-uint8-resize-area-v1"


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to (size, size, 1) without keeping aspect.

    INTER_AREA when shrinking (anti-aliased), INTER_LINEAR when enlarging. Public MRI
    slices are square or nearly so; a stretched non-square upload is flagged separately.
    """
    h, w = pixels.shape[:2]
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    out = cv2.resize(pixels, (size, size), interpolation=interp)
    return out[..., None]


def prepare(image: DecodedImage, size: int) -> np.ndarray:
    """Model input for an already decoded image: (size, size, 1) uint8."""
    return resize_square(image.pixels, size)


def load_for_model(source: str | Path | bytes, size: int, name: str | None = None) -> np.ndarray:
    """Decode a file or bytes and prepare it: (size, size, 1) uint8. Raises WorkbenchError."""
    return prepare(decode_image(source, name), size)


def load_many(paths: Sequence[str | Path], size: int, progress: Callable[[int, int], None] | None = None,
              workers: int = 4) -> np.ndarray:
    """Decode and prepare many files in parallel threads: (N, size, size, 1) uint8."""
    out = np.zeros((len(paths), size, size, 1), dtype=np.uint8)

    def one(i: int) -> int:
        out[i] = load_for_model(paths[i], size)
        return i

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), start=1):
            if progress and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out

"""Decoded, prepared images cached on disk per (dataset, size, recipe): training, evaluation and
the shortcut and robustness checks all read the same arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.cachefs import DAMAGED_ENTRY, cache_folder, cache_write, discard
from core.data.preprocess import load_many


def cached_images(paths: Sequence[Path], size: int, key: str,
                  progress: Callable[[int, int], None] | None = None, *,
                  preprocessing: str) -> np.ndarray:
    """(N, size, size, 1) uint8 for ``paths`` prepared by ``preprocessing``, cached on disk under
    ``key`` (dataset fingerprint). A damaged entry is rebuilt; an unwritable cache only warns."""
    digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:12]
    folder = cache_folder("arrays")
    target = folder / f"{preprocessing}-{key}-{size}-{digest}.npy" if folder is not None else None
    if target is not None and target.exists():
        try:
            arr = np.load(target, mmap_mode=None, allow_pickle=False)
            if arr.shape == (len(paths), size, size, 1) and arr.dtype == np.uint8:
                if progress:
                    progress(len(paths), len(paths))
                return arr
        except DAMAGED_ENTRY:
            pass
        discard(target)  # damaged or of another shape: rebuilt below
    arr = load_many(paths, size, progress=progress, preprocessing=preprocessing)
    if target is not None:
        cache_write(target, lambda fh: np.save(fh, arr))
    return arr

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
    return cached_array(f"{preprocessing}-{key}-{size}-{paths_digest(paths)}.npy", (len(paths), size, size, 1), progress,
                        lambda: load_many(paths, size, progress=progress, preprocessing=preprocessing))


def paths_digest(paths: Sequence[Path]) -> str:
    """A short digest of a list of paths, in order: part of a cache entry's name."""
    return hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:12]


def cached_array(name: str, shape: tuple[int, ...], progress: Callable[[int, int], None] | None,
                 build: Callable[[], np.ndarray]) -> np.ndarray:
    """The uint8 array cached as ``name``, or ``build()``'s, written to the cache for next time.

    An entry of another shape or dtype, or a damaged one, is rebuilt; an unwritable cache only warns.
    ``progress`` is told the work is done when the cache answers.
    """
    folder = cache_folder("arrays")
    target = folder / name if folder is not None else None
    if target is not None and target.exists():
        try:
            arr = np.load(target, mmap_mode=None, allow_pickle=False)
            if arr.shape == shape and arr.dtype == np.uint8:
                if progress:
                    progress(shape[0], shape[0])
                return arr
        except DAMAGED_ENTRY:
            pass
        discard(target)  # damaged or of another shape: rebuilt below
    arr = build()
    if target is not None:
        cache_write(target, lambda fh: np.save(fh, arr))
    return arr

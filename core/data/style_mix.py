"""Intensity-style mixing: training slices shown with another training slice's intensities.

Why: in the Kaggle data each class comes mostly from one source, so a slice's global intensity
distribution (brightness, contrast, export curve) predicts its class in source and misleads out of
it; the stress test's "another class's intensities" shift costs every model several points. Each
training slice is given the intensity histogram of a randomly drawn training slice of *any* class
(classic CDF matching, on the raw slice before the recipe, as another scanner's export would differ),
so the anatomy stays and the style no longer tells the class (style randomisation for domain
generalisation). A few fixed copies per slice are prepared once and cached; training picks the
original or a copy per example (:func:`core.training.pipeline.train_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.data.image_cache import cached_array, paths_digest
from core.data.imageio import decode_image
from core.data.preprocess import get_recipe, prepare

#: Restyled copies prepared per training slice: two keep a slice from always meeting one partner
#: at the cost of one more decode pass; the cache holds (N, COPIES, S, S, 1) uint8.
COPIES = 2


def histogram_counts(pixels: np.ndarray) -> np.ndarray:
    """(256,) float64 counts of a uint8 image's grey levels."""
    return np.bincount(np.asarray(pixels, np.uint8).ravel(), minlength=256).astype(np.float64)


def match_histogram(source: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """``source`` (uint8) with its grey-level histogram mapped onto ``reference_counts``'s.

    Classic CDF matching: a monotonic (non-decreasing) grey-level table, so the order of
    intensities, and with it the anatomy, is kept; levels may merge where the reference has fewer.
    """
    source = np.asarray(source, np.uint8)
    s_counts = histogram_counts(source)
    s_cdf = np.cumsum(s_counts) / max(1.0, s_counts.sum())
    r_cdf = np.cumsum(reference_counts) / max(1.0, float(np.sum(reference_counts)))
    table = np.clip(np.searchsorted(r_cdf, s_cdf, side="left"), 0, 255).astype(np.uint8)
    return table[source]


def draw_partners(n: int, copies: int, seed: int) -> np.ndarray:
    """(n, copies) partner indices: for each slice, ``copies`` other slices drawn uniformly from all
    of them, whatever their class (a same-class partner is as likely as its share of the data)."""
    if n < 2:
        return np.zeros((n, copies), np.int64)
    rng = np.random.default_rng([seed, 0x57])
    draw = rng.integers(0, n - 1, size=(n, copies))
    return draw + (draw >= np.arange(n)[:, None])  # skip the slice itself


def restyled_copies(paths: Sequence[str | Path], size: int, seed: int, *, preprocessing: str,
                    copies: int = COPIES, progress: Callable[[int, int], None] | None = None,
                    workers: int = 4) -> np.ndarray:
    """(N, copies, size, size, 1) uint8: each slice restyled onto ``copies`` partners' histograms,
    then prepared by ``preprocessing`` (the same recipe the model trains and predicts with).

    Two decode passes: one for every slice's histogram, one to restyle; keeping the raw slices
    in memory instead would cost gigabytes on large datasets.
    """
    get_recipe(preprocessing)  # fail before any work
    n = len(paths)
    out = np.zeros((n, copies, size, size, 1), np.uint8)
    counts = np.zeros((n, 256), np.float64)
    partners = draw_partners(n, copies, seed)
    total = 2 * n

    def histogram(i: int) -> None:
        counts[i] = histogram_counts(decode_image(paths[i]).pixels)

    def restyle(i: int) -> None:
        pixels = decode_image(paths[i]).pixels
        for c in range(copies):
            out[i, c] = prepare(match_histogram(pixels, counts[partners[i, c]]), size, preprocessing)

    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for step in (histogram, restyle):
            for _ in pool.map(step, range(n)):
                done += 1
                if progress and (done % 64 == 0 or done == total):
                    progress(done, total)
    return out


def cached_restyled(paths: Sequence[Path], size: int, key: str, seed: int, *, preprocessing: str,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """:func:`restyled_copies`, cached on disk per (dataset fingerprint ``key``, size, recipe, seed)."""
    name = f"style-{preprocessing}-{key}-{size}-s{seed}-c{COPIES}-{paths_digest(paths)}.npy"
    return cached_array(name, (len(paths), COPIES, size, size, 1), progress,
                        lambda: restyled_copies(paths, size, seed, preprocessing=preprocessing, progress=progress))

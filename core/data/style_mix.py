"""Intensity-style mixing: training slices shown with another training slice's intensities.

Why: in the Kaggle data each class comes mostly from one source, so a slice's global intensity
distribution (brightness, contrast, export curve) predicts its class in source and misleads out of
it; the stress test's "another class's intensities" shift costs every model several points. Each
training slice is given the intensity histogram of a randomly drawn training slice of *any* class
(classic CDF matching, on the raw slice before the recipe, as another scanner's export would differ),
so the anatomy stays and the style no longer tells the class (style randomisation for domain
generalisation). A few fixed copies per slice are prepared once and cached; training picks the
original or a copy per example (:func:`core.training.pipeline.train_dataset`).

Two methods (:data:`STYLE_METHODS`), recorded in the training settings: ``head-v1`` matches the
head's grey levels onto the partner head's and leaves the background as it is; ``frame-v1``, the
first method, matched every pixel of the frame, so a slice with more black background than its
partner came out with a grey background (a quarter of random pairs in this dataset had their
background lifted by more than 15 grey levels), a change no scanner makes. It is kept so that the
runs trained with it can be reproduced and adapted exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.data.image_cache import cached_array, paths_digest
from core.data.imageio import decode_image
from core.data.preprocess import find_head, get_recipe, prepare
from core.data.shared_work import shared_image_work
from core.options import Registry

#: Restyled copies prepared per training slice: two keep a slice from always meeting one partner
#: at the cost of one more decode pass; the cache holds (N, COPIES, S, S, 1) uint8.
COPIES = 2


def histogram_counts(pixels: np.ndarray) -> np.ndarray:
    """(256,) float64 counts of a uint8 image's grey levels."""
    return np.bincount(np.asarray(pixels, np.uint8).ravel(), minlength=256).astype(np.float64)


def _matching_table(source_counts: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """(256,) uint8 grey-level table taking the source histogram's CDF onto the reference's.

    Monotonic (non-decreasing), so the order of intensities, and with it the anatomy, is kept;
    levels may merge where the reference has fewer.
    """
    s_cdf = np.cumsum(source_counts) / max(1.0, float(np.sum(source_counts)))
    r_cdf = np.cumsum(reference_counts) / max(1.0, float(np.sum(reference_counts)))
    return np.clip(np.searchsorted(r_cdf, s_cdf, side="left"), 0, 255).astype(np.uint8)


def match_histogram(source: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """``source`` (uint8) with its whole frame's grey-level histogram mapped onto ``reference_counts``'s
    (classic CDF matching; method ``frame-v1``)."""
    source = np.asarray(source, np.uint8)
    return _matching_table(histogram_counts(source), reference_counts)[source]


def head_mask(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: the head's pixels (:func:`core.data.preprocess.find_head`, scaled back to the
    slice's size); every pixel when no head stands out from the background."""
    pixels = np.asarray(pixels, np.uint8)
    found = find_head(pixels)
    if found is None:
        return np.ones(pixels.shape, bool)
    h, w = pixels.shape
    return cv2.resize(found[1].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def head_counts(pixels: np.ndarray) -> np.ndarray:
    """(256,) float64 counts of the grey levels inside the head (the whole slice when none is found)."""
    pixels = np.asarray(pixels, np.uint8)
    return histogram_counts(pixels[head_mask(pixels)])


def match_head_histogram(source: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """``source`` (uint8) with its head's grey levels mapped onto ``reference_counts`` (a partner
    head's, :func:`head_counts`); the background keeps its own levels (method ``head-v1``)."""
    source = np.asarray(source, np.uint8)
    mask = head_mask(source)
    out = source.copy()
    inside = source[mask]
    out[mask] = _matching_table(histogram_counts(inside), reference_counts)[inside]
    return out


@dataclass(frozen=True)
class StyleMethod:
    """How one slice takes another's intensities: the partner's reference counts, then the mapping."""

    key: str
    title: str
    help: str
    counts: Callable[[np.ndarray], np.ndarray]  # partner slice -> (256,) reference counts
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (slice, reference counts) -> restyled slice


STYLE_METHODS: Registry[StyleMethod] = Registry("intensity-style method", [
    StyleMethod("head-v1", "The head's intensities",
                "The head's grey levels take the partner head's distribution; the background stays as it is.",
                head_counts, match_head_histogram),
    StyleMethod("frame-v1", "The whole frame's intensities (first method)",
                "Every pixel's grey level takes the partner frame's distribution; where the partner has less "
                "black background this turns the background grey. Kept to reproduce the runs trained with it.",
                histogram_counts, match_histogram),
])
#: What new runs, the stress test's "another class's intensities" and the Augmentation Preview use.
DEFAULT_STYLE_METHOD = "head-v1"
#: What a run's settings mean when they mix styles but name no method (cards written before head-v1).
FIRST_STYLE_METHOD = "frame-v1"


def restyle(pixels: np.ndarray, partner: np.ndarray, method: str = DEFAULT_STYLE_METHOD) -> np.ndarray:
    """``pixels`` (2-D uint8) given ``partner``'s intensities by ``method`` (a key of :data:`STYLE_METHODS`)."""
    m = STYLE_METHODS.check(method)
    return m.apply(pixels, m.counts(partner))


def draw_partners(n: int, copies: int, seed: int) -> np.ndarray:
    """(n, copies) partner indices: for each slice, ``copies`` other slices drawn uniformly from all
    of them, whatever their class (a same-class partner is as likely as its share of the data)."""
    if n < 2:
        return np.zeros((n, copies), np.int64)
    rng = np.random.default_rng([seed, 0x57])
    draw = rng.integers(0, n - 1, size=(n, copies))
    return draw + (draw >= np.arange(n)[:, None])  # skip the slice itself


def restyled_copies(paths: Sequence[str | Path], size: int, seed: int, *, preprocessing: str,
                    method: str = DEFAULT_STYLE_METHOD, copies: int = COPIES,
                    progress: Callable[[int, int], None] | None = None, workers: int = 4) -> np.ndarray:
    """(N, copies, size, size, 1) uint8: each slice restyled onto ``copies`` partners' histograms by
    ``method``, then prepared by ``preprocessing`` (the same recipe the model trains and predicts with).

    Two decode passes: one for every slice's histogram, one to restyle; keeping the raw slices
    in memory instead would cost gigabytes on large datasets.
    """
    get_recipe(preprocessing)  # fail before any work
    style = STYLE_METHODS.check(method)
    n = len(paths)
    out = np.zeros((n, copies, size, size, 1), np.uint8)
    counts = np.zeros((n, 256), np.float64)
    partners = draw_partners(n, copies, seed)
    total = 2 * n

    def histogram(i: int) -> None:
        counts[i] = style.counts(decode_image(paths[i]).pixels)

    def restyle(i: int) -> None:
        pixels = decode_image(paths[i]).pixels
        with shared_image_work():  # the slice's head is found once for all its copies, not once per copy
            for c in range(copies):
                out[i, c] = prepare(style.apply(pixels, counts[partners[i, c]]), size, preprocessing)

    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for step in (histogram, restyle):
            for _ in pool.map(step, range(n)):
                done += 1
                if progress and (done % 64 == 0 or done == total):
                    progress(done, total)
    return out


def cached_restyled(paths: Sequence[Path], size: int, key: str, seed: int, *, preprocessing: str,
                    method: str = DEFAULT_STYLE_METHOD,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """:func:`restyled_copies`, cached on disk per (dataset fingerprint ``key``, size, recipe, method, seed)."""
    # The first method's files keep their old name, so caches made before head-v1 stay valid.
    tag = "" if method == FIRST_STYLE_METHOD else f"{STYLE_METHODS.check(method).key}-"
    name = f"style-{tag}{preprocessing}-{key}-{size}-s{seed}-c{COPIES}-{paths_digest(paths)}.npy"
    return cached_array(name, (len(paths), COPIES, size, size, 1), progress,
                        lambda: restyled_copies(paths, size, seed, preprocessing=preprocessing, method=method,
                                                progress=progress))

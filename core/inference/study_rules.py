"""Rules that turn per-slice calibrated probabilities into one study-level answer.

Each rule maps an (N, K) array of the usable slices' probabilities (rows in stack order) to a study label and a
K-vector of study scores (summing to 1, shown as the study's "evidence"). A tumour usually
shows on a minority of a series' slices, so rules that average or vote let the many normal
slices outvote it; the evidence rules look for the strongest support of each tumour class.
bench/study_rules.py compares them on series built from real held-out slices (RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.options import Option, Registry

NO_TUMOUR = "notumor"


@dataclass(frozen=True)
class Aggregate:
    """A study's answer under one rule."""

    label: str
    scores: np.ndarray  # (K,) study evidence per class, sums to 1
    driving: list[int]  # rows of the input, most supportive of ``label`` first


def _normalised(v: np.ndarray) -> np.ndarray:
    total = float(v.sum())
    return v / total if total > 0 else np.full_like(v, 1.0 / len(v))


def _driving(probs: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-probs[:, k], kind="stable")]


def mean_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """The mean of the slices' probabilities; the label is its top class."""
    v = probs.mean(axis=0)
    k = int(v.argmax())
    return Aggregate(classes[k], _normalised(v), _driving(probs, k))


def vote_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """Each slice votes for its top class; the share of votes is the score (ties: higher mean)."""
    votes = np.bincount(probs.argmax(axis=1), minlength=len(classes)).astype(np.float64)
    k = int(np.lexsort((probs.mean(axis=0), votes))[-1])
    return Aggregate(classes[k], _normalised(votes), _driving(probs, k))


def _evidence(probs: np.ndarray, classes: Sequence[str], rank: int) -> Aggregate:
    """Tumour class c scores its ``rank``-th strongest slice; no tumour only when every slice says so."""
    if NO_TUMOUR not in classes:
        return mean_rule(probs, classes)
    z = list(classes).index(NO_TUMOUR)
    r = min(rank, len(probs))
    strongest = -np.sort(-probs, axis=0)[r - 1]  # (K,) r-th largest per class
    v = strongest.copy()
    v[z] = float(probs[:, z].min())  # "no tumour" is as strong as its weakest slice
    top = probs.argmax(axis=1)
    tumour_slices = (top != z).sum()
    if tumour_slices < r:  # fewer than ``rank`` slices name a tumour: no tumour
        k = z
    else:
        masked = v.copy()
        masked[z] = -1.0
        k = int(masked.argmax())
    return Aggregate(classes[k], _normalised(v), _driving(probs, k))


def evidence_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """The tumour class with the strongest single slice; "no tumour" only when every slice says so."""
    return _evidence(probs, classes, 1)


def evidence2_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """As :func:`evidence_rule`, but a tumour needs two slices naming one: one stray slice is not enough."""
    return _evidence(probs, classes, 2)


TOP_SLICES = 3  # top_mean averages this many slices: a small tumour may show on only a few


def _top_mean(probs: np.ndarray, classes: Sequence[str], n: int) -> Aggregate:
    if NO_TUMOUR not in classes:
        return mean_rule(probs, classes)
    z = list(classes).index(NO_TUMOUR)
    n = min(len(probs), n)
    rows = np.argsort(probs[:, z], kind="stable")[:n]
    v = probs[rows].mean(axis=0)
    k = int(v.argmax())
    return Aggregate(classes[k], _normalised(v), _driving(probs, k))


def top_mean_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """The mean over the three most tumour-like slices (lowest "no tumour"), then its top class."""
    return _top_mean(probs, classes, TOP_SLICES)


def top_tenth_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """As :func:`top_mean_rule` over the most tumour-like tenth of the slices (at least three)."""
    return _top_mean(probs, classes, max(TOP_SLICES, int(np.ceil(0.1 * len(probs)))))


WINDOW = 3  # neighbouring slices a tumour must show on: ~1.5 cm at 5 mm spacing


def window_rule(probs: np.ndarray, classes: Sequence[str]) -> Aggregate:
    """The mean over the three *neighbouring* slices that look most like a tumour, then its top class.

    A tumour is a solid object: it shows on adjacent slices, while the model's stray errors on
    normal slices are scattered, so two errors rarely sit side by side. Rows must be in stack order.
    """
    if NO_TUMOUR not in classes or len(probs) <= WINDOW:
        return _top_mean(probs, classes, WINDOW)
    z = list(classes).index(NO_TUMOUR)
    kernel = np.ones(WINDOW) / WINDOW
    smooth = np.stack([np.convolve(probs[:, k], kernel, mode="valid") for k in range(probs.shape[1])], axis=1)
    start = int(smooth[:, z].argmin())
    v = smooth[start]
    k = int(v.argmax())
    driving = list(range(start, start + WINDOW))
    driving.sort(key=lambda i: -probs[i, k])
    rest = [i for i in _driving(probs, k) if i not in driving]
    return Aggregate(classes[k], _normalised(v), driving + rest)


#: The first entry is the default (chosen by bench/study_rules.py; see RESULTS.md).
STUDY_RULES = Registry("study rule", [
    Option("window", "Three neighbouring slices",
           "The mean probabilities of the three adjacent slices that look most like a tumour, then its top class: "
           "a tumour shows on neighbouring slices, stray errors rarely do.", window_rule),
    Option("top_mean", "Mean of the three most tumour-like slices",
           "The mean probabilities of the three slices least likely to be 'no tumour', then its top class: one "
           "stray slice cannot name a tumour alone, and a tumour seen on three slices is not outvoted by the "
           "many normal ones.", top_mean_rule),
    Option("evidence2", "Tumour evidence in two slices",
           "The tumour class named by at least two slices with the strongest support; 'no tumour' when fewer "
           "than two slices name any tumour.", evidence2_rule),
    Option("evidence", "Strongest tumour slice",
           "The tumour class with the strongest single slice; 'no tumour' only when every slice says so.",
           evidence_rule),
    Option("top_tenth", "Mean of the most tumour-like tenth",
           "As the default, over the tenth of slices least likely to be 'no tumour' (at least three).",
           top_tenth_rule),
    Option("mean", "Mean of all slices", "The mean of every usable slice's probabilities.", mean_rule),
    Option("vote", "Majority vote", "The class most slices name.", vote_rule),
])
DEFAULT_RULE = next(iter(STUDY_RULES))


def aggregate(probs: np.ndarray, classes: Sequence[str], rule: str = DEFAULT_RULE) -> Aggregate:
    """The study answer for (N, K) slice probabilities under ``rule`` (N >= 1)."""
    option = STUDY_RULES.check(rule, "rule")
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0 or p.shape[1] != len(classes):
        raise ValueError(f"expected (N >= 1, {len(classes)}) probabilities, got {p.shape}")
    return option.build(p, classes)

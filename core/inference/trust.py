"""When should a prediction carry a warning? Three signals, thresholds fitted on shifted data.

- **low confidence**: the calibrated top probability is below ``min_confidence``;
- **unfamiliar**: the slice's pooled features are far from every training class (Mahalanobis
  distance to the nearest class mean, Lee et al. 2018) beyond ``max_distance``;
- **unstable**: the plain and the mirrored slice get different classes (test-time views
  disagree), a cheap proxy for an ensemble's disagreement.

The thresholds are fitted on held-out validation images *and* their shifted versions
(:mod:`core.evaluation.robustness`: other scanners' contrast, noise, blur, resolution, and other sources'
framing and intensities), so that the warnings catch the mistakes a new hospital's images
cause, while no more than ``false_alarm`` of correct predictions on ordinary images carry one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only
    from core.models.card import ModelCard

FALSE_ALARM = 0.04  # fitted on validation: leaves a margin under the 5 % target on new images
DISTANCE_QUANTILE = 0.99  # the unfamiliar-slice threshold alone flags 1 % of correct ordinary slices


@dataclass(frozen=True)
class TrustThresholds:
    """Card-stored thresholds of the three warnings (``None`` disables that warning)."""

    min_confidence: float = 0.0
    max_distance: float | None = None
    flag_unstable: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrustThresholds | None:
        """Thresholds from a card's ``results.trust`` (None when absent or malformed)."""
        if not isinstance(data, Mapping):
            return None
        try:
            conf = float(data.get("min_confidence", 0.0))
            dist = data.get("max_distance")
            dist = None if dist is None else float(dist)
        except (TypeError, ValueError):
            return None
        if not (0.0 <= conf <= 1.0) or (dist is not None and not np.isfinite(dist)):
            return None
        return cls(conf, dist, bool(data.get("flag_unstable", False)))


@dataclass
class Flags:
    """Per-image warning flags (boolean arrays of one length)."""

    low_confidence: np.ndarray
    unfamiliar: np.ndarray
    unstable: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.low_confidence | self.unfamiliar | self.unstable


def unstable_views(view_logits: list[np.ndarray]) -> np.ndarray:
    """True where the test-time views (plain, mirrored) pick different classes."""
    if len(view_logits) < 2:
        n = len(view_logits[0]) if view_logits else 0
        return np.zeros(n, bool)
    picks = np.stack([np.asarray(v).argmax(axis=1) for v in view_logits])
    return (picks != picks[0]).any(axis=0)


def flags(probs: np.ndarray, distance: np.ndarray | None, view_logits: list[np.ndarray],
          t: TrustThresholds) -> Flags:
    """The three warnings for a batch (calibrated probabilities, feature distances, per-view logits)."""
    n = len(probs)
    low = np.asarray(probs).max(axis=1) < t.min_confidence if n else np.zeros(0, bool)
    far = (np.asarray(distance) > t.max_distance) if (distance is not None and t.max_distance is not None) \
        else np.zeros(n, bool)
    unstable = unstable_views(view_logits) if t.flag_unstable else np.zeros(n, bool)
    return Flags(low, far, unstable)


def fit_thresholds(clean_conf: np.ndarray, clean_distance: np.ndarray | None, clean_unstable: np.ndarray,
                   clean_correct: np.ndarray, false_alarm: float = FALSE_ALARM,
                   always: np.ndarray | None = None) -> TrustThresholds:
    """Thresholds whose warnings fire on at most ``false_alarm`` of correct ordinary predictions.

    The distance threshold is its correct slices' 99th percentile; the views' disagreement is
    kept when it alone stays within half the budget; the confidence threshold then takes the
    largest value that keeps the union of all three within ``false_alarm``. Higher thresholds
    catch more shifted mistakes, so spending the whole budget maximises what is caught.

    Args:
        clean_conf: calibrated top probability of each validation image (unshifted).
        clean_distance: feature distance of each (None: no feature model).
        clean_unstable: whether its test-time views disagree.
        clean_correct: whether the prediction was right.
        always: other warnings that will be shown whatever is fitted here (an ensemble's
            disagreement and its members' unfamiliar vote): always counted against the budget,
            never dropped as the views' check may be.
    """
    ok = np.asarray(clean_correct, bool)
    if not ok.any():
        return TrustThresholds()
    conf = np.asarray(clean_conf)[ok]
    far = np.zeros(ok.sum(), bool)
    max_distance = None
    if clean_distance is not None:
        max_distance = float(np.quantile(np.asarray(clean_distance)[ok], DISTANCE_QUANTILE))
        far = np.asarray(clean_distance)[ok] > max_distance
    unstable = np.asarray(clean_unstable, bool)[ok]
    flag_unstable = bool(unstable.mean() <= false_alarm / 2)
    base = far | (unstable if flag_unstable else False)
    if always is not None:
        base = base | np.asarray(always, bool)[ok]
    budget = int(np.floor(false_alarm * len(conf)))
    # Candidates: just above each correct confidence (a threshold flags confidences strictly below it).
    best = 0.0
    for c in np.unique(conf):
        threshold = float(np.nextafter(c, 1.0))
        if int((base | (conf < threshold)).sum()) <= budget:
            best = threshold
        else:
            break
    return TrustThresholds(min(best, 1.0), max_distance, flag_unstable)


def warning_rates(flagged: np.ndarray, correct: np.ndarray) -> dict[str, float | int | None]:
    """Share of wrong predictions that carry a warning, and of correct ones that do."""
    flagged, correct = np.asarray(flagged, bool), np.asarray(correct, bool)
    wrong = ~correct
    return {
        "wrong_warned": float(flagged[wrong].mean()) if wrong.any() else None,
        "correct_warned": float(flagged[correct].mean()) if correct.any() else None,
        "n_wrong": int(wrong.sum()),
        "silent_wrong": float((wrong & ~flagged).mean()) if len(flagged) else None,
    }


def card_thresholds(card: ModelCard) -> TrustThresholds:
    """The card's warning thresholds: ``results.trust`` when fitted, else the older card fields
    (low-confidence threshold and Mahalanobis threshold, no views check)."""
    results = card.results
    fitted = TrustThresholds.from_dict(results.trust) if results.trust else None
    if fitted is not None:
        return fitted
    try:
        conf = float(results.low_confidence_threshold or 0.0)
        dist = results.ood.get("mahalanobis_threshold")
        dist = None if dist is None else float(dist)
    except (TypeError, ValueError):
        return TrustThresholds()
    return TrustThresholds(min(max(conf, 0.0), 1.0), dist if dist is None or np.isfinite(dist) else None, False)


def describe_thresholds(trust: dict) -> str:
    """A card's warning thresholds in words (the training log, ``calibrate --warnings-only``)."""
    conf, dist, unstable = trust.get("min_confidence"), trust.get("max_distance"), trust.get("flag_unstable")
    close = ("no close-call warning (the fitted limit is 0)" if not conf else
             f"close call below a model probability of {100 * conf:.1f} %")
    far = "no unfamiliar-slice warning" if dist is None else f"unfamiliar slice above a feature distance of {dist:.1f}"
    mirror = ("a warning when the mirrored slice gets another answer" if unstable else
              "no warning for a mirrored slice that gets another answer (it did not help on validation)")
    return f"{close}; {far}; {mirror}"

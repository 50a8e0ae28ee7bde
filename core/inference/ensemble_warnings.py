"""An ensemble's warning rule: fitted (:func:`core.inference.ensemble_fit.fit_ensemble`), shown
(:class:`core.inference.ensemble_predict.EnsemblePredictor`) and counted (the stress test,
:mod:`core.evaluation.ensemble_robustness`) by the functions here, so the three never drift apart.

An ensemble warns when

- its own averaged confidence is low (threshold fitted on validation);
- **the models disagree**: a member's top class differs from the ensemble's, or the members'
  probabilities for the ensemble's class spread more than a fitted threshold;
- **unfamiliar**, by a *majority of members* (strictly more than half): each member measures its
  feature distance in its own feature space, so one member of three finding a slice unfamiliar
  while the others do not is mostly noise; a majority vote is the usual ensemble
  out-of-distribution rule.

Members' "unstable" (mirrored copy answered differently) warnings are not raised: each member
already averages its mirrored views, and members that answer differently are the ensemble's own,
stronger instability signal ("the models disagree"). Facts about the image itself (not an MRI, no
head outline, not MR, near-copy) stay each member's, since they do not depend on the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.inference.trust import FALSE_ALARM, TrustThresholds, fit_thresholds

DISAGREE_SHARE = 0.5  # share of the false-alarm budget the disagreement warning may spend on its own
MAJORITY_RULE = "majority of members"  # how members' unfamiliar warnings count (stored on the card)


def average(member_probs: np.ndarray) -> np.ndarray:
    """(N, K) ensemble probabilities: the plain mean of the members' calibrated probabilities."""
    return np.asarray(member_probs, np.float64).mean(axis=0)


def disagreement(member_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top classes differ, spread) per image: whether some member's top class is not the ensemble's,
    and the largest minus smallest member probability of the ensemble's top class."""
    p = np.asarray(member_probs, np.float64)
    if p.shape[1] == 0:
        return np.zeros(0, bool), np.zeros(0)
    top = average(p).argmax(axis=1)
    differ = (p.argmax(axis=2) != top[None, :]).any(axis=0)
    on_top = p[:, np.arange(p.shape[1]), top]
    return differ, on_top.max(axis=0) - on_top.min(axis=0)


def fit_disagreement(differ: np.ndarray, spread: np.ndarray, correct: np.ndarray,
                     budget: float = FALSE_ALARM * DISAGREE_SHARE) -> float:
    """The spread threshold: the smallest one that, with differing top classes, warns at most
    ``budget`` of the correct answers (1.0, i.e. spread alone never warns, when differing tops
    already spend it)."""
    ok = np.asarray(correct, bool)
    if not ok.any():
        return 1.0
    d, s = np.asarray(differ, bool)[ok], np.asarray(spread, np.float64)[ok]
    allowed = int(np.floor(budget * len(s))) - int(d.sum())
    if allowed <= 0:
        return 1.0
    candidates = np.sort(s[~d])[::-1]  # flagging strictly above a value: the allowed-th largest
    return float(candidates[allowed]) if allowed < len(candidates) else 0.0


def disagree_flags(member_probs: np.ndarray, threshold: float) -> np.ndarray:
    """True where the ensemble's "the models disagree" warning fires."""
    differ, spread = disagreement(member_probs)
    return differ | (spread > threshold)


def majority(member_flags: np.ndarray | None, n_images: int | None = None) -> np.ndarray:
    """(N,) True where strictly more than half of the members' (M, N) flags are raised
    (all False for None, given ``n_images``)."""
    if member_flags is None:
        return np.zeros(n_images or 0, bool)
    f = np.asarray(member_flags, bool)
    return 2 * f.sum(axis=0) > f.shape[0]


@dataclass
class EnsembleFlags:
    """Per-image warnings of an ensemble (boolean arrays of one length)."""

    low_confidence: np.ndarray
    disagree: np.ndarray
    unfamiliar: np.ndarray  # a majority of the members find the slice unfamiliar

    @property
    def any(self) -> np.ndarray:
        return self.low_confidence | self.disagree | self.unfamiliar


def ensemble_flags(member_probs: np.ndarray, member_unfamiliar: np.ndarray | None, min_confidence: float,
                   spread_threshold: float) -> EnsembleFlags:
    """The ensemble's warnings for (M, N, K) member probabilities and the members' (M, N) unfamiliar
    flags (None: no member could check), with the card's thresholds.

    Older ensemble cards (fitted before the majority rule) go through here too, with their stored
    thresholds: they lack only the figures the new fit records.
    """
    p = np.asarray(member_probs, np.float64)
    low = average(p).max(axis=1) < min_confidence if p.shape[1] else np.zeros(0, bool)
    return EnsembleFlags(low, disagree_flags(p, spread_threshold), majority(member_unfamiliar, p.shape[1]))


def fit_ensemble_warnings(member_probs: np.ndarray, member_unfamiliar: np.ndarray | None, correct: np.ndarray,
                          false_alarm: float = FALSE_ALARM) -> tuple[float, TrustThresholds, EnsembleFlags]:
    """(spread threshold, thresholds, the fitted rule's flags) on validation images.

    The spread threshold takes :data:`DISAGREE_SHARE` of the budget; the confidence threshold is
    then fitted knowing every other warning the ensemble will show (disagreement and the members'
    majority unfamiliar vote), so that all of them together warn at most ``false_alarm`` of the
    correct answers (unless those two alone already spend more).
    """
    differ, spread = disagreement(member_probs)
    spread_threshold = fit_disagreement(differ, spread, correct, false_alarm * DISAGREE_SHARE)
    others = (differ | (spread > spread_threshold)) | majority(member_unfamiliar, len(spread))
    conf = average(member_probs).max(axis=1)
    fitted = fit_thresholds(conf, None, np.zeros(len(conf), bool), correct, false_alarm, always=others)
    thresholds = TrustThresholds(fitted.min_confidence, None, False)  # members' mirrored views never warn
    return spread_threshold, thresholds, ensemble_flags(member_probs, member_unfamiliar, fitted.min_confidence,
                                                        spread_threshold)

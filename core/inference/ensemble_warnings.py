"""An ensemble's warning rule: fitted (:func:`core.inference.ensemble_fit.fit_ensemble`), shown
(:class:`core.inference.ensemble_predict.EnsemblePredictor`) and counted (the stress test,
:mod:`core.evaluation.ensemble_robustness`) by the functions here, so the three never drift apart.

An ensemble can warn when

- its own averaged confidence is low;
- **the models disagree**: the members' probabilities for the ensemble's class spread more than a
  threshold, and (if the fit keeps it) a member's top class differs from the ensemble's;
- **unfamiliar** or **unstable when mirrored**: when at least a fitted number of members (one, a
  majority, or never) raise that warning of their own. Each member measures distance in its own
  feature space and averages its own mirrored views, so one member alone may be mostly noise; the
  fit finds out on the validation images instead of assuming it;
- **a sentinel answers differently** (ensembles that list sentinels, :mod:`core.models.ensemble`):
  a model that does not vote names another class than the ensemble's. Kept or dropped by the fit.

All parts are fitted together on validation (:func:`fit_ensemble_warnings`): at most the single
models' false-alarm budget of correct answers warned, as many mistakes warned as that allows (the
mistakes counted on the validation images and on their shifted copies).
Facts about the image itself (not an MRI, no head outline, not MR, near-copy) stay each member's,
since they do not depend on the model. Cards without the fitted member counts use a majority for
unfamiliar and never show mirrored-copy warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.inference.trust import FALSE_ALARM, TrustThresholds, fit_thresholds

DISAGREE_SHARE = 0.5  # share of the false-alarm budget the disagreement warning may spend on its own


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


def disagree_flags(member_probs: np.ndarray, threshold: float, on_differ: bool = True) -> np.ndarray:
    """True where the ensemble's "the models disagree" warning fires: the spread above ``threshold``,
    or (``on_differ``, the rule of cards fitted before the joint fit) a member's top class differs."""
    differ, spread = disagreement(member_probs)
    return (differ & on_differ) | (spread > threshold)


def majority(member_flags: np.ndarray | None, n_images: int | None = None) -> np.ndarray:
    """(N,) True where strictly more than half of the members' (M, N) flags are raised
    (all False for None, given ``n_images``)."""
    m = 0 if member_flags is None else np.asarray(member_flags).shape[0]
    return quorum(member_flags, m // 2 + 1, n_images)


def quorum(member_flags: np.ndarray | None, need: int, n_images: int | None = None) -> np.ndarray:
    """(N,) True where at least ``need`` of the members' (M, N) flags are raised; ``need`` 0: never."""
    if member_flags is None or need <= 0:
        return np.zeros(n_images if member_flags is None else np.asarray(member_flags).shape[1], bool)
    return np.asarray(member_flags, bool).sum(axis=0) >= need


@dataclass(frozen=True)
class MemberRule:
    """How many members must raise their own unfamiliar / mirrored-copy warning for the ensemble to show
    it (0: never). Older cards: unfamiliar by a majority, mirrored copies never."""

    unfamiliar: int | None = None  # None: a majority of the members
    unstable: int = 0

    def need_unfamiliar(self, n_members: int) -> int:
        return n_members // 2 + 1 if self.unfamiliar is None else self.unfamiliar


    sentinel: bool = False  # warn when a sentinel's top class differs from the ensemble's


def card_member_rule(disagreement: Mapping[str, Any]) -> MemberRule:
    """The member rule an ensemble card's ``results.disagreement`` stores (older cards: the default)."""
    u, v = disagreement.get("unfamiliar_members"), disagreement.get("unstable_members")
    return MemberRule(None if u is None else int(u), 0 if v is None else int(v),
                      bool(disagreement.get("sentinel_warns", False)))


def sentinel_differs(member_probs: np.ndarray, sentinel_probs: np.ndarray | None) -> np.ndarray:
    """(N,) True where some sentinel's top class (``sentinel_probs``: (S, N, K), None: no sentinel)
    differs from the ensemble's (the members' average)."""
    p = np.asarray(member_probs, np.float64)
    if sentinel_probs is None or np.asarray(sentinel_probs).shape[0] == 0 or p.shape[1] == 0:
        return np.zeros(p.shape[1], bool)
    top = average(p).argmax(axis=1)
    return (np.asarray(sentinel_probs).argmax(axis=2) != top[None, :]).any(axis=0)


@dataclass
class EnsembleFlags:
    """Per-image warnings of an ensemble (boolean arrays of one length)."""

    low_confidence: np.ndarray
    disagree: np.ndarray
    unfamiliar: np.ndarray  # enough members find the slice unfamiliar (MemberRule)
    unstable: np.ndarray  # enough members answer the mirrored slice differently (MemberRule)
    sentinel: np.ndarray  # a sentinel names another class (when the rule shows it)

    @property
    def any(self) -> np.ndarray:
        return self.low_confidence | self.disagree | self.unfamiliar | self.unstable | self.sentinel


def ensemble_flags(member_probs: np.ndarray, member_unfamiliar: np.ndarray | None, min_confidence: float,
                   spread_threshold: float, on_differ: bool = True, member_unstable: np.ndarray | None = None,
                   rule: MemberRule = MemberRule(), sentinel_probs: np.ndarray | None = None) -> EnsembleFlags:
    """The ensemble's warnings for (M, N, K) member probabilities and the members' (M, N) unfamiliar
    flags (None: no member could check), with the card's thresholds; ``sentinel_probs`` (S, N, K)
    are the sentinels' probabilities (None: the ensemble has none).

    Older ensemble cards (fitted before the majority rule) go through here too, with their stored
    thresholds: they lack only the figures the new fit records.
    """
    p = np.asarray(member_probs, np.float64)
    low = average(p).max(axis=1) < min_confidence if p.shape[1] else np.zeros(0, bool)
    m, n = p.shape[0], p.shape[1]
    return EnsembleFlags(low, disagree_flags(p, spread_threshold, on_differ),
                         quorum(member_unfamiliar, rule.need_unfamiliar(m), n), quorum(member_unstable, rule.unstable, n),
                         sentinel_differs(p, sentinel_probs) & rule.sentinel)


@dataclass(frozen=True)
class Evidence:
    """Members' outputs on labelled images: (M, N, K) calibrated probabilities, (M, N) flags of their
    own unfamiliar and mirrored-copy warnings (None: not available), the (N,) true classes and the
    sentinels' (S, N, K) probabilities (None: no sentinel)."""

    member_probs: np.ndarray
    unfamiliar: np.ndarray | None
    unstable: np.ndarray | None
    labels: np.ndarray
    sentinel_probs: np.ndarray | None = None


def _mistakes(e: Evidence) -> tuple[np.ndarray, ...]:
    """The ensemble's wrong answers in ``e``: (differing tops, spread, labels, confidence, the members'
    unfamiliar and mirrored-copy flags, a sentinel differs), each restricted to those images."""
    differ, spread = disagreement(e.member_probs)
    probs = average(e.member_probs)
    wrong = probs.argmax(axis=1) != np.asarray(e.labels) if len(probs) else np.zeros(0, bool)
    pick = (lambda f: None if f is None else np.asarray(f, bool)[:, wrong])  # noqa: E731
    return (differ[wrong], spread[wrong], np.asarray(e.labels)[wrong], probs.max(axis=1)[wrong] if len(probs)
            else np.zeros(0), pick(e.unfamiliar), pick(e.unstable),
            sentinel_differs(e.member_probs, e.sentinel_probs)[wrong])


def fit_ensemble_warnings(member_probs: np.ndarray, member_unfamiliar: np.ndarray | None, correct: np.ndarray,
                          false_alarm: float = FALSE_ALARM, member_unstable: np.ndarray | None = None,
                          shifted: Sequence[Evidence] = (), sentinel_probs: np.ndarray | None = None,
                          ) -> tuple[float, bool, MemberRule, TrustThresholds, EnsembleFlags]:
    """(spread threshold, whether differing top classes warn, member rule, thresholds, the fitted
    rule's flags) on validation images.

    Every part of the rule is fitted together: differing top classes on or off; the spread off or
    above a value that flags a growing share of the correct answers (up to :data:`DISAGREE_SHARE` of
    the budget); the members' unfamiliar and mirrored-copy warnings shown when one member, a
    majority, or never raises them; a sentinel's differing answer (``sentinel_probs``: (S, N, K)) shown
    or not. For each candidate the confidence threshold is fitted knowing all
    the others; candidates that warn more than ``false_alarm`` of the correct answers are out, and the
    one that warns the most wrong answers wins (ties: fewer correct answers warned). Why jointly:
    on a real ensemble, a fixed rule either spent the budget on differing top classes and caught 15 %
    of the validation mistakes, or showed every member's warnings and warned 8 % of correct answers.

    ``shifted``: the same validation images under simulated shifts (:class:`Evidence` each). Their
    mistakes count in "the most wrong answers" too, never in the budget (which is about ordinary
    images). Why: an accurate ensemble makes a dozen mistakes on validation, too few to choose a rule
    by; the mistakes that matter are those on images unlike the training ones, which the shifts imitate.
    """
    differ, spread = disagreement(member_probs)
    watch = sentinel_differs(member_probs, sentinel_probs)
    ok = np.asarray(correct, bool)
    conf = average(member_probs).max(axis=1)
    m, n = np.asarray(member_probs).shape[:2]
    on_ok = np.sort(spread[ok])[::-1]
    allowed = int(np.floor(false_alarm * DISAGREE_SHARE * max(1, ok.sum())))
    spreads = [1.0, *sorted({float(on_ok[k]) for k in range(min(allowed, len(on_ok) - 1) + 1)})] if len(on_ok) \
        else [1.0]
    votes = sorted({0, 1, m // 2 + 1})
    # the shifted copies' mistakes only: what the rule should catch beyond the ordinary images
    extra = [_mistakes(e) for e in shifted]
    n_wrong = int((~ok).sum()) + sum(len(x[3]) for x in extra)
    best = None
    sentinel_choices = (False, True) if sentinel_probs is not None and len(sentinel_probs) else (False,)
    for rule in (MemberRule(u, v, w) for u in votes for v in votes for w in sentinel_choices):
        member = quorum(member_unfamiliar, rule.need_unfamiliar(m), n) | quorum(member_unstable, rule.unstable, n) \
            | (watch & rule.sentinel)
        extra_member = [quorum(u, rule.need_unfamiliar(m), len(c)) | quorum(v, rule.unstable, len(c)) | (w & rule.sentinel)
                        for _, _, _, c, u, v, w in extra]
        for on_differ in (True, False):
            for threshold in spreads:
                others = (differ & on_differ) | (spread > threshold) | member
                fitted = fit_thresholds(conf, None, np.zeros(n, bool), correct, false_alarm, always=others)
                warned = others | (conf < fitted.min_confidence)
                false = float(warned[ok].mean()) if ok.any() else 0.0
                hits = int(warned[~ok].sum()) + sum(
                    int(((d & on_differ) | (sp > threshold) | mm | (c < fitted.min_confidence)).sum())
                    for (d, sp, _, c, _, _, _), mm in zip(extra, extra_member))
                caught = hits / n_wrong if n_wrong else 0.0
                key = (false <= false_alarm + 1e-12, caught if false <= false_alarm + 1e-12 else -false, -false)
                if best is None or key > best[0]:
                    best = (key, threshold, on_differ, rule, fitted)
    _, spread_threshold, on_differ, rule, fitted = best
    thresholds = TrustThresholds(fitted.min_confidence, None, False)
    return spread_threshold, on_differ, rule, thresholds, ensemble_flags(
        member_probs, member_unfamiliar, fitted.min_confidence, spread_threshold, on_differ, member_unstable, rule,
        sentinel_probs)


def describe_ensemble_rule(disagreement: Mapping[str, Any], min_confidence: float | None, n_members: int,
                           n_sentinels: int = 0) -> str:
    """An ensemble card's fitted warning rule in words (the model box of Predict and the case report):
    what warns, then what the fit left out."""
    rule = card_member_rule(disagreement)
    spread = float(disagreement.get("spread_threshold", 1.0))
    differ = bool(disagreement.get("warn_on_differ", True))
    used: list[str] = []
    unused: list[str] = []
    (used if min_confidence else unused).append(
        f"a close call (averaged probability below {100 * min_confidence:.1f} %)" if min_confidence else "close calls")
    if differ or spread < 1.0:
        said = (["one names another class"] if differ else []) + \
            ([f"their probabilities for the answer differ by more than {100 * spread:.1f} points"] if spread < 1.0
             else [])
        used.append("the models disagreeing (" + " or ".join(said) + ")")
    else:
        unused.append("the models disagreeing")
    for need, what in ((rule.need_unfamiliar(n_members), "finding the slice unfamiliar"),
                       (rule.unstable, "answering the mirrored slice differently")):
        (used if need > 0 else unused).append(f"{need} or more of the {n_members} models {what}" if need > 0
                                              else f"models {what}")
    if n_sentinels:
        (used if rule.sentinel else unused).append("the check model naming another class")
    text = "Warns on " + "; ".join(used) if used else "No warning about the answer"
    if unused:
        text += (". Not used (on validation they caught no more mistakes within the false-alarm budget): "
                 + ", ".join(unused))
    return text

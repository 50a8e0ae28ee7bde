"""core.inference.ensemble_warnings: one rule for an ensemble's warnings, on arrays (no models trained)."""

from __future__ import annotations

import numpy as np
import pytest

from core.inference.ensemble_warnings import (
    MemberRule,
    disagreement,
    ensemble_flags,
    fit_disagreement,
    fit_ensemble_warnings,
    majority,
)
from core.inference.trust import FALSE_ALARM


def _agreeing(m: int, n: int, conf: float = 0.9) -> np.ndarray:
    """(m, n, 2) member probabilities that all pick class 0 with the same confidence."""
    p = np.zeros((m, n, 2))
    p[..., 0], p[..., 1] = conf, 1 - conf
    return p


@pytest.mark.parametrize("raised, warned", [
    ((False, False, False), False),
    ((True, False, False), False),  # one of three: its own feature space's noise
    ((True, True, False), True),  # two of three: a majority
    ((True, True, True), True),
])
def test_unfamiliar_counts_only_for_a_majority_of_three(raised, warned):
    f = ensemble_flags(_agreeing(3, 1), np.array(raised)[:, None], 0.5, 1.0)
    assert bool(f.unfamiliar[0]) is warned and bool(f.any[0]) is warned
    assert not f.low_confidence[0] and not f.disagree[0]


def test_half_of_the_members_is_not_a_majority():
    assert not majority(np.array([[True], [False]]))[0]
    assert not majority(np.array([[True], [True], [False], [False]]))[0]
    assert majority(np.array([[True], [True], [True], [False]]))[0]
    assert majority(None, 3).tolist() == [False] * 3


def test_low_confidence_and_disagreement_still_warn():
    p = _agreeing(3, 2, conf=0.55)
    p[2, 1] = [0.2, 0.8]  # member 3 answers otherwise on image 2
    f = ensemble_flags(p, np.zeros((3, 2), bool), 0.6, 1.0)
    assert f.low_confidence.all()
    assert f.disagree.tolist() == [False, True]
    assert not f.unfamiliar.any()


def test_inputs_are_left_unmodified():
    p, u = _agreeing(3, 4), np.array([[True] * 4, [False] * 4, [True] * 4])
    before = p.copy(), u.copy()
    ensemble_flags(p, u, 0.5, 0.1)
    fit_ensemble_warnings(p, u, np.ones(4, bool))
    np.testing.assert_array_equal(p, before[0])
    np.testing.assert_array_equal(u, before[1])


def _validation(n: int = 1000, m: int = 3, seed: int = 0):
    """Synthetic member probabilities, per-member unfamiliar flags and correctness: about 1 % of
    slices look odd to most members, and each member also flags 3 % of slices at random."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.beta(12, 1.5, n), 0.34, 0.999)
    p = np.zeros((m, n, 2))
    p[..., 0] = np.clip(base[None] + rng.normal(0, 0.05, (m, n)), 0.01, 0.99)
    p[..., 1] = 1 - p[..., 0]
    correct = rng.random(n) < base
    odd = rng.random(n) < 0.01
    unfamiliar = (odd[None] & (rng.random((m, n)) < 0.8)) | (rng.random((m, n)) < 0.03)
    return p, unfamiliar, correct


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_rule_keeps_every_warning_within_the_budget_of_correct_answers(seed):
    p, unfamiliar, correct = _validation(seed=seed)
    spread, on_differ, rule, thresholds, fitted = fit_ensemble_warnings(p, unfamiliar, correct)
    assert fitted.any[correct].mean() <= FALSE_ALARM
    assert thresholds.min_confidence > 0  # the budget left something for low confidence
    assert thresholds.max_distance is None and not thresholds.flag_unstable
    # the stored thresholds give the same flags at prediction time
    again = ensemble_flags(p, unfamiliar, thresholds.min_confidence, spread, on_differ, None, rule)
    np.testing.assert_array_equal(again.any, fitted.any)
    # ignoring the unfamiliar vote when fitting (the old fit) would overspend once it is shown
    blind_spread, blind_differ, _, blind, _ = fit_ensemble_warnings(p, None, correct)
    with_vote = ensemble_flags(p, unfamiliar, blind.min_confidence, blind_spread, blind_differ,
                               None, MemberRule(1, 0))  # every member's unfamiliar warning shown
    assert with_vote.any[correct].mean() > FALSE_ALARM


def test_a_vote_that_alone_spends_the_budget_is_not_shown():
    p, _, correct = _validation()
    everyone = np.zeros((3, p.shape[1]), bool)
    everyone[:, : p.shape[1] // 10] = True  # 10 % of slices unfamiliar to all three
    _, _, rule, thresholds, fitted = fit_ensemble_warnings(p, everyone, correct)
    # showing that vote would spend the whole budget: the fit keeps it off and the confidence warning on
    assert rule.need_unfamiliar(3) == 0 and thresholds.min_confidence > 0
    assert fitted.any[correct].mean() <= FALSE_ALARM


def test_fit_disagreement_spends_its_budget_and_no_more():
    rng = np.random.default_rng(0)
    spread = rng.uniform(0, 0.5, 400)
    differ = np.zeros(400, bool)
    differ[:4] = True
    correct = np.ones(400, bool)
    t = fit_disagreement(differ, spread, correct, budget=0.02)
    assert int((differ | (spread > t)).sum()) == 8
    assert fit_disagreement(np.ones(400, bool), spread, correct, budget=0.02) == 1.0
    p = np.array([[[0.9, 0.1]], [[0.3, 0.7]]])  # two members, one image: their tops differ
    d, s = disagreement(p)
    assert d[0] and s[0] == pytest.approx(0.6)


class _Member:
    """A member predictor that reports fixed warnings (what Predictor.warnings_for returns)."""

    def __init__(self, flags: list[str], messages: list[str], details: dict[str, str]) -> None:
        self.out = messages, flags, details

    def warnings_for(self, image, scores, i, framing=None):
        messages, flags, details = self.out
        return list(messages), list(flags), dict(details)


def _predictor(members: list[_Member]):
    from core.inference.ensemble_predict import EnsemblePredictor

    predictor = object.__new__(EnsemblePredictor)  # the warning rule only: no run, no models
    predictor.members, predictor.class_names = members, ["a", "b"]
    predictor.low_confidence, predictor.spread_threshold, predictor.warn_on_differ = 0.5, 1.0, True
    predictor.member_rule = MemberRule()  # what a card without a fitted member rule gets
    return predictor


def _scores(m: int):
    from core.inference.ensemble_predict import EnsembleScores

    member_probs = _agreeing(m, 1)
    probs = member_probs.mean(axis=0)
    return EnsembleScores(np.log(probs), probs, None, None, np.zeros(1), [], members=[None] * m,
                          member_probs=member_probs)


@pytest.mark.parametrize("n_unfamiliar, warned", [(1, False), (2, True)])
def test_predict_shows_unfamiliar_by_majority_and_never_unstable(n_unfamiliar, warned):
    from core.inference.ensemble_predict import UNFAMILIAR_MESSAGE
    from core.inference.slice_warnings import (
        DISTANCE_DETAIL,
        MIRROR_DETAIL,
        NOT_MRI,
        UNSTABLE_MESSAGE,
    )
    from core.inference.slice_warnings import (
        UNFAMILIAR_MESSAGE as MEMBER_UNFAMILIAR,
    )

    not_mri = f"{NOT_MRI}: it is a photograph"
    members = [_Member(["unfamiliar", "unstable", "ood"] if j < n_unfamiliar else ["ood"],
                       [MEMBER_UNFAMILIAR, UNSTABLE_MESSAGE, not_mri] if j < n_unfamiliar else [not_mri],
                       {DISTANCE_DETAIL: f"{j}", MIRROR_DETAIL: "no"}) for j in range(3)]
    messages, flags, details = _predictor(members).warnings_for(None, _scores(3), 0)
    assert ("unfamiliar" in flags) is warned and (UNFAMILIAR_MESSAGE in messages) is warned
    assert "unstable" not in flags and UNSTABLE_MESSAGE not in messages and MEMBER_UNFAMILIAR not in messages
    assert flags.count("ood") == 1 and messages.count(not_mri) == 1  # facts about the image stay, once
    assert details["Models that find this slice unfamiliar"].startswith(f"{n_unfamiliar} of 3")
    assert details[MIRROR_DETAIL].count("no") == 3  # each model's figure, not only the first's


def test_the_joint_fit_drops_differing_tops_when_low_confidence_catches_more_mistakes():
    """Members' tops differ on 5 % of correct answers and on no mistake, while every mistake is a
    low-confidence answer: warning on differing tops would spend the whole budget for nothing."""
    n = 1000
    rng = np.random.default_rng(4)
    correct = np.ones(n, bool)
    correct[:20] = False
    conf = np.where(correct, rng.uniform(0.8, 0.99, n), rng.uniform(0.45, 0.6, n))
    p = np.zeros((3, n, 2))
    p[..., 0] = conf[None]
    differ = np.zeros(n, bool)
    differ[100:150] = True  # correct answers only
    p[0, differ, 0] = 0.4  # one member's top class differs there
    p[..., 1] = 1 - p[..., 0]
    spread_threshold, on_differ, _, thresholds, fitted = fit_ensemble_warnings(p, None, correct)
    assert not on_differ and thresholds.min_confidence > 0.6
    assert fitted.any[~correct].mean() == 1.0 and fitted.any[correct].mean() <= FALSE_ALARM
    # the old rule (differing tops always warn) leaves the confidence warning no budget
    old = ensemble_flags(p, None, 0.0, 1.0, True)
    assert old.any[~correct].mean() == 0.0


def test_the_fit_shows_members_mirrored_copy_warnings_when_they_catch_the_mistakes():
    """Each mistake is answered differently when mirrored by two members; correct answers rarely are."""
    n = 1000
    rng = np.random.default_rng(5)
    correct = np.ones(n, bool)
    correct[:20] = False
    p = np.zeros((3, n, 2))
    p[..., 0] = rng.uniform(0.9, 0.99, (3, n))  # confident everywhere: low confidence cannot help
    p[..., 1] = 1 - p[..., 0]
    unstable = np.zeros((3, n), bool)
    unstable[:2, :20] = True
    unstable[0, 100:160] = True  # one member alone, on 6 % of correct answers: noise over the budget
    _, _, rule, _, fitted = fit_ensemble_warnings(p, None, correct, member_unstable=unstable)
    assert rule.unstable == 2 and fitted.unstable[:20].all() and not fitted.unstable[100:160].any()
    assert fitted.any[correct].mean() <= FALSE_ALARM


def test_mistakes_on_shifted_copies_choose_the_rule_but_never_spend_the_budget():
    """Validation with almost no mistakes cannot tell the rules apart; shifted copies whose mistakes only
    the members' unfamiliar vote catches make the fit show that vote, within the same budget."""
    from core.inference.ensemble_warnings import Evidence

    n = 1000
    p = _agreeing(3, n, conf=0.95)
    unfamiliar = np.zeros((3, n), bool)
    unfamiliar[:, :20] = True  # 2 % of ordinary slices: within the 4 % budget
    correct = np.ones(n, bool)
    plain = fit_ensemble_warnings(p, unfamiliar, correct)
    # shifted copies: confident, agreeing mistakes (class 1 is right) that most members find unfamiliar
    shifted_p = _agreeing(3, 200, conf=0.95)
    shifted_u = np.zeros((3, 200), bool)
    shifted_u[:2, :150] = True
    evidence = Evidence(shifted_p, shifted_u, None, np.ones(200, int))
    spread, on_differ, rule, thresholds, fitted = fit_ensemble_warnings(p, unfamiliar, correct, shifted=[evidence])
    assert plain[2].need_unfamiliar(3) == 0  # nothing to catch on validation alone: the quiet rule
    assert rule.need_unfamiliar(3) in (1, 2)  # the vote that catches 75 % of the shifted mistakes is shown
    assert fitted.any[correct].mean() <= FALSE_ALARM  # the budget is about ordinary slices only
    caught = ensemble_flags(shifted_p, shifted_u, thresholds.min_confidence, spread, on_differ, None, rule).any
    assert caught.mean() == pytest.approx(0.75)


# --- sentinels: models that only warn ------------------------------------------------------------


def _sentinel(n: int, differ: slice) -> np.ndarray:
    """(1, n, 2) sentinel probabilities that agree with class 0 except on ``differ``."""
    s = _agreeing(1, n, conf=0.8)
    s[0, differ] = [0.2, 0.8]
    return s


def test_a_sentinel_warns_only_where_its_answer_differs_and_the_rule_shows_it():
    from core.inference.ensemble_warnings import sentinel_differs

    p, s = _agreeing(3, 4), _sentinel(4, slice(1, 3))
    assert sentinel_differs(p, s).tolist() == [False, True, True, False]
    assert sentinel_differs(p, None).tolist() == [False] * 4  # no sentinel: nothing to differ
    quiet = ensemble_flags(p, None, 0.5, 1.0, True, None, MemberRule(), s)  # the rule does not show it
    assert not quiet.sentinel.any() and not quiet.any.any()
    loud = ensemble_flags(p, None, 0.5, 1.0, True, None, MemberRule(sentinel=True), s)
    assert loud.sentinel.tolist() == [False, True, True, False] and loud.any.tolist() == loud.sentinel.tolist()
    assert not loud.disagree.any()  # the members agree: a sentinel is not one of them


def test_the_fit_shows_a_sentinel_that_catches_shifted_mistakes_within_the_budget():
    from core.inference.ensemble_warnings import Evidence

    n = 1000
    p, correct = _agreeing(3, n, conf=0.95), np.ones(n, bool)
    s = _sentinel(n, slice(0, 20))  # differs on 2 % of ordinary slices: within the budget
    shifted_p = _agreeing(3, 200, conf=0.95)  # confident, agreeing mistakes (class 1 is right) ...
    evidence = Evidence(shifted_p, None, None, np.ones(200, int), _sentinel(200, slice(0, 160)))  # ... 80 % seen
    spread, on_differ, rule, thresholds, fitted = fit_ensemble_warnings(p, None, correct, shifted=[evidence],
                                                                        sentinel_probs=s)
    assert rule.sentinel
    assert fitted.sentinel.sum() == 20 and fitted.any[correct].mean() <= FALSE_ALARM
    caught = ensemble_flags(shifted_p, None, thresholds.min_confidence, spread, on_differ, None, rule,
                            evidence.sentinel_probs).any
    assert caught.mean() == pytest.approx(0.8)
    # the same evidence without a sentinel: nothing catches those confident mistakes
    _, _, blind, _, _ = fit_ensemble_warnings(p, None, correct, shifted=[Evidence(shifted_p, None, None,
                                                                                  np.ones(200, int))])
    assert not blind.sentinel


def test_a_sentinel_that_would_warn_too_many_correct_answers_is_not_shown():
    from core.inference.ensemble_warnings import Evidence

    n = 1000
    p, correct = _agreeing(3, n, conf=0.95), np.ones(n, bool)
    s = _sentinel(n, slice(0, 100))  # differs on 10 % of correct answers: over the budget on its own
    evidence = Evidence(_agreeing(3, 50, conf=0.95), None, None, np.ones(50, int), _sentinel(50, slice(0, 50)))
    _, _, rule, _, fitted = fit_ensemble_warnings(p, None, correct, shifted=[evidence], sentinel_probs=s)
    assert not rule.sentinel and not fitted.sentinel.any()
    assert fitted.any[correct].mean() <= FALSE_ALARM


def test_card_rule_reads_the_sentinel_choice_and_older_cards_never_show_it():
    from core.inference.ensemble_warnings import card_member_rule

    assert card_member_rule({}).sentinel is False
    assert card_member_rule({"unfamiliar_members": 2, "sentinel_warns": True}) == MemberRule(2, 0, True)


def test_the_fitted_rule_in_words_says_what_warns_and_what_the_fit_left_out():
    from core.inference.ensemble_warnings import describe_ensemble_rule

    shipped = {"spread_threshold": 1.0, "warn_on_differ": False, "unfamiliar_members": 0, "unstable_members": 0,
               "sentinel_warns": True}
    text = describe_ensemble_rule(shipped, 0.645, 3, 1)
    used, unused = text.split(". Not used")
    assert "64.5 %" in used and "check model naming another class" in used
    assert "disagreeing" in unused and "unfamiliar" in unused and "mirrored" in unused
    loud = describe_ensemble_rule({"spread_threshold": 0.3, "warn_on_differ": True, "unfamiliar_members": 2,
                                   "unstable_members": 1}, 0.0, 3)
    assert "one names another class or their probabilities for the answer differ by more than 30.0 points" in loud
    assert "2 or more of the 3 models finding" in loud and "close calls" in loud.split("Not used")[1]
    assert "check model" not in loud  # no sentinel: not mentioned
    quiet = describe_ensemble_rule({"sentinel_warns": False}, 0.5, 2, 1)
    assert "check model naming another class" in quiet.split("Not used")[1]  # listed, but among the unused

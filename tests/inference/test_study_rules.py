"""core.inference.study_rules: properties of every rule, and what separates them."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.inference.study_rules import DEFAULT_RULE, STUDY_RULES, aggregate

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
NORMAL = [0.01, 0.01, 0.97, 0.01]
GLIOMA = [0.95, 0.02, 0.02, 0.01]
MENINGIOMA = [0.02, 0.95, 0.02, 0.01]


def _series(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


@pytest.mark.parametrize("rule", list(STUDY_RULES))
@pytest.mark.parametrize("seed", range(5))
def test_every_rule_returns_a_class_scores_summing_to_one_and_every_row(rule, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=int(rng.integers(1, 30)))
    before = probs.copy()
    agg = aggregate(probs, CLASSES, rule)
    assert agg.label in CLASSES and agg.scores.sum() == pytest.approx(1.0) and (agg.scores >= 0).all()
    assert sorted(agg.driving) == list(range(len(probs)))
    np.testing.assert_array_equal(probs, before)  # the caller's array is left alone


@pytest.mark.parametrize("rule", list(STUDY_RULES))
def test_all_normal_slices_give_no_tumour(rule):
    assert aggregate(_series([NORMAL] * 12), CLASSES, rule).label == "notumor"


def test_default_is_the_window_rule_measured_best():
    assert DEFAULT_RULE == "window"


def test_a_tumour_on_three_neighbouring_slices_is_found_by_window_not_by_mean():
    rows = [NORMAL] * 20
    rows[8:11] = [GLIOMA] * 3
    probs = _series(rows)
    agg = aggregate(probs, CLASSES, "window")
    assert agg.label == "glioma" and set(agg.driving[:3]) == {8, 9, 10}
    assert aggregate(probs, CLASSES, "mean").label == "notumor"  # outvoted by the normal slices
    assert aggregate(probs, CLASSES, "vote").label == "notumor"


def test_scattered_stray_slices_do_not_make_a_tumour_for_window_but_do_for_evidence():
    rows = [NORMAL] * 30
    for i in (3, 12, 25):
        rows[i] = GLIOMA
    probs = _series(rows)
    assert aggregate(probs, CLASSES, "window").label == "notumor"
    assert aggregate(probs, CLASSES, "evidence").label == "glioma"
    assert aggregate(probs, CLASSES, "evidence2").label == "glioma"


def test_evidence_picks_the_stronger_tumour_class():
    rows = [NORMAL] * 6 + [[0.6, 0.3, 0.05, 0.05]] + [MENINGIOMA]
    assert aggregate(_series(rows), CLASSES, "evidence").label == "meningioma"


def test_short_series_fall_back_gracefully():
    for n in (1, 2, 3):
        assert aggregate(_series([GLIOMA] * n), CLASSES, "window").label == "glioma"


def test_bad_input_is_refused():
    with pytest.raises(WorkbenchError, match="unknown study rule"):
        aggregate(_series([NORMAL]), CLASSES, "majority")
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 4)), CLASSES)
    with pytest.raises(ValueError):
        aggregate(np.zeros((3, 3)), CLASSES)

"""Evaluation metrics against values computed by hand (core.evaluation.metrics)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation import metrics

NAMES = ["a", "b", "c"]
# Hand-made 3-class case. Confusion (rows = true):  a: 3 1 0 | b: 0 2 1 | c: 1 0 2
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def probs_for(pred: np.ndarray, confidence: float = 0.8, k: int = 3) -> np.ndarray:
    p = np.full((len(pred), k), (1 - confidence) / (k - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_confusion_rows_are_true_classes():
    y_true = np.array([0, 0, 0, 1])
    y_pred = np.array([1, 1, 1, 1])  # every 'a' called 'b'
    cm = metrics.confusion(y_true, y_pred, ["a", "b"])
    assert cm.index.name == "true" and cm.columns.name == "predicted"
    assert cm.loc["a", "b"] == 3 and cm.loc["b", "a"] == 0
    assert cm.to_numpy().tolist() == [[0, 3], [0, 1]]


def test_confusion_hand_case_and_normalised_rows():
    cm = metrics.confusion(Y_TRUE, Y_PRED, NAMES)
    assert cm.to_numpy().tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    norm = metrics.confusion(Y_TRUE, Y_PRED, NAMES, normalize=True)
    assert np.allclose(norm.sum(axis=1), 1.0)
    assert norm.loc["a", "a"] == pytest.approx(0.75)


def test_normalised_confusion_of_absent_class_is_nan_not_zero():
    norm = metrics.confusion(np.array([0, 0]), np.array([0, 1]), ["a", "b"], normalize=True)
    assert norm.loc["b"].isna().all()


def test_per_class_table_matches_hand_computation():
    table = metrics.per_class_table(Y_TRUE, Y_PRED, NAMES).set_index("class")
    # a: TP 3, FN 1, FP 1, TN 5; b and c: TP 2, FN 1, FP 1, TN 6
    assert table.loc["a", "precision"] == pytest.approx(3 / 4)
    assert table.loc["a", "recall"] == pytest.approx(3 / 4)
    assert table.loc["a", "specificity"] == pytest.approx(5 / 6)
    assert table.loc["a", "f1"] == pytest.approx(0.75)
    for c in ("b", "c"):
        assert table.loc[c, "precision"] == pytest.approx(2 / 3)
        assert table.loc[c, "recall"] == pytest.approx(2 / 3)
        assert table.loc[c, "specificity"] == pytest.approx(6 / 7)
        assert table.loc[c, "f1"] == pytest.approx(2 / 3)
    assert table["support"].tolist() == [4, 3, 3]


def test_summary_headline_numbers():
    s = metrics.summarize(Y_TRUE, Y_PRED, probs_for(Y_PRED), NAMES)
    assert s["accuracy"] == pytest.approx(0.7)
    assert s["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert s["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert s["weighted_f1"] == pytest.approx((4 * 0.75 + 3 * 2 / 3 + 3 * 2 / 3) / 10)
    assert s["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert s["per_class"]["a"]["specificity"] == pytest.approx(5 / 6)
    lo, hi = s["accuracy_ci"]
    assert lo < 0.7 < hi
    json.dumps(s, allow_nan=False)  # JSON-ready: no NaN, no numpy types


@pytest.mark.parametrize("k, n, expected", [(8, 10, (0.490, 0.943)), (0, 10, (0.0, 0.278)), (10, 10, (0.722, 1.0)),
                                            (50, 100, (0.404, 0.596))])
def test_wilson_interval_known_values(k, n, expected):
    lo, hi = metrics.wilson_interval(k, n)
    assert (round(lo, 3), round(hi, 3)) == expected


def test_wilson_interval_of_nothing_is_none():
    assert metrics.wilson_interval(0, 0) is None


def test_undefined_precision_is_nan_and_json_null():
    y_true, y_pred = np.array([0, 1, 2]), np.array([0, 0, 2])  # 'b' is never predicted
    table = metrics.per_class_table(y_true, y_pred, NAMES).set_index("class")
    assert np.isnan(table.loc["b", "precision"]) and table.loc["b", "recall"] == 0
    s = metrics.summarize(y_true, y_pred, probs_for(y_pred), NAMES)
    assert s["per_class"]["b"]["precision"] is None


def test_class_absent_from_eval_set_has_no_recall_or_auc():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    s = metrics.summarize(y_true, y_pred, probs_for(y_pred), NAMES)
    assert s["per_class"]["c"]["support"] == 0
    assert s["per_class"]["c"]["recall"] is None and s["per_class"]["c"]["recall_ci"] is None
    assert s["per_class"]["c"]["roc_auc"] is None


def test_empty_set_gives_none_metrics():
    s = metrics.summarize(np.array([], int), np.array([], int), np.zeros((0, 3)), NAMES)
    assert s["n_images"] == 0 and s["accuracy"] is None and s["macro_f1"] is None
    assert s["confusion_matrix"] == [[0, 0, 0]] * 3


def test_roc_and_pr_curves_perfect_and_reversed():
    y = np.array([0, 0, 1, 1])
    good = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    roc, aucs = metrics.roc_curves(y, good, ["a", "b"])
    assert aucs == {"a": 1.0, "b": 1.0}
    assert set(roc.columns) >= {"class", "fpr", "tpr", "threshold"}
    assert roc["fpr"].between(0, 1).all() and roc["tpr"].between(0, 1).all()
    _, reversed_aucs = metrics.roc_curves(y, good[:, ::-1], ["a", "b"])
    assert reversed_aucs["a"] == 0.0
    pr, aps = metrics.pr_curves(y, good, ["a", "b"])
    assert aps["a"] == pytest.approx(1.0) and set(pr["class"]) == {"a", "b"}


def test_ece_near_zero_for_perfectly_calibrated_probs():
    """In each bin, exactly a share p of the answers given with confidence p are right."""
    probs, labels = [], []
    for p in (0.55, 0.65, 0.75, 0.85, 0.95):
        n = 200
        right = int(round(p * n))
        probs += [[p, 1 - p]] * n
        labels += [0] * right + [1] * (n - right)
    ece, table = metrics.calibration(np.array(probs), np.array(labels))
    assert ece == pytest.approx(0.0, abs=1e-9)
    used = table[table["count"] > 0]
    assert np.allclose(used["confidence"], used["accuracy"])


def test_ece_large_for_overconfident_probs():
    probs = np.array([[0.99, 0.01]] * 100)
    labels = np.array([0] * 50 + [1] * 50)  # 99 % sure, right half the time
    ece, _ = metrics.calibration(probs, labels)
    assert ece == pytest.approx(0.49, abs=1e-9)


def test_inputs_are_not_modified():
    y_true, y_pred, probs = Y_TRUE.copy(), Y_PRED.copy(), probs_for(Y_PRED)
    before = probs.copy()
    metrics.summarize(y_true, y_pred, probs, NAMES)
    metrics.confusion_long(y_true, y_pred, NAMES)
    assert np.array_equal(y_true, Y_TRUE) and np.array_equal(y_pred, Y_PRED) and np.array_equal(probs, before)


def test_confusion_long_has_one_row_per_cell():
    long = metrics.confusion_long(Y_TRUE, Y_PRED, NAMES)
    assert len(long) == 9 and long["count"].sum() == 10
    row = long[(long["true"] == "c") & (long["predicted"] == "a")].iloc[0]
    assert row["count"] == 1 and row["row_share"] == pytest.approx(1 / 3) and not row["correct"]

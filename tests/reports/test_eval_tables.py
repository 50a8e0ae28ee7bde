"""The Evaluate page's per-class table and its opening confusion-matrix cell, built in core."""

from __future__ import annotations

import numpy as np

from core.evaluation.metrics import commonest_mistake, per_class_table
from core.reports.eval_tables import per_class_display

NAMES = ["glioma", "meningioma", "notumor"]


def test_commonest_mistake_is_the_largest_off_diagonal_cell() -> None:
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 2, 0, 0, 1, 2])  # meningioma called glioma twice
    assert commonest_mistake(y, pred, NAMES) == ("meningioma", "glioma")


def test_per_class_display_dashes_undefined_figures_and_says_so() -> None:
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])  # notumor never predicted nor present
    shown, undefined = per_class_display(per_class_table(y, pred, NAMES))
    assert undefined and "recall_ci_low" not in shown.columns and "recall 95% CI" in shown.columns
    row = shown.set_index("class").loc["No tumour" if "No tumour" in set(shown["class"]) else shown["class"].iloc[2]]
    assert row["precision"] == "—" and shown["precision"].iloc[0] == "1.000"
    shown2, undefined2 = per_class_display(per_class_table(np.array([0, 1, 2]), np.array([0, 1, 2]), NAMES))
    assert not undefined2 and "—" not in set(shown2["precision"])


def test_the_table_shows_shares_with_counts_and_the_site_checks_reading():
    from core.evaluation.warning_audit import WarningAudit
    from core.reports.eval_tables import warning_audit_table, warnings_on_mistakes

    rates = {"wrong_warned": 2 / 3, "correct_warned": 0.0, "n_wrong": 3, "silent_wrong": 1 / 30}
    flagged = {"wrong_warned": 1.0, "correct_warned": 1.0, "n_wrong": 3, "silent_wrong": 0.0}
    audit = WarningAudit(30, 0.9, rates, flagged, {"shift_detected": True, "domain_auc": 0.93, "advice": "x"}, None,
                         {**rates, "n_images": 30}, {"low_confidence": 2, "site_shift": 3})
    table = warning_audit_table(audit)
    assert list(table["Reading"]) == ["Slice by slice", "As one batch (site check: told apart, AUC 0.93)"]  # no
    # leakage-free row when it holds the same images
    assert list(table["Mistakes that carry a warning"]) == ["67% (2 of 3)", "100% (3 of 3)"]
    assert list(table["Correct answers that carry a warning"]) == ["0% (0 of 27)", "100% (27 of 27)"]
    assert list(table["Wrong and unwarned (of all answers)"]) == ["3.3% (1 of 30)", "0.0% (0 of 30)"]
    said = warnings_on_mistakes(audit.flags_on_wrong)
    assert "close call 2" in said and "batch unlike the training images 3" in said
    assert warnings_on_mistakes({}) is None

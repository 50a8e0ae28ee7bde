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

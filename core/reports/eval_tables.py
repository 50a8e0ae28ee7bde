"""Tables of evaluation results in the words and formats people read (one format per figure)."""

from __future__ import annotations

import pandas as pd


def robustness_display(robust: pd.DataFrame) -> pd.DataFrame:
    """The stress-test table as shown: accuracy and its change, calibration error, warnings, prediction sets.

    ``robust`` is :func:`core.evaluation.robustness_eval.evaluate_robustness`'s table.
    """
    shown = pd.DataFrame({
        "Condition": robust["title"],
        "Accuracy": robust["accuracy"].map(lambda v: f"{v:.1%}"),
        "Change (points)": robust["change"].map(lambda v: f"{v:+.1f}"),
        "Calibration error": robust["ece"].map(lambda v: f"{v:.1%}"),
        "Mistakes that carry a warning": robust["wrong_warned"].map(
            lambda v: "no mistakes" if pd.isna(v) else f"{v:.0%}"),
        "Correct answers that carry a warning": robust["correct_warned"].map(
            lambda v: "–" if pd.isna(v) else f"{v:.0%}"),
    })
    if "set_coverage" in robust.columns and robust["set_coverage"].notna().any():
        shown["Prediction set at 95 %: coverage (worst class)"] = [
            f"{v:.1%} ({w:.1%})" for v, w in zip(robust["set_coverage"], robust["set_coverage_worst_class"])]
        shown["Mean set size"] = robust["mean_set_size"].map(lambda v: f"{v:.2f}")
    return shown

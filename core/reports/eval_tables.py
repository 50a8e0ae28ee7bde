"""Tables of evaluation results in the words and formats people read (one format per figure)."""

from __future__ import annotations

import pandas as pd

from core.classes import display_name


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


def warning_audit_table(audit) -> pd.DataFrame:
    """The warning audit (:class:`core.evaluation.warning_audit.WarningAudit`) as shown: one row per reading
    (slice by slice, leakage-free, as one batch with the site check), shares with their counts."""
    def share(value, of: int, digits: int = 0) -> str:
        return "–" if value is None else f"{value:.{digits}%} ({round(value * of)} of {of})"

    readings = [("Slice by slice", audit.per_slice)]
    if audit.leakage_free and audit.leakage_free["n_images"] != audit.n_images:
        readings.append((f"Slice by slice, {audit.leakage_free['n_images']} leakage-free images", audit.leakage_free))
    if audit.with_site_check is not None:
        told = "told apart" if audit.site_check["shift_detected"] else "not told apart"
        readings.append((f"As one batch (site check: {told}, AUC {audit.site_check['domain_auc']:.2f})",
                         audit.with_site_check))
    rows = []
    for name, r in readings:
        n = r.get("n_images", audit.n_images - len(audit.unreadable))
        rows.append({"Reading": name, "Mistakes that carry a warning": share(r["wrong_warned"], r["n_wrong"]),
                     "Correct answers that carry a warning": share(r["correct_warned"], n - r["n_wrong"]),
                     "Wrong and unwarned (of all answers)": share(r["silent_wrong"], n, 1)})
    return pd.DataFrame(rows)


def warnings_on_mistakes(flags_on_wrong: dict[str, int]) -> str | None:
    """Which warnings the wrong answers carried (``WarningAudit.flags_on_wrong``), in the words Predict & Explain's table uses (None: no mistake
    was warned). A mistake may carry several, so the counts can add up to more than the mistakes."""
    from core.reports.reading import FLAG_WORDS

    if not flags_on_wrong:
        return None
    counts = ", ".join(f"{FLAG_WORDS.get(k, k)} {v}" for k, v in flags_on_wrong.items())
    return f"Warnings on the mistakes: {counts} (a mistake may carry several)."


def per_class_display(per_class: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The per-class table as shown (:func:`core.evaluation.metrics.per_class_table` in), and whether
    any figure is undefined (shown as a dash)."""
    shown = per_class.copy()
    shown["recall 95% CI"] = [f"{lo:.0%} – {hi:.0%}" if pd.notna(lo) else "" for lo, hi in
                              zip(shown["recall_ci_low"], shown["recall_ci_high"])]
    shown["class"] = shown["class"].map(display_name)
    undefined = bool(shown[["precision", "recall", "specificity", "f1"]].isna().to_numpy().any())
    for column in ("precision", "recall", "specificity", "f1"):
        # A dash, not "None" or 0: precision of a class never predicted is undefined, not zero.
        shown[column] = [f"{v:.3f}" if pd.notna(v) else "—" for v in shown[column]]
    return shown.drop(columns=["recall_ci_low", "recall_ci_high"]), undefined

"""Altair charts for the Evaluate page: each takes a dataframe from core.evaluation.metrics/core.evaluation.evaluate.

Nothing is drawn here. The confusion heatmap carries a point selection named
:data:`CELL_SELECTION` so a page can read the clicked (true, predicted) cell from
``st.altair_chart(..., on_select="rerun")``.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.classes import display_name
from core.reports.colours import class_scale, split_scale

CELL_SELECTION = "cell"
_MAX_CURVE_POINTS = 400  # per class: enough for a smooth curve, small enough for the browser


def _label_expr(classes: list[str]) -> str:
    """A Vega expression that shows each class id's display name as an axis label."""
    import json

    return f"{json.dumps({c: display_name(c) for c in classes})}[datum.value] || datum.value"


def confusion_chart(cells: pd.DataFrame, normalized: bool = False, size: int = 340) -> alt.LayerChart:
    """Heatmap of a confusion matrix (rows = true, columns = predicted) with text labels.

    Args:
        cells: :func:`core.evaluation.metrics.confusion_long` output (true, predicted, count, row_share).
        normalized: colour and label by the row share (recall on the diagonal) instead of counts.
    """
    value = "row_share" if normalized else "count"
    df = cells.assign(label=[f"{s:.0%}" if normalized and pd.notna(s) else str(int(c))
                             for c, s in zip(cells["count"], cells["row_share"])])
    order = list(dict.fromkeys(df["true"]))
    df = df.assign(true_name=df["true"].map(display_name), predicted_name=df["predicted"].map(display_name))
    # The selection keeps class ids (the page maps a click back to them); the axes show display names.
    names = _label_expr(order)
    pick = alt.selection_point(name=CELL_SELECTION, fields=["true", "predicted"], on="click", clear="dblclick")
    base = alt.Chart(df).encode(
        x=alt.X("predicted:N", sort=order, title="predicted class",
                axis=alt.Axis(labelAngle=0, orient="top", labelExpr=names, labelLimit=200)),
        y=alt.Y("true:N", sort=order, title="true class", axis=alt.Axis(labelExpr=names, labelLimit=200)),
    )
    rect = base.mark_rect(stroke="white").encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues", **({"domain": [0, 1]} if normalized else {})),
                        title="share of row" if normalized else "images"),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
        tooltip=[alt.Tooltip("true_name:N", title="true class"),
                 alt.Tooltip("predicted_name:N", title="predicted class"), alt.Tooltip("count:Q", title="images"),
                 alt.Tooltip("row_share:Q", format=".1%", title="share of true class")],
    ).add_params(pick)
    # Dark text on light cells and white on dark ones, so every number stays legible.
    top = float(df[value].max() or 1)
    text = base.mark_text(fontSize=14).encode(
        text="label:N",
        color=alt.condition(alt.datum[value] > 0.5 * top, alt.value("white"), alt.value("black")),
    )
    return (rect + text).properties(width=size, height=size)


def selected_cell(event) -> tuple[str, str] | None:
    """The (true, predicted) pair clicked in :func:`confusion_chart`, from Streamlit's event."""
    try:
        points = event["selection"][CELL_SELECTION]
    except (KeyError, TypeError):
        return None
    if not points:
        return None
    point = points[0]
    return (point["true"], point["predicted"]) if "true" in point and "predicted" in point else None


def _thin(curves: pd.DataFrame) -> pd.DataFrame:
    """At most _MAX_CURVE_POINTS rows per class, always keeping each curve's end points."""
    parts = []
    for _, g in curves.groupby("class", sort=False):
        if len(g) > _MAX_CURVE_POINTS:
            idx = np.unique(np.linspace(0, len(g) - 1, _MAX_CURVE_POINTS).round().astype(int))
            g = g.iloc[idx]
        parts.append(g)
    return pd.concat(parts, ignore_index=True) if parts else curves


def _legend(curves: pd.DataFrame, scores: dict[str, float | None], what: str) -> pd.DataFrame:
    def name(c: str) -> str:
        s = scores.get(c)
        return f"{display_name(c)} ({what} {s:.3f})" if s is not None else display_name(c)

    return curves.assign(curve=curves["class"].map(name))


def _curve_colour(df: pd.DataFrame) -> alt.Color:
    """One line per class, in the app's colour for that class (the legend label carries the score)."""
    pairs = list(dict.fromkeys(zip(df["class"], df["curve"])))
    return alt.Color("curve:N", title="class", scale=class_scale([c for c, _ in pairs], [lbl for _, lbl in pairs]))


def roc_chart(roc: pd.DataFrame, aucs: dict[str, float | None]) -> alt.LayerChart:
    """One-vs-rest ROC curves (from :func:`core.evaluation.metrics.roc_curves`) with the chance diagonal."""
    df = _legend(_thin(roc), aucs, "AUC")
    lines = alt.Chart(df).mark_line(interpolate="step-after").encode(
        x=alt.X("fpr:Q", title="false-positive rate (1 − specificity)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("tpr:Q", title="true-positive rate (sensitivity)", scale=alt.Scale(domain=[0, 1])),
        color=_curve_colour(df),
        order="fpr:Q",
        tooltip=[alt.Tooltip("curve:N", title="class"), alt.Tooltip("fpr:Q", format=".3f"), alt.Tooltip("tpr:Q", format=".3f"),
                 alt.Tooltip("threshold:Q", format=".3f")],
    )
    chance = alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray")
    return (chance.encode(x="fpr:Q", y="tpr:Q") + lines).properties(height=320, title="ROC (one class vs rest)")


def pr_chart(pr: pd.DataFrame, aps: dict[str, float | None]) -> alt.Chart:
    """One-vs-rest precision-recall curves (from :func:`core.evaluation.metrics.pr_curves`)."""
    df = _legend(_thin(pr), aps, "AP")
    return alt.Chart(df).mark_line(interpolate="step-before").encode(
        x=alt.X("recall:Q", title="recall (sensitivity)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("precision:Q", title="precision", scale=alt.Scale(domain=[0, 1])),
        color=_curve_colour(df),
        order=alt.Order("recall:Q"),
        tooltip=[alt.Tooltip("curve:N", title="class"), alt.Tooltip("recall:Q", format=".3f"), alt.Tooltip("precision:Q", format=".3f")],
    ).properties(height=320, title="Precision-recall (one class vs rest)")


def reliability_chart(table: pd.DataFrame, ece: float | None) -> alt.LayerChart:
    """Reliability diagram: accuracy per confidence bin against the perfect-calibration diagonal.

    Args:
        table: :func:`core.inference.calibration.reliability_table` (bin_low, bin_high, count, confidence, accuracy).
    """
    df = table[table["count"] > 0].assign(gap=lambda d: d["confidence"] - d["accuracy"])
    bars = alt.Chart(df).mark_bar(opacity=0.75).encode(
        x=alt.X("bin_low:Q", bin="binned", title="confidence", scale=alt.Scale(domain=[0, 1])),
        x2="bin_high:Q",
        y=alt.Y("accuracy:Q", title="accuracy in bin", scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("bin_low:Q", title="from", format=".1f"), alt.Tooltip("bin_high:Q", title="to", format=".1f"),
                 "count", alt.Tooltip("confidence:Q", format=".3f", title="mean confidence"),
                 alt.Tooltip("accuracy:Q", format=".3f")],
    )
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(
        x="x:Q", y="y:Q")
    title = "Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else "")
    return (bars + diagonal).properties(height=300, title=title)


def subset_chart(all_metrics: dict, leakage_free: dict) -> alt.Chart:
    """All images vs the leakage-free subset, side by side, for the headline metrics."""
    keys = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
    rows = [{"metric": label, "subset": name, "value": m.get(k)}
            for k, label in keys.items()
            for name, m in (("all images", all_metrics), ("leakage-free", leakage_free)) if m.get(k) is not None]
    return alt.Chart(pd.DataFrame(rows, columns=["metric", "subset", "value"])).mark_bar().encode(
        x=alt.X("metric:N", title=None, sort=list(keys.values()), axis=alt.Axis(labelAngle=0)),
        xOffset="subset:N",
        y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("subset:N", title=None),
        tooltip=["metric", "subset", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=240)


def robustness_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Accuracy and mean confidence per simulated shift (:func:`core.evaluation.robustness.robustness_table`),
    with the unchanged images' accuracy as a reference line: a confidence bar well above its
    accuracy bar means the model is over-confident under that shift."""
    long = table.melt(id_vars=["title", "imitates"], value_vars=["accuracy", "mean_confidence"], var_name="measure",
                      value_name="value")
    long["measure"] = long["measure"].map({"accuracy": "accuracy", "mean_confidence": "mean confidence"})
    order = list(table["title"])
    bars = alt.Chart(long).mark_bar().encode(
        y=alt.Y("title:N", title=None, sort=order, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("measure:N"),
        x=alt.X("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", title=None),
        tooltip=["title", "imitates", "measure", alt.Tooltip("value:Q", format=".3f")],
    )
    base = table.loc[table["shift"] == "none", "accuracy"]
    if base.empty:
        return alt.layer(bars).properties(height=32 * len(table))
    rule = alt.Chart(pd.DataFrame({"x": [float(base.iloc[0])]})).mark_rule(strokeDash=[4, 3]).encode(x="x:Q")
    return alt.layer(bars, rule).properties(height=32 * len(table))


def history_chart(history: pd.DataFrame) -> alt.Chart | None:
    """Training curves (loss and accuracy, train vs validation) from a run's history.csv; None if empty."""
    if history.empty or "epoch" not in history:
        return None
    cols = [c for c in ("loss", "val_loss", "accuracy", "val_accuracy") if c in history]
    if not cols:
        return None
    long = history.melt(id_vars=["epoch"], value_vars=cols, var_name="series", value_name="value")
    long["metric"] = long["series"].str.replace("val_", "", regex=False)
    long["split"] = np.where(long["series"].str.startswith("val_"), "validation", "training")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("split:N", title=None, scale=split_scale(["training", "validation"])),
        tooltip=["epoch", "metric", "split", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=220, width=300).facet(column=alt.Column("metric:N", title=None)).resolve_scale(y="independent")

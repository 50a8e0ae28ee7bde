"""Altair charts for the Train page, built from a job's records (``Job.snapshot()``).

The engine records; this module shapes those records into dataframes and charts; the page
only draws. The x axis is in epochs: a batch at global step ``s`` sits at ``s / steps``, so
the per-batch training curve and the per-epoch validation points share one axis.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

TRAIN_SERIES = "train (smoothed)"
#: Epoch axis: at most one decimal ("0.5", "1", never "0.111111" after a short run), few ticks.
EPOCH_AXIS = alt.Axis(format=".1~f", tickCount=6, labelOverlap=True)
VAL_SERIES = "validation"


def curve_frame(batch_log: list[dict], history: list[dict], steps_per_epoch: int,
                smoothing: float = 0.1) -> pd.DataFrame:
    """Long table for the loss/accuracy charts: epoch (float), metric, series, value.

    Args:
        batch_log: per-batch rows with step, loss, accuracy.
        history: per-epoch rows with epoch, val_loss, val_accuracy.
        steps_per_epoch: batches per epoch (the job's ``batches``).
        smoothing: weight of the newest batch in the exponential moving average; single
            batches are noisy, the trend is what a reader needs.
    """
    parts = []
    batches = pd.DataFrame(batch_log)
    if not batches.empty:
        x = batches["step"] / max(1, steps_per_epoch)
        for metric in ("loss", "accuracy"):
            smooth = batches[metric].ewm(alpha=smoothing).mean()
            parts.append(pd.DataFrame({"epoch": x, "metric": metric, "series": TRAIN_SERIES, "value": smooth}))
    epochs = pd.DataFrame(history)
    for metric in ("loss", "accuracy"):
        if f"val_{metric}" in epochs:
            parts.append(pd.DataFrame({"epoch": epochs["epoch"].astype(float), "metric": metric,
                                       "series": VAL_SERIES, "value": epochs[f"val_{metric}"]}))
    if not parts:
        return pd.DataFrame(columns=["epoch", "metric", "series", "value"])
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["value"].astype(float))]


def best_epoch(history: list[dict]) -> int | None:
    """The epoch with the lowest validation loss (the weights early stopping keeps)."""
    rows = [r for r in history if np.isfinite(r.get("val_loss", np.nan))]
    return int(min(rows, key=lambda r: r["val_loss"])["epoch"]) if rows else None


def metric_chart(curves: pd.DataFrame, metric: str, best: int | None = None, height: int = 240) -> alt.LayerChart:
    """Training curve (line) and validation points for one metric, with the best epoch marked."""
    df = curves[curves["metric"] == metric]
    colour = alt.Color("series:N", title=None, scale=alt.Scale(domain=[TRAIN_SERIES, VAL_SERIES],
                                                               range=["#252525", "#737373"]),
                       legend=alt.Legend(orient="bottom"))
    base = alt.Chart(df).encode(
        x=alt.X("epoch:Q", title="epoch", axis=EPOCH_AXIS),
        y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False),
                axis=alt.Axis(format="%" if metric == "accuracy" else ".2~f", tickCount=5)),
        color=colour,
        tooltip=["series", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".4f")],
    )
    layers = [base.transform_filter(alt.datum.series == TRAIN_SERIES).mark_line(),
              base.transform_filter(alt.datum.series == VAL_SERIES).mark_line(point=True)]
    if best is not None:
        rule = pd.DataFrame({"epoch": [best], "label": [f"best epoch {best}"]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[4, 4], color="gray")
                      .encode(x="epoch:Q", tooltip=["label"]))
    return alt.layer(*layers).properties(height=height, title=metric)


def lr_chart(batch_log: list[dict], steps_per_epoch: int, height: int = 180) -> alt.Chart:
    """The learning rate per batch (cosine warm-up and decay, or plateau drops).

    Few ticks in a compact number format: exponent labels such as 2e-3 repeat and overlap
    when Vega picks many ticks on a short axis.
    """
    df = pd.DataFrame(batch_log, columns=["step", "lr"])
    df = df.assign(epoch=df["step"] / max(1, steps_per_epoch))
    return (
        alt.Chart(df)
        .mark_line()
        .encode(x=alt.X("epoch:Q", title="epoch", axis=EPOCH_AXIS),
                y=alt.Y("lr:Q", title="learning rate", scale=alt.Scale(zero=True),
                        axis=alt.Axis(format=".1e", tickCount=4, labelOverlap=True)),
                tooltip=[alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("lr:Q", format=".2e")])
        .properties(height=height, title="learning rate")
    )


#: Column names of a job's per-epoch records as a reader sees them.
HISTORY_COLUMNS = {"epoch": "epoch", "phase": "phase", "loss": "training loss",
                   "accuracy": "training accuracy (%)", "val_loss": "validation loss",
                   "val_accuracy": "validation accuracy (%)", "lr": "learning rate", "seconds": "seconds"}


def history_table(history: list[dict]) -> pd.DataFrame:
    """The per-epoch records as a table with readable column names and rounded figures, indexed by epoch.

    Accuracies in percent with one decimal, losses with three, seconds whole, the learning rate in
    three significant digits: the precision a reader can use, not the float the engine recorded.
    """
    df = pd.DataFrame(history)
    if df.empty:
        return df
    for column in ("accuracy", "val_accuracy"):
        if column in df:
            df[column] = (100 * df[column].astype(float)).round(1)
    for column in ("loss", "val_loss"):
        if column in df:
            df[column] = df[column].astype(float).round(3)
    if "seconds" in df:
        df["seconds"] = df["seconds"].astype(float).round(0).astype("Int64")
    if "lr" in df:
        df["lr"] = df["lr"].astype(float).map(lambda v: float(f"{v:.3g}"))
    return df.rename(columns=HISTORY_COLUMNS).set_index("epoch")

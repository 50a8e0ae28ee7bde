"""Altair chart builders: each takes a dataframe from :mod:`core.data.explore` and returns a chart.

No drawing happens here; the page hands the chart to Streamlit.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.classes import display_name
from core.reports.colours import class_scale, split_scale

SPLIT_ORDER = ["train", "val", "test", "all"]


def _with_names(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(class_name=df["label"].map(display_name))


def _class_colour(df: pd.DataFrame, **kw) -> alt.Color:
    """Colour by class_name with the app's one colour per class."""
    names = list(dict.fromkeys(df["label"]))
    return alt.Color("class_name:N", scale=class_scale(names), **kw)


def class_balance_chart(balance: pd.DataFrame) -> alt.Chart:
    """Grouped bars: images per class, one group per split (from ``explore.class_balance``)."""
    return (
        alt.Chart(_with_names(balance))
        .mark_bar()
        .encode(
            x=alt.X("class_name:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("split:N", sort=SPLIT_ORDER),
            y=alt.Y("count:Q", title="images"),
            color=alt.Color("split:N", title="split", sort=SPLIT_ORDER, scale=split_scale(SPLIT_ORDER)),
            tooltip=["split", "class_name", "count", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=280)
    )


def histogram_chart(hist: pd.DataFrame, title: str = "Intensity histogram") -> alt.Chart:
    """Bars for one image's histogram (from ``explore.intensity_histogram``)."""
    return (
        alt.Chart(hist)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title="intensity (0 = black, 255 = white)"),
            x2="end:Q",
            y=alt.Y("share:Q", title="share of pixels", axis=alt.Axis(format="%")),
            tooltip=["start", "end", "count"],
        )
        .properties(height=220, title=title)
    )


def class_histogram_chart(hists: pd.DataFrame) -> alt.Chart:
    """One line per class: mean intensity distribution (from ``explore.class_histograms``)."""
    return (
        alt.Chart(_with_names(hists))
        .mark_line()
        .encode(
            x=alt.X("intensity:Q", title="intensity", scale=alt.Scale(domain=[0, 255])),
            y=alt.Y("share:Q", title="share of pixels", axis=alt.Axis(format="%")),
            color=_class_colour(hists, title="class"),
            tooltip=["class_name", "intensity", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(height=280)
    )


def shortcut_chart(per_class: pd.DataFrame) -> alt.Chart:
    """Small multiples: each global statistic's mean per class (from ``ShortcutResult.per_class``).

    Scales are independent per statistic, so each panel shows how far apart the classes are.
    """
    data = _with_names(per_class)
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("mean:Q", title=None),
            y=alt.Y("class_name:N", title=None),
            color=_class_colour(per_class, title="class", legend=None),
            tooltip=["statistic", "class_name", alt.Tooltip("mean:Q", format=".2f")],
        )
        .properties(width=230, height=110)
        .facet(facet=alt.Facet("statistic:N", title=None, header=alt.Header(labelLimit=260)), columns=3)
        .resolve_scale(x="independent")
    )

"""The Predict page's chart and table, built from prediction records (:mod:`core.inference.records`).

No drawing happens here; the page hands the chart and the dataframe to Streamlit.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.classes import display_name
from core.inference.predict import format_probability
from core.inference.records import PredictionResult


def probability_chart(probabilities: dict[str, float], predicted: str) -> alt.Chart:
    """Horizontal bars, one per class, the predicted class highlighted."""
    df = pd.DataFrame({"class": [display_name(c) for c in probabilities], "probability": list(probabilities.values()),
                       "shown": [format_probability(p) for p in probabilities.values()],
                       "predicted": [c == predicted for c in probabilities]})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="model probability"),
        y=alt.Y("class:N", sort=None, title=None),
        color=alt.Color("predicted:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#9aa5b1"]), legend=None),
        tooltip=["class", alt.Tooltip("shown:N", title="model probability")],
    ).properties(height=alt.Step(26))


def batch_table(results: list[PredictionResult]) -> pd.DataFrame:
    """One row per file; warnings in a few words each, so no cell is cut (the sentences are in the detailed view).

    An empty prediction set is written "empty: no class fits", never a blank cell.
    """
    from core.reports.reading import set_cell, short_warnings

    return pd.DataFrame([{"File": r.file, "Class": display_name(r.label) if r.label else "",
                          "Model probability": format_probability(r.confidence) if r.ok else "",
                          "Prediction set": set_cell(r), "Warnings": short_warnings(r) if r.ok else "",
                          "Problem": r.error or ""} for r in results])

"""Prediction sets in plain words, for the Predict page, the PDF case report and the CLI.

The sets come from :mod:`core.inference.conformal`; here they only become sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from core.classes import display_name
from core.reports.colours import class_scale

#: Said once wherever sets are shown: what the coverage promises, and when it does not hold.
GUARANTEE_NOTE = (
    "Prediction set: over many new slices from the same source as the model's validation images, a set "
    "like this contains the true class at least the stated share of the time, for every class. It is a "
    "promise about many slices, not about this one. Under dataset shift (another scanner, hospital, "
    "sequence or patient group) the guarantee does not hold."
)


def coverage_words(coverage: float) -> str:
    """0.95 -> "95 %", 0.999 -> "99.9 %"."""
    return f"{100 * coverage:.3g} %"


def coverage_sentence(coverage: float) -> str:
    """What the chosen coverage means, in one sentence (a lower level is not 'more alarming')."""
    c = coverage_words(coverage)
    return (f"Coverage {c}: the set is built so that, over many slices like the validation ones, it holds the "
            f"true class {c} of the time. A lower coverage gives smaller sets, and empty ones more often; "
            "a higher coverage gives larger sets, and fewer empty ones.")


def describe_set(names: Sequence[str] | None, coverage: float, n_classes: int, problem: str | None = None,
                 shifted: bool = False) -> str:
    """One sentence: which classes the prediction set holds at ``coverage``, in display names.

    ``names`` None means no set: ``problem`` says why (too few validation images), else the model
    has no prediction-set calibration. ``shifted``: the slice came in a batch the site check tells
    apart from the training images, where the set's promise (slices like the validation ones) may fail.
    """
    text = _set_sentence(names, coverage, n_classes, problem)
    if shifted and names is not None and not problem:
        text += (f" This batch differs from the model's validation images, so the {coverage_words(coverage)} promise "
                 "may not hold for it.")
    return text


def _set_sentence(names: Sequence[str] | None, coverage: float, n_classes: int, problem: str | None) -> str:
    level = f"At {coverage_words(coverage)} coverage"
    if problem:
        return problem
    if names is None:
        return "No prediction set: this model has no prediction-set calibration yet."
    shown = [display_name(n) for n in names]
    if not shown:
        return (f"{level} the set is empty: none of the classes fits this slice well at {coverage_words(coverage)}. "
                "Empty sets are expected now and then, and more often at a lower coverage; they mark a slice the "
                "model cannot place, so do not rely on the top class.")
    if len(shown) == 1:
        return f"{level} the answer is {shown[0]} alone: the model can narrow it down to this one class."
    if len(shown) >= n_classes:
        return (f"{level} the answer could be any of the {n_classes} classes: at this level the model cannot "
                "rule any of them out, so it gives no useful narrowing for this slice.")
    return f"{level} the answer is in {{{', '.join(shown)}}}."


def coverage_display(table: pd.DataFrame) -> pd.DataFrame:
    """The Evaluate page's table: one row per promised coverage, measured coverage per class, mean set size."""
    all_rows = table[table["class"] == "all"].set_index("coverage_target")
    out = pd.DataFrame({"Promised coverage": [coverage_words(t) for t in all_rows.index],
                        "All images": [f"{v:.1%}" for v in all_rows["coverage"]]})
    for name in [c for c in table["class"].unique() if c != "all"]:
        rows = table[table["class"] == name].set_index("coverage_target").loc[all_rows.index]
        out[display_name(name)] = [f"{v:.1%} ({lo:.0%}–{hi:.0%})" for v, lo, hi in
                                   zip(rows["coverage"], rows["ci_low"], rows["ci_high"])]
    out["Mean set size"] = [f"{v:.2f}" for v in all_rows["mean_set_size"]]
    out["Empty sets"] = [f"{v:.1%}" for v in all_rows["empty"]]
    return out


def coverage_chart(table: pd.DataFrame) -> alt.Chart:
    """Measured against promised coverage per class (points with 95 % intervals), the diagonal = kept promise."""
    df = table[table["class"] != "all"].assign(klass=lambda d: d["class"].map(display_name))
    names = list(dict.fromkeys(df["class"]))
    colour = alt.Color("klass:N", title=None, scale=class_scale(names))
    x = alt.X("coverage_target:Q", title="promised coverage", scale=alt.Scale(domain=[0.75, 1.0]),
              axis=alt.Axis(format="%"))
    y = alt.Y("coverage:Q", title="measured coverage", scale=alt.Scale(domain=[0.6, 1.0]), axis=alt.Axis(format="%"))
    diagonal = alt.Chart(df).mark_line(color="#9aa5b1", strokeDash=[4, 4]).encode(x=x, y="coverage_target:Q")
    bars = alt.Chart(df).mark_rule().encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=colour,
                                            xOffset="klass:N")
    points = alt.Chart(df).mark_point(filled=True).encode(
        x=x, y=y, color=colour, xOffset="klass:N",
        tooltip=[alt.Tooltip("klass:N", title="class"), alt.Tooltip("coverage_target:Q", format=".0%"),
                 alt.Tooltip("coverage:Q", format=".1%"), alt.Tooltip("mean_set_size:Q", format=".2f"),
                 "n_images:Q"])
    return (diagonal + bars + points).properties(height=260)


def measured_set_shapes(run, coverage: float) -> tuple[int, float, float] | None:
    """(images, share of empty sets, share of sets with more than one class) at ``coverage``, measured on
    the run's cached held-out evaluation (leakage-free images); None when it was not evaluated yet.

    Never predicts: it reads the evaluation cache the Evaluate page and ``python -m core evaluate`` fill.
    """
    from core.evaluation.conformal_eval import ALL, evaluate_conformal
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import cached_evaluation

    result = cached_evaluation(run, EvalSet("card_test"))
    table = None if result is None else evaluate_conformal(run, result, [coverage])
    if table is None or table.empty:
        return None
    row = table[table["class"] == ALL].iloc[0]
    if not row["n_images"]:
        return None
    return int(row["n_images"]), float(row["empty"]), float(1.0 - row["singletons"] - row["empty"])


def set_shapes_sentence(shapes: tuple[int, float, float], coverage: float) -> str:
    """The measured frequency of empty and multi-class sets, in one sentence."""
    n, empty, multi = shapes
    return (f"Measured on this model's {n:,} held-out test images at {coverage_words(coverage)}: "
            f"{100 * empty:.1f} % of the sets were empty and {100 * multi:.1f} % held more than one class.")

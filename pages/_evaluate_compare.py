"""The Evaluate page's comparison of several evaluated models on the same images: a table, then two
models paired image by image (how their confusion matrices differ, and the images they disagree on).
"""

from __future__ import annotations

import streamlit as st

from core.classes import display_name
from core.evaluation.compare import comparison_table
from core.evaluation.paired import COMPARISON_COLUMNS, paired_comparison
from core.evaluation.result import EvaluationResult
from core.models.runs import Run
from pages import _evaluate_gallery as gallery
from pages import _shared as sh


def comparison_section(done: list[Run], done_results: dict[str, EvaluationResult], by_id: dict[str, Run]) -> None:
    """Every evaluated model side by side, then models A and B paired image by image."""
    st.subheader("Comparison on the same images")
    table = comparison_table(done, done_results)
    table["eval_set"] = [done_results[r].description for r in table["run"]]
    shown = table.assign(best=table["best"].map({True: "★ best", False: ""})).rename(columns=COMPARISON_COLUMNS)
    st.dataframe(shown, hide_index=True, column_config={
        "Validation accuracy": st.column_config.NumberColumn(format="percent"),
        "Test accuracy": st.column_config.NumberColumn(format="percent"),
        "Macro-F1 (leakage-free test)": st.column_config.NumberColumn(format="%.3f"),
        "Training time (s)": st.column_config.NumberColumn(format="%.0f"),
        "Size (MB)": st.column_config.NumberColumn(format="%.1f")})
    st.caption("Best = highest macro-F1 on leakage-free test images. Only a comparison on the same images "
               "is fair: below, two models are paired image by image.")
    c1, c2 = st.columns(2)
    ids = [r.run_id for r in done]
    a_id = c1.selectbox("Model A", ids, index=0, key="evaluate_pair_a", format_func=lambda k: by_id[k].label())
    b_id = c2.selectbox("Model B", ids, index=1, key="evaluate_pair_b", format_func=lambda k: by_id[k].label())
    with sh.shown_errors():
        if a_id == b_id:
            st.info("Pick two different models to pair them.", icon=":material/compare_arrows:")
        else:
            pair = paired_comparison(done_results[a_id], done_results[b_id])
            st.markdown(f":material/compare_arrows: {pair.sentence()}")
            left, right = st.columns(2)
            left.caption("How B's confusion matrix differs from A's (B minus A; on the diagonal, more is better)")
            left.dataframe(pair.confusion_difference)
            right.caption(f"The {len(pair.disagreements)} image(s) where A and B answer differently "
                          "(click a row to see it)")
            picked = right.dataframe(pair.disagreements.assign(
                true=pair.disagreements["true"].map(display_name),
                a_predicted=pair.disagreements["a_predicted"].map(display_name),
                b_predicted=pair.disagreements["b_predicted"].map(display_name)).rename(columns={
                    "file": "File", "true": "True class", "a_predicted": "A says", "b_predicted": "B says",
                    "right": "Right"}), hide_index=True, on_select="rerun", selection_mode="single-row",
                key="evaluate_pair_pick")
            rows = picked.selection.rows if picked is not None else []
            if rows:
                row = pair.disagreements.iloc[rows[0]]
                res_a = done_results[a_id]
                one = res_a.predictions[res_a.predictions["file"] == row["file"]].head(1)
                gallery.show_gallery(by_id[a_id], res_a, one, None, "")

"""Predict & Explain, whole-study mode: a DICOM series (zip or files), a multi-frame DICOM or a NIfTI volume.

Widgets in, core calls, charts out: reading is core.data.study, scoring core.inference.study, tables
and the chart core.reports.study. Heat maps are computed only for the slices shown.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from core.classes import display_name
from core.data.study import open_study
from core.inference.predict import Predictor, format_probability
from core.inference.study import explain_slice, predict_study
from core.inference.study_rules import STUDY_RULES
from core.reports.case_report import CALIBRATION_NOTE, overlay_for
from core.reports.conformal import describe_set
from core.reports.study import slice_chart, slice_frame, study_csv, study_summary_pdf, summary_rows
from core.safetext import escape_markdown
from pages import _shared as sh

STUDY_KEY = "study_result"  # (inputs key, StudyResult) of the last study analysed in this session


def study_section(predictor: Predictor, run_id: str, summary: dict[str, str], method: str, cmap: str,
                  alpha: float, coverage: float) -> None:
    """The whole-study uploader, picker, answer, strip, slider and downloads."""
    uploads = st.file_uploader(
        "A study: a zip of a DICOM series, the series' DICOM files, a multi-frame DICOM, or a NIfTI volume "
        "(.nii / .nii.gz)", type=None, accept_multiple_files=True, key="study_uploads")
    st.caption(":material/lock: Uploads are processed in memory and never written to disk. Patient names and "
               "free-text fields are never read out.")
    if not uploads:
        st.info("Upload a study to get one answer for the whole series.", icon=":material/upload_file:")
        return
    with sh.shown_errors(stop=True):
        source = (uploads[0].name, uploads[0].getvalue()) if len(uploads) == 1 else \
            [(f.name, f.getvalue()) for f in uploads]
        study = open_study(source)
    for note in study.notes:
        st.caption(f":material/info: {escape_markdown(note)}")
    c1, c2 = st.columns(2)
    index = c1.selectbox("Series", range(len(study.stacks)), format_func=lambda i: study.stacks[i].describe(),
                         key="study_series", disabled=len(study.stacks) == 1,
                         help="A zip may hold several series; pick the one to analyse.")
    rule = c2.selectbox("Study rule", list(STUDY_RULES), format_func=STUDY_RULES.title, key="study_rule",
                        help=" ".join(f"{o.title}: {o.help}" for o in STUDY_RULES.values()))
    stack = study.stacks[index]
    key = (run_id, method, rule, stack.key, tuple((f.file_id, f.name, f.size) for f in uploads))
    if st.session_state.get(STUDY_KEY, (None,))[0] != key:
        bar = st.progress(0.0, text=f"Reading {stack.n_slices} slices…")
        with sh.shown_errors(stop=True):
            result = predict_study(predictor, stack, rule=rule, coverage=coverage, method=method,
                                   source=uploads[0].name if len(uploads) == 1 else f"{len(uploads)} files",
                                   progress=lambda i, n: bar.progress(i / n, text=f"Slice {i} of {n}"))
        bar.empty()
        st.session_state[STUDY_KEY] = (key, result)
    result = st.session_state[STUDY_KEY][1]
    _show(predictor, result, summary, method, cmap, alpha)


def _show(predictor: Predictor, result, summary: dict[str, str], method: str, cmap: str, alpha: float) -> None:
    classes = predictor.class_names
    if result.label is None:
        st.error(f"No study answer: {result.error}", icon=":material/error:")
    else:
        st.markdown(f"### Study answer: {display_name(result.label)} · evidence "
                    f"{format_probability(result.probabilities[result.label])}")
        if result.coverage is not None:
            st.markdown(":material/checklist: " + describe_set(result.prediction_set, result.coverage, len(classes))
                        + " (the study set joins the sets of the slices behind the answer)")
    for text in result.warnings:
        st.warning(escape_markdown(text), icon=":material/warning:")
    st.table(pd.DataFrame({"": [v for _, v in summary_rows(result)]}, index=[k for k, _ in summary_rows(result)]))
    st.caption(CALIBRATION_NOTE)
    if result.label is None:
        return
    st.subheader("The slices behind the answer")
    strip = result.strip
    for col, n in zip(st.columns(len(strip)), strip):
        r = result.slice(n)
        picture = overlay_for(r, alpha, cmap)
        col.image(picture if picture is not None else r.image.pixels, width="stretch",
                  caption=f"Slice {n}: {display_name(r.label)} {format_probability(r.confidence)}")
    st.subheader("Every slice")
    number = st.slider("Slice", 1, len(result.slices), strip[0], key="study_slice")
    r = result.slice(number)
    left, right = st.columns(2)
    if r.image is not None:
        left.image(r.image.pixels, caption=f"Slice {number}", width="stretch")
    if r.probabilities:
        if right.toggle("Heat map for this slice", key="study_slice_cam"):
            explain_slice(predictor, result, number, method)
            right.image(overlay_for(r, alpha, cmap), caption=f"Heat map for {display_name(result.label)}",
                        width="stretch")
        right.markdown(f"**{display_name(r.label)}** · model probability {format_probability(r.confidence)}")
    else:
        right.info(escape_markdown(r.error or "not used"), icon=":material/block:")
    st.altair_chart(slice_chart(result, classes, number), width="stretch")
    with st.expander(f"All {len(result.slices)} slices ({len(result.skipped)} skipped, with reasons)"):
        st.dataframe(slice_frame(result, classes), hide_index=True, width="stretch")
    d1, d2 = st.columns(2)
    stem = Path(str(result.study.get("source") or "study")).stem.removesuffix(".nii") or "study"
    d1.download_button("Study results (CSV)", data=partial(study_csv, result, classes), file_name=f"{stem}_study.csv",
                       mime="text/csv", icon=":material/table:", on_click="ignore")
    d2.download_button("Study report (PDF)", data=partial(study_summary_pdf, result, summary, alpha, cmap),
                       file_name=f"{stem}_study_report.pdf", mime="application/pdf",
                       icon=":material/picture_as_pdf:", on_click="ignore")

"""Predict & Explain: classify uploaded slices, see where the model looked, export a case report.

The page gathers uploads and settings, calls core.inference.predict, and draws what it returns. The
model is loaded once per process (per run and file hash); uploads stay in memory.
"""

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from core.classes import display_name
from core.inference.conformal import COVERAGE_CHOICES, DEFAULT_COVERAGE
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD
from core.inference.overlay import COLORMAPS
from core.inference.predict import (
    PredictionResult,
    Predictor,
    format_probability,
    predict_files,
)
from core.models.runs import best_run, list_runs, resolve_run
from core.reports.case_report import (
    CALIBRATION_NOTE,
    DISCLAIMER,
    case_report_pdf,
    heatmap_note,
    overlay_for,
    overlays_zip,
    results_csv,
)
from core.reports.conformal import GUARANTEE_NOTE, coverage_words, describe_set
from core.reports.prediction_charts import batch_table, probability_chart
from core.reports.run_summary import model_facts
from core.safetext import escape_markdown
from pages import _nav as nav
from pages import _shared as sh
from pages import _site as site_check

nav.require_navigation()  # first: a deep link may have started this page without Home.py

RESULTS_KEY = "predict_results"  # (inputs key, results) of the last analysis in this session
PREDICTED = "Predicted class"
PER_PAGE = 10  # detailed views per page: each draws three images and a chart


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def predictor_for(run_id: str, sha: str, path: str) -> Predictor:
    """One loaded model per (run, file hash) for the whole server process."""
    return Predictor(resolve_run(path, root=Path(path).parent))


def show_result(i: int, r: PredictionResult, alpha: float, cmap: str, summary: dict[str, str]) -> None:
    with st.container(border=True):
        st.markdown(f"**{escape_markdown(r.file)}**")  # an uploaded name is shown literally, never rendered
        if not r.ok:
            st.error(f"This file could not be analysed: {r.error}", icon=":material/error:")
            return
        st.markdown(f"### {display_name(r.label)} · model probability {format_probability(r.confidence)}")
        if r.coverage is not None:
            st.markdown(f":material/checklist: {describe_set(r.prediction_set, r.coverage, len(r.probabilities))}")
        for text in r.warnings:
            st.warning(text, icon=":material/warning:")
        if r.details:
            with st.expander("The figures behind these checks", icon=":material/functions:"):
                st.table(pd.DataFrame({"": list(r.details.values())}, index=list(r.details)))
        left, middle, right = st.columns(3)
        dicom = r.image.source_format == "DICOM"
        left.image(r.image.pixels, caption=f"DICOM slice, window {r.meta.get('window', '')}" if dicom else "Input",
                   width="stretch")
        if r.heatmap is not None:
            what = f"{CAM_METHODS.title(r.method)} for {display_name(r.heatmap_class)}"
            middle.image(overlay_for(r, 1.0, cmap), caption=f"{what}: heatmap", width="stretch")
            right.image(overlay_for(r, alpha, cmap), caption=f"{what}: overlay", width="stretch")
            note = heatmap_note(r)
            if note:
                st.info(note, icon=":material/info:")
        if dicom:
            shown = {k: r.meta[k] for k in ("Modality", "SeriesDescription", "BodyPartExamined") if k in r.meta}
            st.caption("DICOM header (no patient data): " + " · ".join(f"{k} {v}" for k, v in shown.items()))
        st.altair_chart(probability_chart(r.probabilities, r.label), width="stretch")
        st.download_button("Case report (PDF)", data=partial(case_report_pdf, r, summary, alpha, cmap),
                           file_name=f"{Path(r.file).stem}_case_report.pdf", mime="application/pdf",
                           icon=":material/picture_as_pdf:", key=f"predict_pdf_{i}", on_click="ignore")


st.title("Predict & Explain")
st.warning(DISCLAIMER, icon=":material/medical_information:")

runs = list_runs()
if not runs:
    st.info("No trained model yet. Train one on the Train page (a few minutes on a laptop), then come back.",
            icon=":material/model_training:")
    nav.page_link("pages/3_Train.py", "Go to Train", icon=":material/model_training:")
    st.stop()

by_id = {r.run_id: r for r in runs}
best = best_run(runs)
run_id = st.selectbox("Model", list(by_id), index=list(by_id).index(best.run_id), key="predict_model",
                      format_func=lambda rid: by_id[rid].label() + ("  ★ best" if rid == best.run_id else ""))
run = by_id[run_id]
summary = model_facts(run)
st.caption(f":material/model_training: {summary['Architecture']}, trained on {summary['Training data']}"
           + (" :orange-badge[SYNTHETIC training data: not for real scans]"
              if run.synthetic else ""))
with st.expander("Model card", expanded=False, icon=":material/badge:"):
    st.table(pd.DataFrame({"": list(summary.values())}, index=list(summary)))
with sh.shown_errors(stop=True):
    predictor = predictor_for(run.run_id, run.card.model_sha256, str(run.path))

uploads = st.file_uploader(
    "MRI slices: JPEG, PNG, BMP, TIFF or DICOM (.dcm or no extension)", type=None, accept_multiple_files=True,
    key="predict_uploads", help="Every file is checked by content, whatever its name says.")
st.caption(":material/lock: Uploads are processed in memory and never written to disk.")

c1, c2, c3, c4, c5 = st.columns(5)
methods = [DEFAULT_CAM_METHOD, *(m for m in CAM_METHODS if m != DEFAULT_CAM_METHOD)]
method = c1.selectbox("Explanation method", methods, format_func=CAM_METHODS.title, key="predict_method",
                      help="The first one is the method whose heat maps pointed at known tumours most often.")
target = c2.selectbox("Explain class", [PREDICTED, *run.class_names], key="predict_target",
                      format_func=lambda c: c if c == PREDICTED else f"why {display_name(c)}?",
                      help="Pick a class to see which regions would support it, e.g. 'why meningioma?'.")
cmap = c3.selectbox("Colormap", list(COLORMAPS), key="predict_cmap")
alpha = c4.slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="predict_alpha")
coverage = c5.selectbox("Prediction-set coverage", COVERAGE_CHOICES, index=COVERAGE_CHOICES.index(DEFAULT_COVERAGE),
                        format_func=coverage_words, key="predict_coverage",
                        help="The set of classes that holds the true one this often on images like the "
                             "validation ones. Higher coverage, larger sets.")
if predictor.conformal is None:
    st.caption(f":material/info: No prediction sets: {predictor.conformal_problem}")

if not uploads:
    st.info("Upload one or more slices to classify them.", icon=":material/upload_file:")
    st.stop()

key = (run.run_id, run.card.model_sha256, method, target, tuple((f.file_id, f.name, f.size) for f in uploads))
if st.session_state.get(RESULTS_KEY, (None,))[0] != key:
    with st.spinner(f"Analysing {len(uploads)} file(s)…"), sh.shown_errors(stop=True):
        results = predict_files(predictor, [(f.name, f.getvalue()) for f in uploads], gradcam=True, method=method,
                                target_class=None if target == PREDICTED else target)
    st.session_state[RESULTS_KEY] = (key, results)
results = st.session_state[RESULTS_KEY][1]
predictor.add_prediction_sets(results, coverage)  # no forward pass: the sets follow the coverage choice

n_bad = sum(not r.ok for r in results)
st.subheader(f"Results: {len(results) - n_bad} analysed" + (f", {n_bad} rejected" if n_bad else ""))
st.dataframe(batch_table(results), hide_index=True, width="stretch")
site_check.predict_batch_check(run, uploads)  # 20 or more images: do they look like the training images?
st.caption(CALIBRATION_NOTE)
if predictor.conformal is not None:
    st.caption(GUARANTEE_NOTE)
d1, d2 = st.columns(2)
d1.download_button("Results (CSV)", data=partial(results_csv, results, predictor.class_names),
                   file_name="predictions.csv", mime="text/csv", icon=":material/table:", on_click="ignore")
d2.download_button("Overlays (zip of PNG)", data=partial(overlays_zip, results, alpha, cmap),
                   file_name="overlays.zip", mime="application/zip", icon=":material/folder_zip:", on_click="ignore")

pages = max(1, -(-len(results) // PER_PAGE))
page = st.number_input("Page", 1, pages, 1, key="predict_page") if pages > 1 else 1
for i in range((page - 1) * PER_PAGE, min(len(results), page * PER_PAGE)):
    show_result(i, results[i], alpha, cmap, summary)

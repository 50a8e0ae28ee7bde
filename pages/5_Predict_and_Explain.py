"""Predict & Explain: classify uploaded slices, see where the model looked, export a case report.

The page gathers uploads and settings, calls core.inference.predict, and draws what it returns. The
model is loaded once per process (per run and file hash); uploads stay in memory.
"""

from functools import partial
from pathlib import Path

import streamlit as st

from core.classes import display_name
from core.inference.conformal import COVERAGE_CHOICES, DEFAULT_COVERAGE, with_refit_advice
from core.inference.ensemble_predict import predictor_for as open_predictor
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD
from core.inference.notices import MIN_IMAGES, SITE_SHIFT
from core.inference.overlay import COLORMAPS
from core.inference.predict import (
    EMPTY_SET,
    PredictionResult,
    Predictor,
    format_probability,
    predict_files,
)
from core.models.runs import best_run, list_runs, resolve_run
from core.reports.case_report import (
    CALIBRATION_NOTE,
    case_report_pdf,
    heatmap_note,
    overlay_for,
    overlays_zip,
    results_csv,
)
from core.reports.conformal import (
    GUARANTEE_NOTE,
    coverage_sentence,
    coverage_words,
    describe_set,
    measured_set_shapes,
    set_shapes_sentence,
)
from core.reports.disclaimer import DISCLAIMER
from core.reports.prediction_charts import batch_table, probability_chart
from core.reports.reading import colour_bar, colour_scale_note, heatmap_caption, reading_note
from core.reports.run_summary import model_facts
from core.safetext import escape_markdown, markdown_free_table
from pages import _nav as nav
from pages import _shared as sh
from pages import _site as site_check
from pages._study import study_section

nav.require_navigation()  # first: a deep link may have started this page without Home.py

RESULTS_KEY = "predict_results"  # (inputs key, results) of the last analysis in this session
PREDICTED = "Predicted class"
PER_PAGE = 10  # detailed views per page: each draws three images and a chart


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def predictor_for(run_id: str, sha: str, path: str) -> Predictor:
    """One loaded model per (run, file hash) for the whole server process."""
    return open_predictor(resolve_run(path, root=Path(path).parent))  # an ensemble's for an ensemble run


@st.cache_data(show_spinner=False, max_entries=16, ttl=600)
def set_shapes(run_id: str, sha: str, path: str, coverage: float) -> tuple[int, float, float] | None:
    """Measured empty / multi-class set shares (from the evaluation cache; never predicts)."""
    return measured_set_shapes(resolve_run(path, root=Path(path).parent), coverage)


TABLE_COLUMNS = {"File": st.column_config.TextColumn(width="medium"),
                 "Warnings": st.column_config.TextColumn(width="large", help="Each warning in full is under its "
                                                                               "slice below."),
                 "Problem": st.column_config.TextColumn(width="medium")}


def show_result(i: int, r: PredictionResult, alpha: float, cmap: str, summary: dict[str, str],
                case_id: str, reader: str) -> None:
    with st.container(border=True):
        st.markdown(f"**{escape_markdown(r.file)}**")  # an uploaded name is shown literally, never rendered
        if not r.ok:
            st.error(f"This file could not be analysed: {escape_markdown(r.error)}", icon=":material/error:")
            return
        st.markdown(f"### {display_name(r.label)} · model probability {format_probability(r.confidence)}")
        if r.coverage is not None and EMPTY_SET not in r.flags:  # an empty set is said in its warning box
            st.markdown(f":material/checklist: "
                        f"{describe_set(r.prediction_set, r.coverage, len(r.probabilities), r.set_problem, SITE_SHIFT in r.flags)}")
        for text in r.warnings:
            st.warning(escape_markdown(text), icon=":material/warning:")
        note = reading_note(r)
        if note:  # a warning, not an error: the file was analysed; this says which warning counts most
            st.warning(f"**{note}**", icon=":material/priority_high:")
        for text in r.notes:
            st.info(text, icon=":material/info:")
        if r.details:
            with st.expander("The figures behind these checks", icon=":material/functions:"):
                st.table(markdown_free_table(r.details))
        left, middle, right = st.columns(3)
        dicom = r.image.source_format == "DICOM"
        left.image(r.image.pixels, caption=f"DICOM slice, window {r.meta.get('window', '')}" if dicom else "Input",
                   width="stretch")
        if r.heatmap is not None:
            what = heatmap_caption(r)
            middle.image(overlay_for(r, 1.0, cmap), caption=f"{what}: heat map", width="stretch")
            right.image(overlay_for(r, alpha, cmap), caption=f"{what}: overlay", width="stretch")
            middle.image(colour_bar(cmap), caption="least ← colour scale → most", width="stretch")
            st.caption(colour_scale_note(r, cmap))
            note = heatmap_note(r)
            if note:
                st.info(note, icon=":material/info:")
        if dicom:
            shown = {k: r.meta[k] for k in ("Modality", "SeriesDescription", "BodyPartExamined") if k in r.meta}
            st.caption("DICOM header (no patient data): " + " · ".join(f"{k} {v}" for k, v in shown.items()))
        st.altair_chart(probability_chart(r.probabilities, r.label), width="stretch")
        st.download_button("Case report (PDF)", data=partial(case_report_pdf, r, summary, alpha, cmap,
                                                             case_id=case_id, reader=reader),
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

by_id = {r.run_id: r for r in sorted(runs, key=lambda r: r.synthetic)}  # models of real scans first (stable)
best = best_run(runs)
run_id = st.selectbox("Model", list(by_id), index=list(by_id).index(best.run_id), key="predict_model",
                      format_func=lambda rid: ("[SYNTHETIC data] " if by_id[rid].synthetic else "")
                      + by_id[rid].label() + ("  ★ best" if rid == best.run_id else ""))
run = by_id[run_id]
summary = model_facts(run)
st.caption(f":material/model_training: {escape_markdown(summary['Architecture'])}, trained on "
           f"{escape_markdown(summary['Training data'])}"
           + (" :orange-badge[SYNTHETIC training data: not for real scans]"
              if run.synthetic else ""))
with st.expander("Model card", expanded=False, icon=":material/badge:"):
    st.table(markdown_free_table(summary))  # st.table renders Markdown
with sh.shown_errors(stop=True):
    predictor = predictor_for(run.run_id, run.card.model_sha256, str(run.path))
for text in predictor.disabled:  # a damaged side file turned one feature off; the prediction still works
    st.warning(escape_markdown(text), icon=":material/warning:")

study_mode = st.segmented_control("Input", ["Slices", "Whole study"], default="Slices", required=True,
                                  key="predict_input",
                                  help="Whole study: a DICOM series, multi-frame DICOM or NIfTI volume, one answer "
                                       "for all its slices.") == "Whole study"
uploads = None if study_mode else st.file_uploader(
    "MRI slices: JPEG, PNG, BMP, TIFF or DICOM (.dcm or no extension)", type=None, accept_multiple_files=True,
    key="predict_uploads", help="Every file is checked by content, whatever its name says. With "
    f"{MIN_IMAGES} or more slices the batch is also compared with the model's training images (site check).")
if not study_mode:
    st.caption(":material/lock: Uploads are processed in memory and never written to disk.")

# The class box is widest: "why pituitary tumour?" must not be cut at tablet width (768 px).
c1, c2, c3, c4, c5 = st.columns([1, 1.4, 0.8, 1, 1])
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
    st.caption(":material/info: No prediction sets: "
               + escape_markdown(with_refit_advice(predictor.conformal_problem, run.run_id, "app")))
elif predictor.set_problem(coverage):
    st.caption(f":material/info: {predictor.set_problem(coverage)}")
else:
    shapes = set_shapes(run.run_id, run.card.model_sha256, str(run.path), coverage)
    st.caption(f":material/checklist: {coverage_sentence(coverage)} "
               + (set_shapes_sentence(shapes, coverage) if shapes else
                  "How often sets are empty or hold several classes is shown once the model has been evaluated "
                  "on its test split (Evaluate page)."))
r1, r2 = st.columns(2)
case_id = r1.text_input("Case / accession no. (printed on the case reports)", key="predict_case", max_chars=64,
                        help="Leave blank to write it by hand on the printed report.")
reader = r2.text_input("Reader (printed on the case reports)", key="predict_reader", max_chars=64,
                       help="Leave blank to write it by hand; the reader ticks agree / disagree / unsure.")

if study_mode:
    study_section(predictor, run.run_id, summary, method, cmap, alpha, coverage)
    st.stop()
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

# 20 or more images: do they look like the training images? (before the table: a flagged batch marks every slice)
site_check.predict_batch_check(run, uploads, results)
n_bad = sum(not r.ok for r in results)
st.subheader(f"Results: {len(results) - n_bad} analysed" + (f", {n_bad} rejected" if n_bad else ""))
st.dataframe(batch_table(results), hide_index=True, width="stretch", column_config=TABLE_COLUMNS)
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
    show_result(i, results[i], alpha, cmap, summary, case_id, reader)

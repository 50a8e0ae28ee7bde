"""The Evaluate page's later sections, each a function: stress test, heat-map localisation, downloads, export.

The page draws the metrics of one evaluation; these sections start their own work (a background
stress test, heat maps, an export) and keep what it made in the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import WorkbenchError
from core.evaluation.eval_sets import EvalSet
from core.evaluation.localisation import evaluate_localisation
from core.evaluation.result import EvaluationResult
from core.evaluation.robustness_eval import NOTE_COLUMN, cached_robustness, evaluate_robustness
from core.evaluation.warning_audit import audit_evaluation
from core.export.ensemble import FORMATS as ENSEMBLE_FORMATS
from core.export.ensemble import export_any_bytes
from core.export.formats import EXPORT_FORMATS
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD
from core.jobs import FINISHED, JobRegistry
from core.models.runs import Run
from core.reports import eval_charts as ec
from core.reports.eval_report import html_report, metrics_json, predictions_csv
from core.reports.eval_tables import robustness_display, warning_audit_table, warnings_on_mistakes
from core.safetext import escape_markdown
from pages import _shared as sh

ROBUST_JOB_KEY = "evaluate_robustness_job"  # (job id, run id, eval-set key) of this session's stress test
AUDIT_JOB_KEY = "evaluate_audit_job"  # (job id, run id, model sha, eval-set key) of this session's warning count
EXPORT_KEY = "evaluate_export"  # ((run id, model sha, format), zip bytes, ExportResult): the last bundle built


def robustness_section(run: Run, eval_set: EvalSet, set_key: Any, registry: JobRegistry) -> None:
    """The stress and style shifts: the cached table, or a button that runs them in the background."""
    st.subheader("Robustness to other scanners and hospitals")
    st.caption("How accuracy, calibration and the warnings hold when the same leakage-free test images are altered "
               "the way another scanner could differ (contrast curve, coil bias field, noise, blur, resolution, "
               "JPEG) or another hospital's images could (the head filling the frame, another collection's "
               "brightness and contrast). Simulated shifts, not validation on another hospital's data.")
    robust = cached_robustness(run, eval_set)
    ref = st.session_state.get(ROBUST_JOB_KEY)
    job = registry.get(ref[0]) if ref and ref[1:] == (run.run_id, set_key) else None
    if robust is None and job is not None and job.status == "done":
        robust = job.result  # the disk cache may be unwritable: the job still holds the table
    if robust is None:
        if job is not None:
            _robustness_progress(job, was_running=job.running)
        if job is None or not job.running:
            busy = registry.active("evaluate")
            if st.button("Run the stress test", key="evaluate_robustness", disabled=busy is not None,
                         help="Predicts every leakage-free test image under each shift; about a dozen forward "
                              "passes over the set. Runs in the background, with progress and Cancel."):
                with sh.shown_errors():
                    new = registry.submit("evaluate", f"Stress test of {run.run_id}",
                                          lambda j, r=run, es=eval_set: evaluate_robustness(r, es, j))
                    st.session_state[ROBUST_JOB_KEY] = (new.id, run.run_id, set_key)
                    st.rerun()
        return
    st.altair_chart(ec.robustness_chart(robust), width="stretch")
    worst = robust.sort_values("change").iloc[0]
    st.caption(f"{int(robust['n_images'].iloc[0])} images. Largest drop: {worst['title']} "
               f"({worst['change']:+.1f} points; imitates {worst['imitates']}).")
    if "wrong_warned" in robust.columns:
        st.dataframe(robustness_display(robust), hide_index=True)
        st.caption("A warning is what Predict & Explain would show: a close call, a slice unlike the training "
                   "images, or an answer that changes when the slice is mirrored. Mistakes should carry one; "
                   "correct answers on ordinary images rarely should.")
    if NOTE_COLUMN in robust.columns:
        st.caption(escape_markdown(str(robust[NOTE_COLUMN].iloc[0])))


def _robustness_progress(job: Any, was_running: bool) -> None:
    _job_progress(job, was_running, "evaluate_robustness_cancel", "Starting the stress test…", "The stress test")


def _job_progress(job: Any, was_running: bool, cancel_key: str, starting: str, what: str) -> None:
    @st.fragment(run_every=1.0 if job.running else None)
    def poll() -> None:
        """Polls a section's background job; when it ends, reruns the page, which then shows its outcome."""
        snap = job.snapshot()
        if snap.status not in FINISHED:
            text = "Cancelling…" if snap.cancel_requested else (snap.phase or starting)
            st.progress(min(1.0, snap.progress), text=text)
            st.button("Cancelling…" if snap.cancel_requested else "Cancel", key=cancel_key,
                      on_click=job.cancel, disabled=snap.cancel_requested)
            return
        if was_running:
            st.rerun()
        if snap.status == "failed":
            st.error(escape_markdown(snap.error), icon=":material/error:")
        elif snap.status == "cancelled":
            st.caption(f"{what} was cancelled.")

    poll()


def _step(job: Any, fraction: float, text: str) -> None:
    job.check_cancelled()  # raises JobCancelled: the job ends as cancelled
    job.update(progress=fraction, phase=text)


def warnings_section(run: Run, eval_set: EvalSet, result: EvaluationResult, set_key: Any,
                     registry: JobRegistry) -> None:
    """How many wrong answers carry a warning, slice by slice and as one batch (with the site check)."""
    st.subheader("Mistakes without a warning")
    st.caption("Accuracy says how often the model is right. This says how often it is wrong *without saying so*: "
               "these images are predicted as uploads would be, with every warning Predict & Explain shows, and "
               "then checked together against the training images, as a batch of uploads is (a batch the check "
               "tells apart gets a warning on every slice).")
    ref = st.session_state.get(AUDIT_JOB_KEY)
    job = registry.get(ref[0]) if ref and ref[1:] == (run.run_id, run.card.model_sha256, set_key) else None
    if job is None or job.status != "done":
        if job is not None:
            _job_progress(job, job.running, "evaluate_audit_cancel", "Predicting the images…", "Counting the warnings")
        if job is None or not job.running:
            busy = registry.active("evaluate")
            if st.button("Count the warnings", key="evaluate_audit", disabled=busy is not None,
                         help=f"Predicts all {len(result.predictions):,} images once more, as uploads, and runs the site check "
                              "on them. Runs in the background."):
                with sh.shown_errors():
                    new = registry.submit("evaluate", f"Warnings of {run.run_id}",
                                          lambda j, r=run, es=eval_set, res=result: audit_evaluation(
                                              r, es, res, lambda f, text: _step(j, f, text)))
                    st.session_state[AUDIT_JOB_KEY] = (new.id, run.run_id, run.card.model_sha256, set_key)
                    st.rerun()
        return
    audit = job.result
    st.dataframe(warning_audit_table(audit), hide_index=True, width="stretch")
    if (said := warnings_on_mistakes(audit.flags_on_wrong)) is not None:
        st.caption(escape_markdown(said))
    if audit.site_check is None:
        st.caption(f"The site check did not run: {escape_markdown(audit.site_problem or '')}.")
    else:
        st.caption(f"Site check of these images together: {escape_markdown(audit.site_check['advice'])}")
    if audit.unreadable:
        st.caption(f"{len(audit.unreadable)} image(s) could not be analysed and are left out.")


def localisation_section(run: Run, eval_set: EvalSet, result: EvaluationResult) -> None:
    """Pointing game and heat-in-box ratio, when the evaluated folder has tumour boxes."""
    boxes_file = Path(result.root) / "tumour_boxes.csv"
    if not boxes_file.is_file():
        return
    st.subheader("Does the heat map point at the tumour?")
    st.caption("For test images with a known tumour box (from the figshare collection), is the hottest point of "
               f"the {CAM_METHODS.title(DEFAULT_CAM_METHOD)} map inside the box (grown by 10 % of the image side), and how "
               "much more heat does the box hold than a uniform map would give it?")
    key = f"localisation-{run.run_id}-{result.eval_kind}-{result.dataset_fingerprint}"
    if st.button("Score the heat maps", key="evaluate_localisation"):
        with sh.shown_errors(), st.spinner("Computing heat maps…"):
            st.session_state[key] = evaluate_localisation(run, eval_set, boxes_file)
    loc = st.session_state.get(key)
    if loc is not None and loc["n_images"]:
        m = st.columns(3)
        m[0].metric("Peak inside the tumour box", f"{loc['pointing_game']:.0%}")
        ratio = loc["heat_in_box_ratio"]
        m[1].metric("Heat in the box vs. a uniform map", "–" if ratio is None else f"{ratio:.1f}×")
        m[2].metric("Images with a box", loc["n_images"])
    elif loc is not None:
        st.info("None of the evaluated images has a tumour box in this file.")


def downloads_section(run: Run, result: EvaluationResult) -> None:
    st.subheader("Downloads")
    stem = f"evaluation-{run.run_id}-{result.eval_kind}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("Predictions (CSV)", predictions_csv(result), f"{stem}.csv", "text/csv", key="evaluate_dl_csv")
    c2.download_button("Metrics (JSON)", metrics_json(result), f"{stem}.json", "application/json",
                       key="evaluate_dl_json")
    try:
        report = html_report(result, run.card)
        c3.download_button("Report (HTML)", report, f"{stem}.html", "text/html", key="evaluate_dl_html")
    except WorkbenchError as exc:
        c3.error(escape_markdown(str(exc)))


def export_section(run: Run, result: EvaluationResult) -> None:
    """Build a verified export bundle on request and offer it for download."""
    st.subheader("Export the model")
    st.caption("A zip with the model, its card and a README with a short inference example. The temperature (and "
               "the mirror averaging, when this run uses it) is baked in; the preprocessing is not, and the README "
               "says what to do. Each export is checked against this workbench on 32 held-out images before it is "
               "offered.")
    # An ensemble is exported as one Keras file with one input per member; the other formats take one input.
    formats = list(ENSEMBLE_FORMATS) if run.card.is_ensemble else list(EXPORT_FORMATS)
    fmt = st.selectbox("Format", formats, format_func=lambda k: EXPORT_FORMATS[k].title, key="evaluate_export_format")
    bundle_key = (run.run_id, result.model_sha256, fmt)
    if st.button("Build the export", key="evaluate_export_build"):
        with sh.shown_errors(), st.spinner("Converting and checking the export…"):
            st.session_state[EXPORT_KEY] = (bundle_key, *export_any_bytes(run, fmt))  # an ensemble: its own bundle
    built = st.session_state.get(EXPORT_KEY)
    if built is not None and built[0] == bundle_key:
        _, data, made = built
        st.download_button(f"Download ({len(data) / 1e6:.1f} MB zip)", data, f"{run.run_id}-{fmt}.zip",
                           "application/zip", key="evaluate_export_download")
        st.caption(f"Verified on {made.image_source}: probabilities within {made.max_abs_diff:.1e} of the Keras "
                   "model.")

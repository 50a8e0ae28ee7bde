"""Evaluate: score saved models on held-out images, with metrics that ignore memorised near-copies."""

import pandas as pd
import streamlit as st

from core.classes import display_name
from core.evaluation import metrics
from core.evaluation.compare import cell_images, training_history, worst_mistakes
from core.evaluation.conformal_eval import evaluate_conformal
from core.evaluation.eval_sets import EVAL_SETS, EvalSet, data_kind_warning
from core.evaluation.evaluate import cached_evaluation, evaluate_runs
from core.inference.conformal import try_run_conformal, with_refit_advice
from core.inference.gradcam import CAM_METHODS
from core.jobs import FINISHED, job_registry
from core.models.runs import best_run, list_runs
from core.paths import check_under_data_roots
from core.reports import eval_charts as ec
from core.reports.conformal import GUARANTEE_NOTE, coverage_chart, coverage_display
from core.reports.eval_tables import per_class_display
from core.safetext import escape_markdown
from pages import _evaluate_compare as compare
from pages import _evaluate_gallery as gallery
from pages import _evaluate_sections as es
from pages import _evaluate_sets as sets_ui
from pages import _nav as nav
from pages import _shared as sh
from pages import _site as site

nav.require_navigation()  # first: a deep link may have started this page without Home.py

JOB_KEY = "evaluate_job"  # (job id, eval-set key) of the evaluation started from this session
RESULTS_KEY = "evaluate_results"  # {(run id, model sha, eval-set key): EvaluationResult}
ERROR_KEY = "evaluate_error"
SUBSETS = {"leakage_free": "Leakage-free images", "all": "All images"}


@st.cache_resource(show_spinner=False)
def jobs():
    return job_registry()


st.title("Evaluate")
ds = sh.show_active_dataset_badge()
st.caption("Scores on images the model never trained on. Research and teaching tool: not a diagnosis.")

runs = list_runs()
if not runs:
    st.info("No trained models yet: train one first.")
    nav.page_link("pages/3_Train.py", "Train a model", icon=":material/model_training:")
    st.stop()
by_id = {r.run_id: r for r in runs}
handoff = st.session_state.pop(sh.EVALUATE_HANDOFF, None)  # "Evaluate" after a training: that run, not the best
if handoff in by_id:
    st.session_state["evaluate_runs"] = [handoff]
chosen = st.multiselect("Models", list(by_id), default=None if "evaluate_runs" in st.session_state
                        else [best_run(runs).run_id], format_func=lambda k: by_id[k].label(), key="evaluate_runs")
kind = st.radio("Evaluate on", list(EVAL_SETS), format_func=EVAL_SETS.title, key="evaluate_kind",
                help=" ".join(f"{o.title}: {o.help}" for o in EVAL_SETS.values()))
folder = None
with sh.shown_errors(stop=True):
    if kind == "dataset_test":
        folder = str(ds.root)
        st.caption(f"The active dataset, {escape_markdown(ds.title)} (change it on the Dataset Explorer page).")
    elif kind == "folder":
        typed = st.text_input("Folder of class folders", value=str(ds.root), key="evaluate_folder").strip()
        # The active dataset was vetted when it was opened; anything else must lie under a data root.
        folder = typed if typed == str(ds.root) else str(check_under_data_roots(typed))
    eval_set = EvalSet(kind, folder)
set_key = (kind, folder)
selected = [by_id[k] for k in chosen]
results: dict = st.session_state.setdefault(RESULTS_KEY, {})


def result_key(run) -> tuple:
    return (run.run_id, run.card.model_sha256, set_key)


for run in selected:  # earlier evaluations (this session or cached on disk) show without a new job
    if result_key(run) not in results and (hit := cached_evaluation(run, eval_set)) is not None:
        results[result_key(run)] = hit

if selected:
    with st.expander("Site check: do another hospital's images look like the training images?"):
        site.evaluate_section(selected[0])

registry = jobs()
running = registry.active("evaluate")
with sh.shown_errors():
    if st.button(f"Evaluate {len(selected)} model(s)", type="primary", disabled=not selected or running is not None,
                 key="evaluate_start"):
        job = registry.submit("evaluate", f"Evaluate {len(selected)} model(s) on {EVAL_SETS.title(kind).lower()}",
                              lambda j, rs=tuple(selected), es=eval_set: evaluate_runs(list(rs), es, j))
        st.session_state[JOB_KEY] = (job.id, set_key)
        st.session_state.pop(ERROR_KEY, None)
        running = job

mine = st.session_state.get(JOB_KEY)
job = registry.get(mine[0]) if mine else None


@st.fragment(run_every=1.0 if job is not None and job.running else None)
def progress_panel() -> None:
    """Polls the background job; when it ends, moves its results into the session and reruns the page."""
    snap = job.snapshot()
    if snap.status not in FINISHED:
        st.progress(min(1.0, snap.progress), text=snap.phase or "Starting…")
        if st.button("Cancel", key="evaluate_cancel"):
            job.cancel()
        return
    st.session_state.pop(JOB_KEY, None)
    if snap.status == "done":
        for run_id, res in (snap.result or {}).items():
            results[(run_id, res.model_sha256, mine[1])] = res
    elif snap.status == "failed":
        st.session_state[ERROR_KEY] = snap.error
    else:
        st.toast("Evaluation cancelled.")
    st.rerun()


if job is not None:
    progress_panel()
elif running is not None and running.id != (st.session_state.get(es.ROBUST_JOB_KEY) or ("",))[0]:
    st.info(f"'{escape_markdown(running.title)}' is running for another user; results appear when it ends and you press Evaluate.")
if ERROR_KEY in st.session_state:
    st.error(escape_markdown(st.session_state[ERROR_KEY]), icon=":material/error:")

done = [r for r in selected if result_key(r) in results]
if not done:
    st.info("Not evaluated on this set yet: press **Evaluate**.")
    st.stop()

if len(done) > 1:
    compare.comparison_section(done, {r.run_id: results[result_key(r)] for r in done}, by_id)

best = best_run(done) if len(done) > 1 else done[0]
run_id = st.selectbox("Details for", [r.run_id for r in done], index=done.index(best),
                      format_func=lambda k: by_id[k].label(), key="evaluate_detail")
run = by_id[run_id]
result = results[result_key(run)]

for note in result.notes:
    st.caption(escape_markdown(note))
eval_synthetic = ds.synthetic if folder == str(ds.root) else False
if kind != "card_test" and (caution := data_kind_warning(run.card, eval_synthetic)):
    st.warning(caution, icon=":material/warning:")
st.subheader("All images vs leakage-free")
if result.n_overlapping:
    st.warning(f"{result.n_overlapping} test images are near-copies of training images; accuracy on them measures "
               "memory, not generalisation.", icon=":material/content_copy:")
else:
    st.caption("No test image is a near-copy of a training image: both columns are the same images.")
left, right = st.columns([3, 2])
with left:
    rows = {"images": ("n_images", "{:.0f}"), "accuracy": ("accuracy", "{:.1%}"),
            "balanced accuracy": ("balanced_accuracy", "{:.1%}"), "macro-F1": ("macro_f1", "{:.3f}"),
            "weighted F1": ("weighted_f1", "{:.3f}"), "ECE": ("ece", "{:.3f}")}
    side = pd.DataFrame({name: {label: (fmt.format(m[key]) if m.get(key) is not None else "n/a")
                                for label, (key, fmt) in rows.items()}
                         for name, m in (("all images", result.metrics), ("leakage-free", result.leakage_free))})
    st.dataframe(side, width="stretch")
with right:
    st.altair_chart(ec.subset_chart(result.metrics, result.leakage_free), width="stretch")

subset = st.segmented_control("Metrics below on", list(SUBSETS), format_func=SUBSETS.get, required=True,
                              default="leakage_free", key="evaluate_subset")
lf = subset == "leakage_free"
m = result.leakage_free if lf else result.metrics
if not m["n_images"]:
    st.warning("No images left in this subset.")
    st.stop()
y, pred, probs = result.arrays(lf)
names = result.class_names
cols = st.columns(4)
ci = m["accuracy_ci"]
cols[0].metric("Accuracy", f"{m['accuracy']:.1%}", help="95% Wilson interval")
cols[0].caption(f"95% CI {ci[0]:.1%} – {ci[1]:.1%} ({m['n_images']} images)")
cols[1].metric("Balanced accuracy", f"{m['balanced_accuracy']:.1%}", help="mean recall over classes")
cols[2].metric("Macro-F1", f"{m['macro_f1']:.3f}")
cols[3].metric("ECE", f"{m['ece']:.3f}", help="expected calibration error: 0 = confidence matches accuracy")

st.subheader("Per class")
per_class, undefined = per_class_display(metrics.per_class_table(y, pred, names))
st.dataframe(per_class, hide_index=True)
st.caption("Recall = sensitivity. Specificity = share of other classes' images not called this class."
           + (" — = undefined: the model never predicted that class (precision) or the set holds none of "
              "it (recall)." if undefined else ""))

st.subheader("Confusion matrix")
normalized = st.toggle("Show shares of each true class", key="evaluate_normalized")
event = st.altair_chart(ec.confusion_chart(metrics.confusion_long(y, pred, names), normalized),
                        on_select="rerun", selection_mode=ec.CELL_SELECTION,
                        key=f"evaluate_cm_{hash((run.run_id, set_key, lf))}")  # a new model or set: no old click
if st.session_state.get("evaluate_cell_context") != (run.run_id, set_key, lf):
    # The picked cell belongs to the previous model or set: forget it (and open the commonest mistake).
    st.session_state["evaluate_cell_context"] = (run.run_id, set_key, lf)
    for stale in ("evaluate_cell_applied", "evaluate_true", "evaluate_pred"):
        st.session_state.pop(stale, None)
cell = ec.selected_cell(event)
if cell is not None and st.session_state.get("evaluate_cell_applied") != cell:
    # A click moves the two boxes below; afterwards the boxes may be changed by hand.
    st.session_state["evaluate_cell_applied"] = cell
    st.session_state["evaluate_true"], st.session_state["evaluate_pred"] = cell
elif st.session_state.get("evaluate_true") not in names or st.session_state.get("evaluate_pred") not in names:
    # Until the user picks a cell, open the most frequent mistake.
    st.session_state["evaluate_true"], st.session_state["evaluate_pred"] = metrics.commonest_mistake(y, pred, names)
c1, c2, c3 = st.columns(3)
true_c = c1.selectbox("True class", names, format_func=display_name, key="evaluate_true")
pred_c = c2.selectbox("Predicted class", names, format_func=display_name, key="evaluate_pred")
method = c3.selectbox("Overlay", [None, *CAM_METHODS], format_func=lambda k: CAM_METHODS.title(k or "none"),
                      index=1, key="evaluate_cam")
st.caption("Click a cell (or pick the two classes) to see its images; the overlay shows where the model looked.")
gallery.show_gallery(run, result, cell_images(result.subset(lf), true_c, pred_c), method,
                     f"No {display_name(true_c)} images were predicted as {display_name(pred_c)}.")

st.subheader("ROC and precision-recall")
roc, aucs = metrics.roc_curves(y, probs, names)
pr, aps = metrics.pr_curves(y, probs, names)
c1, c2 = st.columns(2)
c1.altair_chart(ec.roc_chart(roc, aucs), width="stretch")
c2.altair_chart(ec.pr_chart(pr, aps), width="stretch")

st.subheader("Calibration")
ece, table = metrics.calibration(probs, y)
st.altair_chart(ec.reliability_chart(table, ece), width="stretch")
st.caption(f"Confidences are temperature-scaled (T = {result.temperature:.2f}, fitted on validation images). "
           "Bars on the diagonal mean a 90% confident answer is right 90% of the time.")

st.subheader("Prediction sets")
sets = evaluate_conformal(run, result)  # leakage-free images; None: the run has no prediction sets
if sets is None:
    _, why = try_run_conformal(run)  # None: sets exist but for other classes than this evaluation's
    said = with_refit_advice(why or "this model has no prediction sets for these classes", run.run_id, "evaluate")
    st.info(escape_markdown(said[:1].upper() + said[1:]), icon=":material/info:")
else:
    st.altair_chart(coverage_chart(sets), width="stretch")
    st.dataframe(coverage_display(sets), hide_index=True, width="stretch")
    st.caption(f"How often the set held the true class, per class (95 % intervals), on "
               f"{int(sets['n_images'].iloc[0])} leakage-free images; points on the dashed line keep the promise. "
               + GUARANTEE_NOTE)
    sets_ui.fitted_on_caption(run)
sets_ui.fit_more_section(run, registry)

es.warnings_section(run, eval_set, result, set_key, registry)
es.robustness_section(run, eval_set, set_key, registry)
es.localisation_section(run, eval_set, result)

st.subheader("Most confident mistakes")
gallery.show_gallery(run, result, worst_mistakes(result.subset(lf), gallery.GALLERY), method,
                     "No wrong predictions.")

st.subheader("Training history")
chart = ec.history_chart(training_history(run))
if chart is None:
    st.caption("This run has no training history.")
else:
    st.altair_chart(chart)

es.downloads_section(run, result)
es.export_section(run, result)

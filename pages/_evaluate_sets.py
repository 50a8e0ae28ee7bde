"""The Evaluate page's "Prediction sets" controls: what the sets were fitted on, and a background
job that fits them on more images (validation + out-of-fold training scores, core.training.conformal_folds)."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from core.inference.conformal import FIT_SETS_ACTION
from core.jobs import FINISHED, JobRegistry
from core.models.run import Run
from core.safetext import escape_markdown
from core.training.conformal_folds import (
    DEFAULT_FOLDS,
    MAX_FOLDS_PAGE,
    MIN_FOLDS,
    check_training_data,
    fit_sets_out_of_fold,
    plan_folds,
    precision_override,
    stored_fold_precision,
)
from pages import _shared as sh

JOB_KIND = "conformal"  # one fit at a time on this server (it trains models)
JOB_KEY = "evaluate_sets_job"  # (job id, run id) of the fit started from this session
FITTED_KEY = "evaluate_sets_fitted"  # run id whose fit just ended: the success is said on the next draw


def fitted_on_caption(run: Run) -> None:
    """What the run's prediction sets were fitted on, in the card's words."""
    conformal = run.card.results.conformal or {}
    if conformal.get("fitted_on"):
        st.caption(f"These sets were fitted on {escape_markdown(str(conformal['fitted_on']))}.")
    if conformal.get("out_of_fold_dropped"):
        # Cards written before session 9 end the reason with a command; the page names its own action.
        reason = str(conformal["out_of_fold_dropped"]).split(": run calibrate")[0]
        st.caption("The training images scored earlier were left out of this fit: "
                   f"{escape_markdown(reason)}. '{FIT_SETS_ACTION}' below adds them again.")


def _duration_words(seconds: float | None) -> str:
    if seconds is None:
        return "several minutes each (this model's card does not record how long its training took)"
    minutes = max(1, math.ceil(seconds / 60))
    return f"about {minutes} minute{'s' if minutes != 1 else ''} in all on this machine"


def _plan_words(plan: Any) -> str:
    if plan.trainings == 0:
        return ("The scores of the training images are already stored for this number of folds, so no model needs "
                "training: this takes under a minute.")
    per = f" ({plan.folds} per network)" if plan.networks > 1 else ""
    reuse = "; stored scores are reused" if plan.trainings < plan.folds * plan.networks else ""
    return (f"This trains {plan.trainings} extra models{per}{reuse}, {_duration_words(plan.seconds)}. "
            "Each one learns from most of the training images and scores the ones it did not see.")


def fit_more_section(run: Run, registry: JobRegistry) -> None:
    """The folds control, the button that starts the fit, and the running or last fit's progress."""
    ref = st.session_state.get(JOB_KEY)
    job = registry.get(ref[0]) if ref and ref[1] == run.run_id else None
    if job is not None and job.status == "done":
        # The sets above may have been drawn from the card read before the fit ended (it can end while this
        # run draws): draw the page again from the new card, then say it once.
        st.session_state.pop(JOB_KEY)
        st.session_state[FITTED_KEY] = run.run_id
        st.rerun()
    if st.session_state.pop(FITTED_KEY, None) == run.run_id:
        st.success("The prediction sets were fitted again; the coverage above uses the new sets.",
                   icon=":material/check_circle:")
    elif job is not None:
        _progress(job, was_running=job.running)
    mine_running = job is not None and job.running  # the controls stay drawn (disabled): their values are kept
    with st.expander(FIT_SETS_ACTION, expanded=False):
        st.markdown("The sets are fitted on the model's validation images, a few hundred at most. They can also "
                    "be fitted on its training images: extra copies of the model are trained, each without part of "
                    "the training images, and score the part they never saw. **The test images are never used, "
                    "and the model itself does not change**: only its prediction sets are fitted again.")
        folds = st.slider("Parts to split the training images into (one extra model per part)", MIN_FOLDS,
                          MAX_FOLDS_PAGE, DEFAULT_FOLDS, key="evaluate_sets_folds", disabled=mine_running,
                          help="More parts: each extra model sees more of the training images, but there are more "
                               "models to train.")
        plan = precision = None
        with sh.shown_errors():
            check_training_data(run)
            precision = _precision_choice(run, folds, mine_running)
            plan = plan_folds(run, folds, precision_override(precision))
        if plan is None:
            return
        st.caption(_plan_words(plan))
        busy = registry.active(JOB_KIND)
        if busy is not None and not mine_running:
            st.info(f"'{escape_markdown(busy.title)}' is running; try again when it ends.")
        if st.button(FIT_SETS_ACTION, key="evaluate_sets_start", disabled=busy is not None,
                     icon=":material/model_training:"):
            with sh.shown_errors():
                new = registry.submit(JOB_KIND, f"Fit the prediction sets of {run.run_id} on more images",
                                      lambda j, r=run, k=folds, c=precision_override(precision):
                                      fit_sets_out_of_fold(r, k, j, cfg_override=c))
                st.session_state[JOB_KEY] = (new.id, run.run_id)
                st.rerun()


_OWN = "own"  # the precision choice's value for "each network's own recipe"


def _precision_choice(run: Run, folds: int, disabled: bool) -> str | None:
    """How the extra models train: each network's own precision, or one for all of them (None: own).

    Offered where bfloat16 is native here, or where stored scores were made with a changed precision
    (the choice then starts there, so reusing them is the default, not hours of training again)."""
    from core.training.hardware import detect_hardware

    stored, native = stored_fold_precision(run, folds), detect_hardware().bf16_fast
    if stored is None and not native:
        return None
    labels = {_OWN: "As each model was trained",
              "bfloat16": "bfloat16 for every extra model (about 1.4 times faster on this processor)"
              if native else "bfloat16 for every extra model (slower on this processor)",
              "float32": "float32 for every extra model"}
    keys = list(labels)
    choice = st.radio("How the extra models compute", keys, index=keys.index(stored or _OWN),
                      format_func=labels.get, key=f"evaluate_sets_precision_{run.run_id}_{folds}",
                      disabled=disabled,
                      help="Only the extra models' arithmetic changes; the model itself and its test images do "
                           "not. bfloat16 halves the cost of each multiplication on processors built for it. "
                           "The fit records the choice beside the sets.")
    return None if choice == _OWN else choice


def _progress(job: Any, was_running: bool) -> None:
    @st.fragment(run_every=1.0 if was_running else None)
    def poll() -> None:
        """Polls the fit; when it ends, reruns the whole page so the coverage uses the new sets."""
        snap = job.snapshot()
        if snap.status not in FINISHED:
            text = "Cancelling…" if snap.cancel_requested else (snap.phase or "Starting…")
            st.progress(min(1.0, snap.progress), text=escape_markdown(text))
            st.button("Cancelling…" if snap.cancel_requested else "Cancel", key="evaluate_sets_cancel",
                      on_click=job.cancel, disabled=snap.cancel_requested,
                      help="Stops after the step in flight; the prediction sets stay as they were.")
            return
        if was_running:
            st.rerun()
        if snap.status == "failed":
            st.error(f"The sets could not be fitted on more images: {escape_markdown(snap.error)}",
                     icon=":material/error:")
        elif snap.status == "cancelled":
            st.caption("Fitting the sets on more images was cancelled; the prediction sets are unchanged.")

    poll()

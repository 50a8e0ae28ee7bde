"""The Train page's job view: the running or last training job, redrawn while it runs.

The training thread never calls streamlit: it writes into a core.jobs.Job, and this view polls it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.jobs import CANCELLED, DONE, FAILED, JobRegistry
from core.reports import train_charts as charts
from core.safetext import escape_markdown
from core.training.train_feedback import finished_summary, progress_text, settings_rows
from pages import _shared as sh

# How often the job view redraws while a job runs. At 0.5 s each redraw (about that long on two busy
# cores) followed the last at once and starved the training thread of the GIL: a 1-epoch run never
# finished in the browser test. A cancel still shows at once: the click redraws the view itself.
POLL_S = 1.0


def job_section(registry: JobRegistry) -> None:
    """The running training job (live) or the last one (its outcome, curves and log), if any."""
    current = registry.active("train") or next(iter(registry.jobs("train")), None)
    was_running = current is not None and current.running

    @st.fragment(run_every=POLL_S if was_running else None)
    def job_view(job_id: str) -> None:
        job = registry.get(job_id)
        snap = job.snapshot()
        if was_running and not job.running:
            # Finished: say how at once (a full rerun of this page can take seconds on a busy server),
            # then one full rerun stops the timer and refreshes "Past runs".
            if snap.status == CANCELLED:
                st.warning("Training was cancelled: nothing was saved.", icon=":material/cancel:")
            elif snap.status == FAILED:
                st.error(f"Training failed: {escape_markdown(snap.error)}", icon=":material/error:")
            st.rerun()
        st.subheader(f"Job: {escape_markdown(snap.title)}")  # the dataset name is in it
        if job.running:
            if snap.cancel_requested:
                # Said at once, on the click's own redraw: the engine stops at the next batch, but a step
                # that cannot be interrupted (compiling the model) may take a few more seconds.
                st.warning("Training was cancelled: it stops after the step in flight (compiling the model cannot "
                           "be interrupted and may take a few more seconds); nothing will be saved.",
                           icon=":material/cancel:")
            st.progress(min(1.0, snap.progress), text=progress_text(snap))
            st.button("Cancelling…" if snap.cancel_requested else "Cancel", icon=":material/stop:",
                      key="train_cancel", on_click=job.cancel, disabled=snap.cancel_requested,
                      help="Stops after the step in flight (usually under a second); nothing is saved.")
            if snap.settings:
                with st.expander("This job's settings (read-only)", expanded=True):
                    rows = settings_rows(snap.settings.config, snap.settings.dataset)
                    st.dataframe(pd.DataFrame(rows, columns=["setting", "value"]), hide_index=True, width="stretch")
        elif snap.status == DONE:
            total = snap.finished - snap.started if snap.finished and snap.started else None
            message, verdict = finished_summary(snap.result, len(snap.history), total)
            st.success(escape_markdown(message), icon=":material/check_circle:")
            getattr(st, verdict.level)(f"**{verdict.headline}** {verdict.advice}")
            if st.button("Evaluate on held-out test data", icon=":material/analytics:", key="train_to_eval"):
                st.session_state[sh.EVALUATE_HANDOFF] = snap.result.run_id  # the Evaluate page opens the run just trained
                st.switch_page("pages/4_Evaluate.py")  # as registered in Home.py (relative to it)
        elif snap.status == FAILED:
            st.error(f"Training failed: {escape_markdown(snap.error)}", icon=":material/error:")
            with st.expander("Technical details"):
                st.code(snap.error_traceback or "", language=None)
        elif snap.status == CANCELLED:
            st.warning("Training was cancelled: nothing was saved.", icon=":material/cancel:")

        curves = charts.curve_frame(snap.batch_log, snap.history, snap.batches)
        if not curves.empty:
            best = charts.best_epoch(snap.history)
            c1, c2 = st.columns(2)
            c1.altair_chart(charts.metric_chart(curves, "loss", best), width="stretch")
            c2.altair_chart(charts.metric_chart(curves, "accuracy", best), width="stretch")
            st.altair_chart(charts.lr_chart(snap.batch_log, snap.batches), width="stretch")
            if best is not None:
                st.caption(f"Dashed line: best epoch {best} (lowest validation loss); early stopping keeps its weights.")
        if snap.history:
            st.dataframe(charts.history_table(snap.history), width="stretch")
        st.code("\n".join(snap.log[-12:]) or "(no log yet)", language=None)

    if current is not None:
        job_view(current.id)

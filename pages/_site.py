"""Site check and site adaptation, as small sections for the Evaluate, Predict & Explain and Train pages.

The pages call one function each; the work is core.evaluation.site_check and core.training.adapt.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import WorkbenchError
from core.evaluation.site_check import (
    MIN_IMAGES,
    SHIFT_ADVICE,
    SiteCheck,
    check_results,
    class_mix_sentence,
    mark_batch,
    network_names,
    site_check,
)
from core.jobs import CANCELLED, DONE, FAILED
from core.paths import check_under_data_roots
from core.reports.run_summary import percent
from core.safetext import escape_markdown, neutralise_frame
from pages import _shared as sh


def _show_check(result: SiteCheck, names: dict[str, str]) -> None:
    """The verdict, the per-signal AUCs (``names``: how to name an ensemble's networks) and unreadable files."""
    if result.domain_auc is None:
        st.info(result.advice, icon=":material/info:")
    elif result.shift_detected:
        st.warning(f"**{SHIFT_ADVICE}** Domain AUC {result.domain_auc:.2f} (95 % interval "
                   f"{result.auc_interval[0]:.2f}–{result.auc_interval[1]:.2f}; 0.5 = indistinguishable).",
                   icon=":material/warning:")
    else:
        st.success(result.advice, icon=":material/check_circle:")
    if result.signals:
        rows = []
        for s in result.signals.values():
            rows.append({"signal": s["name"] + ("" if s.get("verdict", True) else " · not in the verdict: the model "
                                                "never sees it"), "AUC": s["auc"]})
            rows += [{"signal": f"… {names.get(member, 'one model of the ensemble')} alone ({member})", "AUC": auc}
                     for member, auc in (s.get("members") or {}).items()]  # which network sees it
        table = pd.DataFrame(rows)
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"AUC": st.column_config.ProgressColumn(min_value=0.5, max_value=1.0,
                                                                           format="%.2f")})
        source = f" ({escape_markdown(result.reference)})" if result.reference else ""  # its date is read from a file
        st.caption(f"{result.n_images} site images against {result.n_reference} training images{source}; a classifier "
                   "tries to tell them apart (cross-validated). A shift is reported when the AUC's interval "
                   "excludes 0.5 and the AUC is at least 0.64 (a medium-sized difference), read from the pictures alone. "
                   + (class_mix_sentence(result) or ""))
    if result.unreadable:
        with st.expander(f"{len(result.unreadable)} unreadable files (the rest were used)"):
            st.dataframe(neutralise_frame(pd.DataFrame(result.unreadable, columns=["file", "reason"])),
                         hide_index=True)


def evaluate_section(run) -> None:
    """Evaluate page: check a chosen folder of images (no labels needed) against ``run``'s training images."""
    st.subheader("Site check: do your images look like the training images?")
    st.caption("Any folder of images from one hospital or scanner; sub-folder names are ignored and no labels "
               "are needed. If they differ, the model card's accuracy may not hold for them.")
    _kept_sample(run)
    folder = st.text_input("Folder of the site's images", key="site_check_folder")
    if st.button("Check these images", key="site_check_go", disabled=not folder.strip()):
        st.session_state.pop("site_check_result", None)  # a refused folder must not leave the last verdict shown
        with sh.shown_errors():
            path = check_under_data_roots(folder.strip())
            with st.spinner("Comparing with the training images…"):
                st.session_state["site_check_result"] = (run.run_id, site_check(run, path))
    stored = st.session_state.get("site_check_result")
    if stored and stored[0] == run.run_id:
        _show_check(stored[1], network_names(run))
        if stored[1].shift_detected:
            st.caption("To adapt: Train page → 'Adapt an existing model to your images', with a labelled sample "
                       "from this site.")


def _kept_sample(run) -> None:
    """Whether a sample of the training images travels with the model, and a button to keep one."""
    from core.evaluation.site_reference import build_reference, kept_reference, save_reference

    with sh.shown_errors():
        reference, problem = kept_reference(run)
        if reference is not None:
            st.caption(f":material/inventory_2: Compared with training images {escape_markdown(reference.describe())}: the check "
                       "runs on any computer this model is copied to, with or without its training images.")
            return
        st.caption("No sample of the training images is kept with this model"
                   + (f" ({escape_markdown(problem)})" if problem else "")
                   + ": the check reads the training folder, so it runs only where that folder is. Keeping a sample "
                   "(about 1,000 images stored as numbers, no pictures) lets it run on any computer the model is "
                   "copied to.")
        if st.button("Keep a sample of the training images with the model", key="site_keep_sample"):
            with st.spinner("Reading a sample of the training images…"):
                save_reference(run, build_reference(run))
            st.rerun()


def predict_batch_check(run, uploads: list, results: list) -> None:
    """Predict & Explain: with at least MIN_IMAGES uploads, say whether they differ from the training images.

    A flagged batch is said once above the results and on every slice (``results``: marked in place), since a
    slice's case report travels without this banner.
    """
    result = None
    if len(uploads) >= MIN_IMAGES:
        key = ("site_batch", run.run_id, tuple((u.file_id, u.name, u.size) for u in uploads))  # file_id: same names, new files
        if st.session_state.get("site_batch_key") != key:
            st.session_state.pop("site_batch_result", None)  # a failed check must not show the last batch's verdict
            st.session_state.pop("site_batch_problem", None)
            try:
                with st.spinner("Checking the batch…"):
                    # The images and network features the prediction already holds, in memory, as the page
                    # promises: nothing is decoded or run twice, and uploads never reach the disk.
                    st.session_state["site_batch_result"] = check_results(run, results)
            except WorkbenchError as exc:  # kept with the batch's key: a slider move does not run it again
                st.session_state["site_batch_problem"] = str(exc)
            st.session_state["site_batch_key"] = key
        if problem := st.session_state.get("site_batch_problem"):  # the answers stand: information, not an error
            st.info(f"Site check of this batch not run: {escape_markdown(problem)}", icon=":material/info:")
        result = st.session_state.get("site_batch_result")
    mark_batch(results, result)
    if result is not None and result.shift_detected:
        st.warning(f"**{SHIFT_ADVICE}** (Site check on these {result.n_images} images: a classifier told them "
                   f"apart from the model's training images, AUC {result.domain_auc:.2f}; 0.5 would mean it could "
                   "not.) Every slice below carries this warning, in its report too.", icon=":material/warning:")
    elif result is not None and result.domain_auc is not None:
        st.caption(f":material/check_circle: Site check on these {result.n_images} images: they look like the "
                   f"training images (a classifier could not reliably tell them apart: AUC {result.domain_auc:.2f}, "
                   "where 0.5 means not at all). That does not prove the answers right; a labelled sample from this "
                   "site does.")


# --- Train page: adaptation ----------------------------------------------------------------------------

def adapt_view(registry) -> None:
    """Train page mode: adapt a registered model to a labelled site folder, as a background job."""
    from core.models.runs import list_runs, resolve_run
    from core.training.adapt import AdaptConfig
    from core.training.adapt_ensemble import adapt_run

    st.caption("Fine-tune a saved model on a few labelled images from your hospital (one sub-folder per class; "
               "at least 2 classes and 5 images each). A new model is saved; the original is never changed. "
               "Some of the original training images are replayed so the model keeps what it knew. For an "
               "ensemble, each of its models is adapted on the same images and a new ensemble of the adapted "
               "models is saved.")
    runs = [r for r in list_runs() if r.usable]
    if not runs:
        st.info("No saved model to adapt yet: train one first.")
        return
    by_id = {r.run_id: r for r in runs}
    parent_id = st.selectbox("Model or ensemble to adapt", list(by_id), format_func=lambda k: by_id[k].label(), key="adapt_parent")
    folder = st.text_input("Labelled folder of the site's images", key="adapt_folder")
    epochs = st.number_input("Most epochs", 1, 50, AdaptConfig().epochs, key="adapt_epochs")
    busy = registry.active("adapt") or registry.active("train")
    if st.button("Start adapting", type="primary", key="adapt_start", disabled=busy is not None or not folder.strip()):
        with sh.shown_errors():
            path = check_under_data_roots(folder.strip())
            parent = resolve_run(parent_id)
            cfg = AdaptConfig(epochs=int(epochs))
            registry.submit("adapt", f"Adapt {parent.run_id} to {Path(path).name}",
                            lambda j: adapt_run(parent, path, cfg, j))
            st.rerun()
    current = registry.active("adapt") or next(iter(registry.jobs("adapt")), None)
    if current is not None:
        _adapt_job(registry, current.id, current.running)


def _adapt_job(registry, job_id: str, was_running: bool) -> None:
    @st.fragment(run_every=1.0 if was_running else None)
    def view() -> None:
        job = registry.get(job_id)
        snap = job.snapshot()
        if was_running and not job.running:
            st.rerun()
        st.subheader(f"Job: {escape_markdown(snap.title)}")
        if job.running:
            text = snap.phase or "Starting"
            if snap.epochs and snap.epoch:
                text += f" · epoch {snap.epoch}/{snap.epochs}"
            st.progress(min(1.0, snap.progress), text=text)
            st.button("Cancel", key="adapt_cancel", on_click=job.cancel, disabled=snap.cancel_requested,
                      help="Stops after the step in flight; nothing is saved.")
        elif snap.status == DONE:
            result = snap.result
            members = f" with its adapted models {', '.join(result.members)}" if result.members else ""
            st.success(f"Saved as {result.run.run_id} ({escape_markdown(result.run.adapted_note())}){members}.",
                       icon=":material/check_circle:")
            st.dataframe(before_after_frame(result.to_json()), hide_index=True, width="stretch")
            for note in result.kept:  # which weights were kept, and why (the parent's, recalibrated, when no epoch helped)
                st.caption(escape_markdown(note[0].upper() + note[1:]) if note else "")
            verdict = result.to_json()["verdict"]
            show = {"adapted": st.success, "original": st.warning}.get(verdict["use"], st.info)
            show(escape_markdown(verdict["text"]), icon=":material/balance:")
        elif snap.status == FAILED:
            st.error(f"Adaptation failed: {escape_markdown(snap.error)}", icon=":material/error:")
        elif snap.status == CANCELLED:
            st.warning("Adaptation was cancelled: nothing was saved.", icon=":material/cancel:")
        st.code("\n".join(snap.log[-8:]) or "(no log yet)", language=None)

    view()


def before_after_frame(out: dict) -> pd.DataFrame:
    """The before/after table: accuracy of the parent and the adapted model on both test sets."""
    rows = []
    for part, title in (("site", "the site's test part"), ("source", "the original model's own test split")):
        n = out["after"].get(f"{part}_n")
        rows.append({"images": f"{title} ({n})", "original model": percent(out["before"][part]) or "not measured",
                     "adapted model": percent(out["after"][part]) or "not measured"})
    return pd.DataFrame(rows)


# --- Dataset Explorer: the story from shortcut to site ---------------------------------------------------

DEMO_FIGURES = Path(__file__).resolve().parents[1] / "bench" / "site_results.json"  # python -m bench.site_adapt


def teaching_story() -> None:
    """Explorer, style-shortcut section: shortcut -> site check -> adaptation, with the measured demo figures."""
    import json

    st.markdown("**From a shortcut to a new hospital**")
    st.markdown(
        "1. **Shortcut.** If style predicts the class here, a model may have learned the style of each "
        "collection. Its accuracy then holds only for images in that style.\n"
        "2. **Site check** (Evaluate page, no labels needed): a classifier tries to tell a hospital's images from "
        "the training images. If it can (domain AUC well above 0.5), the model card's accuracy may not hold there; "
        "measure it on labelled images from that hospital. If it cannot, the images *look* alike, which is not "
        "proof that the answers hold: tumours that look different in another collection pass it unseen.\n"
        "3. **Adaptation** (Train page, 'Adapt an existing model to your images'): a few labelled slices from that "
        "hospital, with some of the original training images replayed so nothing is forgotten, give a new model "
        "for that site; its warnings and prediction sets are refitted there. Fine-tuning is kept only where it "
        "beats the original on the site's validation images without forgetting a class, and a verdict says "
        "whether the site's held-back images show a gain at all.")
    try:
        fig = json.loads(DEMO_FIGURES.read_text())
    except (OSError, ValueError):
        return
    check, own, adapt = fig["site_check_site"], fig["site_check_own_test"], fig["adapt"]
    st.caption(
        f"Measured on a simulated site ({fig['n_site']} real validation slices re-framed and given other "
        f"intensities, `python -m bench.site_adapt`): site check domain AUC {check['domain_auc']:.2f} on the site, "
        f"{own['domain_auc']:.2f} on the model's own held-out test images (not flagged); after adapting, site "
        f"accuracy {adapt['before']['site']:.1%} → {adapt['after']['site']:.1%}, original test "
        f"{adapt['before']['source']:.1%} → {adapt['after']['source']:.1%}. A simulated site changes the style; "
        "on a real other collection (bench/RESULTS.md, section 24) what changed was how the tumours look.")

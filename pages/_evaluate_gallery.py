"""The Evaluate page's image galleries: test images with their classes, optionally under a heat map.

The model (or an ensemble's predictor) and the drawn images are cached, so a rerun redraws at once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.classes import display_name
from core.inference.ensemble_predict import predictor_for
from core.models.runs import load_model, resolve_run
from core.reports.gallery import gallery_images
from pages import _shared as sh

GALLERY = 12  # images per gallery: each needs a decode and a Grad-CAM pass


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def model_for(run_id: str, sha: str, path: str):
    run = resolve_run(path, root=Path(path).parent)
    return predictor_for(run) if run.card.is_ensemble else load_model(run)  # an ensemble: its members' maps


@st.cache_data(show_spinner="Drawing images…", max_entries=64)
def gallery(run_id: str, sha: str, path: str, root: str, rows: pd.DataFrame, method: str | None) -> list:
    run = resolve_run(path, root=Path(path).parent)
    return gallery_images(run, model_for(run_id, sha, path) if method else None, root, rows, method)


def show_gallery(run, result, rows: pd.DataFrame, method: str | None, empty: str) -> None:
    if rows.empty:
        st.caption(empty)
        return
    rows = rows.head(GALLERY)
    with sh.shown_errors():
        images = gallery(run.run_id, result.model_sha256, str(run.path), result.root,
                         rows[["file", "true", "predicted"]].reset_index(drop=True), method)
        captions = [f"{Path(r.file).name} · true {display_name(r.true)} · predicted {display_name(r.predicted)} "
                    f"({r.confidence:.0%})" + (" · near-copy of a training image" if r.overlap else "")
                    for r in rows.itertuples()]
        st.image(images, caption=captions, width=160)

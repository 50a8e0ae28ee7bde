"""The Augmentation Preview's intensity-style mixing view: the slice on a partner slice's intensities.

Only called when the teacher asks for it (a checkbox), so its images are never built on an ordinary rerun.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from core.classes import display_name
from core.data.datasets import Dataset
from core.data.preprocess import get_recipe
from core.data.style_views import choose_partner, style_view
from core.safetext import escape_markdown
from pages import _shared as sh

DRAW_KEY = "aug_style_draw"  # which partner: the "Another partner" button counts up


def next_partner() -> None:
    st.session_state[DRAW_KEY] = st.session_state.get(DRAW_KEY, 0) + 1


def style_mixing_view(ds: Dataset, pixels: np.ndarray, name: str, label: str | None, side: int,
                      recipe: str) -> None:
    """Draw ``pixels`` (the slice ``name``, of class ``label`` if known) restyled onto a partner's intensities."""
    files = ds.files.sort_values("path")
    index = choose_partner(list(files["path"]), list(files["label"]), name, label,
                           st.session_state.get(DRAW_KEY, 0))
    if index is None:
        st.info("This dataset has no slice of another class to borrow intensities from.")
        return
    partner_path, partner_label = files["path"].iloc[index], files["label"].iloc[index]
    partner = sh.cached_image(ds.fingerprint, str(ds.abspath(partner_path)))
    v = style_view(pixels, partner.pixels, side, recipe)
    own = f"this slice ({display_name(label)})" if label else "this slice"
    (b0, b1, b2), (c0, c1, c2) = v.brightness, v.contrast
    st.markdown(f"Partner: a **{display_name(partner_label)}** slice from the active dataset "
                f"({escape_markdown(Path(partner_path).name)}).")
    st.image([v.original, v.partner, v.restyled], width=side,
             caption=[own, f"partner ({display_name(partner_label)})", "this slice, restyled"])
    st.caption(f"The head takes the partner head's brightness and contrast: mean grey level of the slice {b0:.0f} → "
               f"{b2:.0f} (partner {b1:.0f}), spread {c0:.0f} → {c2:.0f} (partner {c1:.0f}). The anatomy is "
               "unchanged: every pixel stays where it was, what was brighter inside the head stays brighter, and "
               "the background is left as it was.")
    st.image([v.original_input, v.partner_input, v.restyled_input], width=side,
             caption=["network input: as given", "network input: partner", "network input: restyled"])
    st.markdown(f"Through **{get_recipe(recipe).title}**, the network's input changes by **{v.input_change:.1f}** "
                "of 255 on average. Recipes that standardise intensities undo most of the change, but not where "
                "grey levels merge or the outline of the head shifts; the whole frame sees all of it (pick another "
                "recipe above to compare).")
    st.caption("Why training does this: in the Kaggle data each class comes mostly from one source, so brightness "
               "and contrast alone can give the class away. Showing part of the training slices with another "
               "slice's intensities, of any class, makes the network learn from the anatomy instead (Train page, "
               "\"Intensity-style mixing\").")

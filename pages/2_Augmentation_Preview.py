"""Augmentation Preview: the exact transforms the trainer applies, on one image, before training."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from core.classes import display_name
from core.config import AUGMENT_PRESETS, AugmentConfig
from core.data.imageio import decode_image
from core.data.preprocess import PREPROCESSING_ID, RECIPES, get_recipe, prepare
from core.data.recipe_views import SINGLE_IMAGE_SHIFTS, recipe_views
from core.data.shifts import SHIFTS
from core.options import bound_of
from core.safetext import escape_markdown
from core.training.augment import TRANSFORM_NOTES, anatomy_warnings, preview_variants
from core.training.preset_notes import PRESET_NOTES, preset_label
from pages import _augment_style as style
from pages import _nav as nav
from pages import _settings as ws
from pages import _shared as sh

nav.require_navigation()  # first: a deep link may have started this page without Home.py

PREVIEW_SIDE = 128  # small: TensorFlow transforms a batch of these in milliseconds
#: The float fields of AugmentConfig: label, range and step are the field's declared Bound.
SLIDERS = [f.name for f in dataclasses.fields(AugmentConfig) if "bound" in f.metadata]
TOGGLES = {"horizontal_flip": "Left-right flip", "vertical_flip": "Upside-down flip"}
DRAFT_KEY = "augment_draft"  # the sliders' config, kept while the user visits other pages


def load_into_widgets(cfg: AugmentConfig) -> None:
    for name in SLIDERS:
        st.session_state[f"aug_{name}"] = float(getattr(cfg, name))
    for name in TOGGLES:
        st.session_state[f"aug_{name}"] = bool(getattr(cfg, name))


def apply_preset() -> None:
    if st.session_state["aug_preset"]:
        load_into_widgets(AUGMENT_PRESETS[st.session_state["aug_preset"]])


def matching_preset(cfg: AugmentConfig) -> str | None:
    return next((name for name, preset in AUGMENT_PRESETS.items() if preset == cfg), None)


@st.cache_data(show_spinner=False, max_entries=64)
def variants(image: np.ndarray, cfg_items: tuple, n: int, seed: int) -> np.ndarray:
    return preview_variants(image, AugmentConfig(**dict(cfg_items)), n=n, seed=seed)


st.title("Augmentation Preview")
ds = sh.show_active_dataset_badge()
st.caption("Augmentation shows the network slightly different versions of each training image, so it "
           "learns the tumour rather than the exact framing. These are the same TensorFlow ops the "
           "trainer runs.")

if "aug_rotation_deg" not in st.session_state:  # first visit, or back from another page
    load_into_widgets(st.session_state.get(DRAFT_KEY) or sh.augment_config())

controls, view = st.columns([1, 2], gap="large")
with controls:
    st.selectbox("Start from a preset", list(AUGMENT_PRESETS), index=None, placeholder="choose a preset…",
                 key="aug_preset", on_change=apply_preset,
                 help=" ".join(f"{preset_label(name)}" for name in AUGMENT_PRESETS))
    values = {}
    for name in SLIDERS:  # values come from session state (load_into_widgets), so no default is passed
        values[name] = ws.slider(st, bound_of(AugmentConfig, name).title, AugmentConfig, name, f"aug_{name}",
                                 TRANSFORM_NOTES[name], value=None)
    for name, label in TOGGLES.items():
        values[name] = st.toggle(label, key=f"aug_{name}", help=TRANSFORM_NOTES[name])
    cfg = AugmentConfig(**values)
    st.session_state[DRAFT_KEY] = cfg
    preset = matching_preset(cfg)
    st.caption(f"These settings match the **{preset}** preset: {PRESET_NOTES[preset]}" if preset
               else "Custom settings.")
    c1, c2 = st.columns(2)
    n = c1.number_input("Variants", 1, 24, 8, key="aug_n")
    seed = c2.number_input("Seed", 0, 1_000_000, 0, key="aug_seed")

with view:
    source = st.radio("Image", ["dataset", "upload"], horizontal=True, key="aug_source",
                      format_func={"dataset": "From the active dataset", "upload": "Upload one"}.get)
    image, name, label = None, "", None
    with sh.shown_errors():
        if source == "dataset":
            c1, c2 = st.columns(2)
            label = c1.selectbox("Class", ds.class_names, format_func=display_name, key="aug_class")
            paths = sorted(ds.files.loc[ds.files["label"] == label, "path"])
            index = c2.number_input(f"Image number (0–{len(paths) - 1})", 0, len(paths) - 1, 0,
                                    key=f"aug_index_{label}")
            name = paths[int(index)]
            image = sh.cached_image(ds.fingerprint, str(ds.abspath(name)))
        else:
            upload = st.file_uploader("An MRI slice", type=["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm"],
                                      key="aug_upload")
            if upload is not None:
                name = upload.name
                image = decode_image(upload.getvalue(), upload.name)  # in memory, never written to disk
    if image is None:
        st.info("Upload an image to preview its variants.")
    else:
        # The trainer's own preprocessing (head crop + intensity standardisation for new models).
        small = prepare(image, PREVIEW_SIDE, PREPROCESSING_ID)[..., 0]
        with st.spinner("Transforming (the first time also loads TensorFlow)…"):
            out = variants(small, tuple(dataclasses.asdict(cfg).items()), int(n), int(seed))
        st.image(small, caption=f"as the network sees it ({get_recipe(PREPROCESSING_ID).title.lower()}) · "
                                f"{escape_markdown(Path(name).name)}", width=192)
        st.image(list(out), width=PREVIEW_SIDE, caption=[f"variant {i + 1}" for i in range(len(out))])
        st.caption(f"{len(out)} variants at {PREVIEW_SIDE}×{PREVIEW_SIDE}, seed {seed} · "
                   f"pixel checksum {hashlib.sha1(out.tobytes()).hexdigest()[:12]} (same seed, same images)")
        with st.expander("How each preprocessing recipe prepares this slice"):
            st.caption("Before augmentation, every image goes through the model's preprocessing recipe (its card "
                       "records which). Pick a change a scanner or export could make and compare what each recipe "
                       "hands the network; the figure is the mean change of the input, on a 0–255 scale.")
            # Drawn only on request: an expander's content is built on every rerun even when closed,
            # and every slider move reruns the page.
            shown = st.checkbox("Compare the recipes on this slice", key="aug_recipe_show")
            shift = st.selectbox("Change", SINGLE_IMAGE_SHIFTS, format_func=lambda k: SHIFTS[k].title,
                                 key="aug_recipe_shift", disabled=not shown)
            for rv in recipe_views(image.pixels, PREVIEW_SIDE, shift) if shown else []:
                st.markdown(f"**{rv.title}**: the input changes by **{rv.change:.1f}** of 255 on average"
                            + ("" if rv.head_found else " · no head found: the whole frame is used"))
                st.image([rv.plain, rv.shifted], width=PREVIEW_SIDE,
                         caption=["as given", SHIFTS[shift].title.lower()])
        with st.expander("What intensity-style mixing does to this slice"):
            st.caption("Training can show part of the slices with the brightness and contrast of another slice "
                       "(Train page, \"Intensity-style mixing\"). Here this slice's head borrows the intensities of "
                       "the head in a slice of another class, as given and as the network sees it.")
            # Drawn only on request, as the recipe comparison above.
            style_shown = st.checkbox("Show intensity-style mixing on this slice", key="aug_style_show")
            c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
            recipe = c1.selectbox("Recipe", list(RECIPES), index=list(RECIPES).index(PREPROCESSING_ID),
                                  format_func=lambda k: RECIPES[k].title, key="aug_style_recipe",
                                  disabled=not style_shown)
            c2.button("Another partner", key="aug_style_next", on_click=style.next_partner, disabled=not style_shown)
            if style_shown:
                with sh.shown_errors():
                    style.style_mixing_view(ds, image.pixels, name, label, PREVIEW_SIDE, recipe)

with controls:
    for warning in anatomy_warnings(cfg):
        st.warning(warning, icon=":material/warning:")
    saved = sh.augment_config()
    if st.button("Use these settings for training", type="primary", key="aug_use", disabled=cfg == saved):
        sh.set_augment_config(cfg)
        st.success("Saved: the Train page will train with these settings.")
    elif cfg == saved:
        st.caption("The Train page uses these settings.")
    else:
        used = matching_preset(saved)
        st.caption(f"The Train page still uses {f'the {used} preset' if used else 'earlier custom settings'}.")

with st.expander("What each transform does"):
    st.markdown("\n".join(f"- **{bound_of(AugmentConfig, k).title if k in SLIDERS else TOGGLES.get(k, k)}**: {v}"
                          for k, v in TRANSFORM_NOTES.items()))

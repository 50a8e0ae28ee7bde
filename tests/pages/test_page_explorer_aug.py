"""Smoke and behaviour tests of Home, the Dataset Explorer and the Augmentation Preview (AppTest).

The demo is copied (mtimes kept) into each test's cache folder, so the pages find it where
``core.data.demo.demo_dir`` looks, and Streamlit's in-process caches can reuse one scan.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import AugmentConfig
from core.data.demo import DEMO_VERSION, PLANTED_NEAR

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # the Augmentation page imports TensorFlow on its first run


@pytest.fixture(autouse=True)
def app_env(isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # pages import `pages._shared` and `core`
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    return isolated_workbench_dirs


def app(page: str) -> AppTest:
    return AppTest.from_file(str(PROJECT_ROOT / page), default_timeout=TIMEOUT)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


# --- Home and navigation ----------------------------------------------------------------------


def test_home_shows_disclaimer_workflow_and_demo():
    at = app("Home.py").run()
    assert not at.exception
    assert "not a diagnosis" in at.warning[0].value  # the first thing on the page
    assert any("SYNTHETIC" in c for c in captions(at))
    assert any("No trained models yet" in c for c in captions(at))


def test_home_lists_saved_models(app_env):
    from core.models.runs import CARD_FILE, MODEL_FILE

    run = app_env["models"] / "20260101-000000-custom_cnn-abcd"
    run.mkdir(parents=True)
    (run / MODEL_FILE).write_bytes(b"")
    (run / CARD_FILE).write_text(
        json.dumps(
            {
                "status": "complete",
                "class_names": ["glioma", "meningioma", "notumor", "pituitary"],
                "arch": "custom_cnn",
                "created": "2026-01-01T00:00:00",
                "image_size": 128,  # a complete card: an unusable run is listed by name and problem only
                "results": {"val_accuracy": 0.875},
                "data": {"name": "Demo phantoms", "synthetic": True, "split_mode": "leakage_free"},
            }
        )
    )
    at = app("Home.py").run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert list(table["model"]) == [run.name]
    assert table["val accuracy"].iloc[0] == pytest.approx(0.875)  # a share; the column shows it as a percentage


@pytest.mark.parametrize("page", ["pages/1_Dataset_Explorer.py", "pages/2_Augmentation_Preview.py"])
def test_data_pages_open_from_the_navigation(page):
    at = app("Home.py").run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.title


def test_home_does_not_import_tensorflow():
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        "at = AppTest.from_file('Home.py', default_timeout=60).run(); "
        "assert not at.exception, at.exception; "
        "assert 'tensorflow' not in sys.modules, 'Home imported TensorFlow'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, capture_output=True)


# --- Dataset Explorer -------------------------------------------------------------------------

SECTIONS = ["Class balance", "Samples", "Classes", "Data quality", "Tumour types"]


def test_explorer_draws_every_section():
    at = app("pages/1_Dataset_Explorer.py").run()
    assert not at.exception
    for section in SECTIONS:
        at.segmented_control(key="explorer_section").set_value(section).run()
        assert not at.exception, section
        assert not at.error, section


def test_explorer_reports_the_planted_leak_and_switches_the_split():
    at = app("pages/1_Dataset_Explorer.py").run()
    at.radio(key="explorer_split_widget").set_value("dataset").run()
    at.segmented_control(key="explorer_section").set_value("Data quality").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"{PLANTED_NEAR} of 83 test images have a near-twin in training" in text
    assert at.session_state["split_mode"] == "dataset"
    # Issue 14, item 17: one control (the radio; the contradicting toggle is gone), and the re-split says
    # how many of the Testing folder's images moved.
    assert not [t for t in at.toggle if t.key == "explorer_leakfree_widget"]
    at.radio(key="explorer_split_widget").set_value("leakage_free").run()
    assert at.session_state["split_mode"] == "leakage_free"
    assert any("re-splits this dataset, Testing folder included" in c and "of the 83 Testing images moved" in c
               for c in captions(at))


def test_explorer_samples_reshuffle_and_large_view():
    at = app("pages/1_Dataset_Explorer.py").run()
    at.segmented_control(key="explorer_section").set_value("Samples").run()
    first = [c for img in at.image for c in img.captions]
    at.button(key="explorer_reshuffle").click().run()
    assert not at.exception
    assert at.session_state["explorer_seed"] == 1
    assert [c for img in at.image for c in img.captions] != first
    assert any("format" in str(df.value.index.tolist()) for df in at.dataframe)  # the details table


def test_explorer_refuses_a_folder_outside_the_data_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path / "allowed"))
    at = app("pages/1_Dataset_Explorer.py").run()
    at.radio(key="explorer_source").set_value("folder").run()
    at.text_input(key="explorer_folder").input("/etc").run()
    at.button(key="explorer_open_folder").click().run()
    assert not at.exception
    assert "outside the allowed data folders" in at.error[0].value


def test_explorer_opens_a_folder_for_every_page(kaggle_tree, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(kaggle_tree.parent))
    at = app("Home.py").run()
    at.switch_page("pages/1_Dataset_Explorer.py").run()
    at.radio(key="explorer_source").set_value("folder").run()
    at.text_input(key="explorer_folder").input(str(kaggle_tree)).run()
    at.button(key="explorer_open_folder").click().run()
    assert not at.exception and not at.error
    assert any("**kaggle**" in c and "SYNTHETIC" not in c for c in captions(at))
    at.switch_page("pages/2_Augmentation_Preview.py").run()  # the choice is shared
    assert any("**kaggle**" in c for c in captions(at))


def zip_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def test_explorer_opens_an_uploaded_zip(kaggle_tree):
    at = app("pages/1_Dataset_Explorer.py").run()
    at.radio(key="explorer_source").set_value("zip").run()
    at.file_uploader(key="explorer_zip").upload("scans.zip", zip_bytes(kaggle_tree), "application/zip").run()
    at.button(key="explorer_open_zip").click().run()
    assert not at.exception and not at.error
    assert at.session_state["active_dataset"].kind == "zip"
    assert any("**scans**" in c for c in captions(at))


def test_explorer_shows_a_bad_zip_as_an_error():
    at = app("pages/1_Dataset_Explorer.py").run()
    at.radio(key="explorer_source").set_value("zip").run()
    at.file_uploader(key="explorer_zip").upload("broken.zip", b"not a zip at all", "application/zip").run()
    at.button(key="explorer_open_zip").click().run()
    assert not at.exception
    assert "not a valid zip" in at.error[0].value
    assert at.session_state["active_dataset"].synthetic  # the demo stays active


# --- Augmentation Preview ---------------------------------------------------------------------


def variant_fingerprint(at: AppTest) -> str:
    (line,) = [c for c in captions(at) if "pixel checksum" in c]  # was "fingerprint" (issue 14: no jargon)
    return line.rsplit("pixel checksum ", 1)[1].split()[0]


def test_augmentation_has_a_control_for_every_config_field():
    at = app("pages/2_Augmentation_Preview.py").run()
    assert not at.exception
    keys = {w.key for w in [*at.slider, *at.toggle]}
    assert keys == {f"aug_{f.name}" for f in dataclasses.fields(AugmentConfig)}


def test_augmentation_slider_redraws_the_variants():
    at = app("pages/2_Augmentation_Preview.py").run()
    before = variant_fingerprint(at)
    at.slider(key="aug_rotation_deg").set_value(45.0).run()
    assert not at.exception
    assert variant_fingerprint(at) != before
    assert any("Rotations beyond" in w.value for w in at.warning)
    at.number_input(key="aug_seed").set_value(3).run()
    assert variant_fingerprint(at) != before


def test_augmentation_preset_and_use_for_training():
    at = app("pages/2_Augmentation_Preview.py").run()
    at.selectbox(key="aug_preset").set_value("none").run()
    assert at.slider(key="aug_rotation_deg").value == 0.0
    at.toggle(key="aug_vertical_flip").set_value(True).run()
    assert any("Vertical flip" in w.value for w in at.warning)
    at.button(key="aug_use").click().run()
    assert not at.exception
    assert at.session_state["augment_config"] == AugmentConfig(vertical_flip=True)
    assert at.success


def test_augmentation_compares_every_recipe_under_a_chosen_change():
    from core.data.preprocess import RECIPES

    at = app("pages/2_Augmentation_Preview.py").run()
    recipe_lines = lambda: [m.value for m in at.markdown if "the input changes by" in m.value]  # noqa: E731
    assert not recipe_lines()  # drawn only on request: every slider move reruns the page
    at.checkbox(key="aug_recipe_show").set_value(True).run()
    assert len(recipe_lines()) == len(RECIPES)
    assert all(f"**{recipe.title}**" in line for recipe, line in zip(RECIPES.values(), recipe_lines()))
    assert not any(f"`{key}`" in line or key in line for key in RECIPES for line in recipe_lines())  # no internal ids
    darker = recipe_lines()
    at.selectbox(key="aug_recipe_shift").set_value("noise").run()
    assert not at.exception
    assert recipe_lines() != darker  # the figures follow the chosen change
    assert any("rician noise" in c for img in at.image for c in img.captions)


def test_augmentation_shows_intensity_style_mixing_on_request():
    from core.classes import display_name
    from core.data.preprocess import WHOLE_FRAME_ID

    at = app("pages/2_Augmentation_Preview.py").run()
    partner_lines = lambda: [m.value for m in at.markdown if m.value.startswith("Partner:")]  # noqa: E731
    style_captions = lambda: [c for img in at.image for c in img.captions  # noqa: E731
                              if "restyled" in c or "partner" in c or "network input" in c]
    change = lambda: [m.value for m in at.markdown if "the network's input changes by" in m.value]  # noqa: E731
    assert not partner_lines() and not style_captions() and not change()  # drawn only on request
    assert at.button(key="aug_style_next").disabled
    images_before = len(at.image)

    at.checkbox(key="aug_style_show").set_value(True).run()
    assert not at.exception and not at.error
    own = display_name(at.selectbox(key="aug_class").value)
    (line,) = partner_lines()
    partner = line.split("**")[1]
    assert partner != own  # a slice of another class lends its intensities
    assert f"this slice ({own})" in [c for img in at.image for c in img.captions]
    assert style_captions() == [f"partner ({partner})", "this slice, restyled", "network input: as given",
                                "network input: partner", "network input: restyled"]
    assert len(at.image) == images_before + 2  # one row of raw slices, one of network inputs
    assert any("anatomy is unchanged" in c for c in captions(at))
    assert any(c.startswith("Why training does this") for c in captions(at))
    standardised = change()
    at.selectbox(key="aug_style_recipe").set_value(WHOLE_FRAME_ID).run()
    assert change() != standardised  # the figure follows the chosen recipe

    seen = {line}
    for _ in range(4):
        at.button(key="aug_style_next").click().run()
        assert not at.exception
        seen.add(partner_lines()[0])
    assert len(seen) > 1  # another partner on request
    at.checkbox(key="aug_style_show").set_value(False).run()
    assert not partner_lines() and not style_captions() and not change() and len(at.image) == images_before


def test_augmentation_previews_an_uploaded_image(pixels, encode_image):
    at = app("pages/2_Augmentation_Preview.py").run()
    at.radio(key="aug_source").set_value("upload").run()
    at.file_uploader(key="aug_upload").upload("slice.png", encode_image(pixels(4, size=64)), "image/png").run()
    assert not at.exception and not at.error
    assert any("as the network sees it" in c and "slice" in c for img in at.image for c in img.captions)
    assert variant_fingerprint(at)


def test_augmentation_shows_an_undecodable_upload_as_an_error():
    at = app("pages/2_Augmentation_Preview.py").run()
    at.radio(key="aug_source").set_value("upload").run()
    at.file_uploader(key="aug_upload").upload("slice.png", b"garbage bytes", "image/png").run()
    assert not at.exception
    assert "slice.png" in re.sub(r"\\(.)", r"\1", at.error[0].value)  # as shown: escaped marks are literal


# --- Real data (skipped without ../shared/data) -----------------------------------------------


@pytest.mark.realdata
@pytest.mark.slow
def test_explorer_on_the_real_dataset(real_data_dir, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(real_data_dir))
    st.cache_data.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "pages/1_Dataset_Explorer.py"), default_timeout=600).run()
    assert not at.exception
    assert not any("SYNTHETIC" in c for c in captions(at))
    for section in SECTIONS:
        at.segmented_control(key="explorer_section").set_value(section).run()
        assert not at.exception, section

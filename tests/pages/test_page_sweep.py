"""Issue 14 sweep: every page, with the demo data, a trained tiny model, an evaluation and a
prediction, shows no internal identifier in the text a person reads.

Read: titles, headers, markdown, captions, alerts, metric labels, widget labels and the options
as shown (after format_func), table headers and text cells, image captions and progress texts.
Not read: code blocks (the exact configuration and the log are there on purpose, for the
curious), and the model run ids, which are names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.data.demo import DEMO_VERSION

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180
#: Internal identifiers and jargon that must never reach a reader.
BANNED = ["notumor", "near_group", "exact_group", "rotation_deg", "horizontal_flip", "vertical_flip",
          "leakage_free", "val_accuracy", "macro_f1", "source_split", "phash", "mahalanobis", "energy",
          "fingerprint"]
PATTERN = re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, BANNED)) + r")(?![A-Za-z])", re.IGNORECASE)
EXPLORER_SECTIONS = ["Class balance", "Samples", "Classes", "Style shortcut", "Data quality", "Tumour types"]


@pytest.fixture
def world(isolated_workbench_dirs: dict, demo_root: Path, tiny_run, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The demo as the active dataset and a copy of the tiny run, evaluated on its held-out split."""
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run
    from core.models.runs import resolve_run

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache, models = isolated_workbench_dirs["cache"], isolated_workbench_dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    run = resolve_run(tiny_run.run_id)
    evaluate_run(run, EvalSet("card_test"))
    return {"run": run, "demo": demo_root}


def _frame_text(df: pd.DataFrame) -> list[str]:
    out = [str(c) for c in df.columns] + [str(i) for i in df.index if not isinstance(i, (int, np.integer))]
    out += [str(n) for n in (*df.index.names, *df.columns.names) if n is not None]  # header corners
    for col in df.columns:
        if df[col].dtype == object:
            out += [str(v) for v in df[col].tolist()]
    return out


def visible_text(at: AppTest) -> list[str]:
    """Every string the page shows a reader (see the module docstring for what is left out)."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success",
                 "toast"):
        out += [str(e.value) for e in at.get(kind)]
    for m in at.metric:
        out += [str(m.label), str(m.value)]
    for kind in ("button", "checkbox", "toggle", "number_input", "text_input", "slider", "select_slider",
                 "color_picker", "date_input", "file_uploader"):
        out += [str(getattr(w, "label", "")) for w in at.get(kind)]
    for kind in ("selectbox", "multiselect", "radio", "segmented_control"):
        for w in at.get(kind):
            out.append(str(w.label))
            out += [str(o) for o in getattr(w, "options", [])]
    out += [e.label for e in at.expander]
    out += [str(p.proto.text) for p in at.get("progress")]
    for img in at.get("imgs"):
        out += [str(i.caption) for i in getattr(img.proto, "imgs", [])]
    for frame in at.dataframe:
        out += _frame_text(frame.value)
    for table in at.table:
        out += _frame_text(table.value)
    return out


#: File names and paths are the user's own data (a folder may be called notumor/), not our words.
FILE_NAMES = re.compile(r"\S*/\S*|\S+\.(?:png|jpe?g|bmp|tiff?|dcm)\b", re.IGNORECASE)


def leaks(at: AppTest, run_id: str) -> list[str]:
    found = []
    for text in visible_text(at):
        for match in PATTERN.finditer(FILE_NAMES.sub("", text.replace(run_id, ""))):
            found.append(f"{match.group(0)!r} in {text[:160]!r}")
    return sorted(set(found))


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(PROJECT_ROOT / "pages" / name), default_timeout=TIMEOUT)


def _render_explorer() -> list[AppTest]:
    shown = []
    for section in EXPLORER_SECTIONS:
        at = _page("1_Dataset_Explorer.py").run()
        at.segmented_control(key="explorer_section").set_value(section).run()
        shown.append(at)
    quality = shown[EXPLORER_SECTIONS.index("Data quality")]
    quality.radio(key="explorer_dup_kind").set_value("exact_group").run()
    return shown


def _render_train(world) -> list[AppTest]:
    import core.jobs as jobs
    from core.jobs import JobRegistry

    registry = JobRegistry()
    jobs._REGISTRY = registry
    import streamlit as st

    st.cache_resource.clear()
    registry.wait(registry.submit("train", "finished", lambda job: world["run"]), 10)
    return [_page("3_Train.py").run()]


def _render_predict(world) -> list[AppTest]:
    good = sorted((world["demo"] / "Testing" / "glioma").glob("*.png"))[0]
    at = _page("5_Predict_and_Explain.py").run()
    at.file_uploader(key="predict_uploads").set_value([(good.name, good.read_bytes(), "image/png")])
    return [at.run()]


PAGES = {
    "Home": lambda world: [_page("0_Overview.py").run()],
    "Dataset Explorer": lambda world: _render_explorer(),
    "Augmentation Preview": lambda world: [_page("2_Augmentation_Preview.py").run()],
    "Train": _render_train,
    "Evaluate": lambda world: [_page("4_Evaluate.py").run()],
    "Predict & Explain": _render_predict,
}


@pytest.mark.parametrize("page", list(PAGES))
def test_no_internal_identifier_is_shown(world, page: str) -> None:
    import core.jobs as jobs

    saved = jobs._REGISTRY
    try:
        rendered = PAGES[page](world)
    finally:
        jobs._REGISTRY = saved
    for at in rendered:
        assert not at.exception, at.exception
        assert visible_text(at), "the sweep read no text: the page did not render"
        assert not leaks(at, world["run"].run_id), leaks(at, world["run"].run_id)


def test_training_history_table_has_readable_headers() -> None:
    from core.reports.train_charts import history_table

    table = history_table([{"epoch": 1, "phase": "train", "loss": 1.2, "accuracy": 0.3, "val_loss": 1.3,
                            "val_accuracy": 0.25, "lr": 1e-3, "seconds": 4.0}])
    assert not [c for c in table.columns if PATTERN.search(c) or "_" in c]
    assert "validation accuracy (%)" in table.columns

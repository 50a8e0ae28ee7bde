"""One malformed card.json must not take a page down (issue 13, defect 5).

The registry holds the tiny run plus copies whose card is damaged in different ways (and newer,
so they would come first). Train, Evaluate and Predict open without an exception and offer only
the usable run; Home lists every run, the damaged ones as unusable with the reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.data.demo import DEMO_VERSION
from core.models.runs import CARD_FILE

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180

#: name -> how the copied card is damaged
DAMAGE = {
    "zz-results-list": lambda card: card.update(results=[1, 2]),
    "zz-no-image-size": lambda card: card.pop("image_size"),
    "zz-negative-temperature": lambda card: card["results"].update(temperature=-0.5),
    "zz-data-text": lambda card: card.update(data="somewhere"),
}


@pytest.fixture
def registry(tiny_run, isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache, models = isolated_workbench_dirs["cache"], isolated_workbench_dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    for name, damage in DAMAGE.items():
        shutil.copytree(tiny_run.path, models / name)
        card = json.loads((models / name / CARD_FILE).read_text())
        card["created"] = "2099-01-01T00:00:00"  # newest: it would be listed first
        damage(card)
        (models / name / CARD_FILE).write_text(json.dumps(card))
    st.cache_resource.clear()
    yield tiny_run.run_id
    st.cache_resource.clear()


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PROJECT_ROOT / "pages" / name), default_timeout=TIMEOUT)


def test_predict_page_offers_only_the_usable_run(registry):
    at = page("5_Predict_and_Explain.py").run()
    assert not at.exception, at.exception
    model = at.selectbox(key="predict_model")
    assert model.value == registry and len(model.options) == 1


def test_evaluate_page_offers_only_the_usable_run(registry):
    at = page("4_Evaluate.py").run()
    assert not at.exception, at.exception
    chosen = at.multiselect(key="evaluate_runs")
    assert chosen.value == [registry] and len(chosen.options) == 1


def test_train_page_lists_the_usable_run(registry):
    at = page("3_Train.py").run()
    assert not at.exception, at.exception
    tables = [df.value for df in at.dataframe]
    assert any("model" in t and list(t["model"]) == [registry] for t in tables), tables


def test_home_lists_every_run_and_says_which_are_unusable(registry):
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value.set_index("model")
    assert set(table.index) == {registry, *DAMAGE}
    assert table.loc[registry, "status"] == "ok"
    assert "'results' must be an object" in table.loc["zz-results-list", "status"]
    assert "'image_size'" in table.loc["zz-no-image-size", "status"]
    assert "'results.temperature'" in table.loc["zz-negative-temperature", "status"]
    assert all(table.loc[name, "status"].startswith("unusable: ") for name in DAMAGE)

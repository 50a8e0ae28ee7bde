"""The adaptation mode of the Train page (AppTest): a tiny model adapted to a re-styled demo site,
from the form to the before/after table; and a refused site shows its message, not a traceback."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core.jobs as jobs
from core.data.demo import DEMO_VERSION
from core.jobs import FINISHED, JobRegistry

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = str(PROJECT_ROOT / "pages" / "3_Train.py")


@pytest.fixture
def env(isolated_workbench_dirs, demo_root, tiny_run, tmp_path, monkeypatch):
    from test_site import make_site

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache, models = isolated_workbench_dirs["cache"], isolated_workbench_dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path))
    registry = JobRegistry()
    monkeypatch.setattr(jobs, "_REGISTRY", registry)
    st.cache_resource.clear()
    site = make_site(demo_root, tmp_path / "site")
    yield registry, site, models
    for job in registry.jobs():
        job.cancel()
        registry.wait(job, 60)
    st.cache_resource.clear()


def _adapt_mode(at: AppTest) -> AppTest:
    at.run()
    at.radio(key="train_what").set_value("Adapt an existing model to your images").run()
    assert not at.exception
    return at


def test_adapt_mode_runs_a_job_and_shows_the_before_after_table(env):
    registry, site, models = env
    at = _adapt_mode(AppTest.from_file(PAGE, default_timeout=120))
    at.text_input(key="adapt_folder").set_value(str(site))
    at.number_input(key="adapt_epochs").set_value(1).run()
    at.button(key="adapt_start").click().run()
    assert not at.exception
    job = registry.jobs("adapt")[0]
    registry.wait(job, 600)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception
    assert any("adapted to site from" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table.columns) == ["images", "original model", "adapted model"] and len(table) == 2
    assert len([p for p in models.iterdir() if not p.name.startswith(".")]) == 2


def test_adapt_mode_shows_a_refusal_as_a_message(env, tmp_path):
    registry, site, models = env
    one = tmp_path / "one"
    shutil.copytree(site / "glioma", one / "glioma")
    at = _adapt_mode(AppTest.from_file(PAGE, default_timeout=120))
    at.text_input(key="adapt_folder").set_value(str(one)).run()
    at.button(key="adapt_start").click().run()
    job = registry.jobs("adapt")[0]
    registry.wait(job, 300)
    deadline = time.time() + 5
    while job.status not in FINISHED and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception
    assert any("at least 2 classes" in e.value for e in at.error)
    assert [p.name for p in models.iterdir()] == [next(models.iterdir()).name]

"""The Train page (AppTest): a tiny run from Start to summary, and every job outcome it shows.

Each test gets a fresh process-wide job registry (the page keeps it in st.cache_resource),
the demo in its cache folder and an empty models folder.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import fixtures_training as ft
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core.jobs as jobs
from core.data.demo import DEMO_VERSION
from core.errors import WorkbenchError
from core.jobs import DONE, FINISHED, JobCancelled, JobRegistry

recorded_run, registry_with_run = ft.recorded_run, ft.registry_with_run  # fixtures
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = str(PROJECT_ROOT / "pages" / "3_Train.py")
TIMEOUT = 120  # the first run imports TensorFlow


@pytest.fixture(autouse=True)
def page_env(isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> JobRegistry:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # the page imports `pages._shared` and `core`
    monkeypatch.setenv("KERAS_HOME", str(isolated_workbench_dirs["cache"] / "keras"))
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    registry = JobRegistry()
    monkeypatch.setattr(jobs, "_REGISTRY", registry)
    st.cache_resource.clear()  # the page's cached registry, and datasets of other tests' folders
    yield registry
    for job in registry.jobs():
        job.cancel()
        registry.wait(job, 60)
    st.cache_resource.clear()


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def hold(registry: JobRegistry, title: str = "held job"):
    """A running 'train' job that waits until released or cancelled (no TensorFlow)."""
    release = threading.Event()

    def work(job):
        job.update(phase="Training", epoch=1, epochs=3, batch=2, batches=5, progress=0.3, eta_s=42.0)
        while not release.wait(0.02):
            job.check_cancelled()
        return None

    return registry.submit("train", title, work), release


@pytest.mark.slow
def test_tiny_training_from_start_to_summary(page_env):
    at = page().run()
    assert not at.exception
    assert list(at.dataframe[0].value.index) == ["train", "val", "test"]  # the split counts
    assert "No trained models yet" in texts(at.caption)
    at.selectbox(key="train_arch").set_value("custom_cnn").run()
    at.number_input(key="train_size_custom_cnn").set_value(32)
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch").set_value(16)
    at.select_slider(key="train_width").set_value(0.25)
    at.number_input(key="train_max_batches").set_value(2)
    at.run()
    assert '"image_size": 32' in texts(at.code)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not at.success:
        time.sleep(1.0)
        at.run()
    assert not at.exception
    summary = re.sub(r"\\(.)", r"\1", texts(at.success))  # as shown: escaped Markdown marks are literal
    assert "Finished: validation accuracy" in summary and "Saved as model run" in summary
    (job,) = page_env.jobs("train")
    assert job.status == DONE and job.result.run_id in summary
    assert str(job.result.path) not in summary  # a browser user gets the run id, not the server's folder
    assert job.result.card.train_config["width"] == 0.25
    past = at.dataframe[-1].value
    assert list(past["model"]) == [job.result.run_id] and 0 <= past["val accuracy"][0] <= 1
    assert at.button(key="train_to_eval")


def test_running_job_is_reattached_and_a_second_start_is_refused(page_env):
    job, release = hold(page_env)
    try:
        at = page().run()
        assert not at.exception
        assert "held job" in texts(at.subheader)
        assert "epoch 1/3 · batch 2/5" in at.get("progress")[0].proto.text
        # Issue 14, item 15: Start is disabled during a run (the registry would refuse it: test_jobs).
        assert at.button(key="train_start").disabled
        assert "a training job is running" in texts(at.caption)
        at.button(key="train_cancel").click().run()
        page_env.wait(job, 10)
        assert job.status == "cancelled"
        at.run()
        assert "nothing was saved" in texts(at.warning)
    finally:
        release.set()


def test_failed_job_shows_the_message_and_the_traceback_apart(page_env):
    def work(job):
        raise WorkbenchError("the split left no training images; the dataset is too small", "tiny")

    job = page_env.submit("train", "doomed", work)
    page_env.wait(job, 10)
    at = page().run()
    assert not at.exception
    shown = re.sub(r"\\(.)", r"\1", texts(at.error))  # as the reader sees it: escaped Markdown marks are literal
    assert "Training failed: tiny: the split left no training images" in shown
    assert "Traceback" not in texts(at.error)
    (details,) = [e for e in at.expander if e.label == "Technical details"]
    assert "Traceback" in texts(details.code) and "WorkbenchError" in texts(details.code)


@pytest.mark.slow
def test_finished_job_leads_to_the_evaluate_page(page_env, registry_with_run, monkeypatch):
    page_env.wait(page_env.submit("train", "finished earlier", lambda job: registry_with_run), 10)
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/3_Train.py").run()  # through st.navigation, as in the app
    assert not at.exception and registry_with_run.run_id in re.sub(r"\\(.)", r"\1", texts(at.success))
    import core.inference.ensemble_predict  # noqa: F401 - imported first here, a module that binds best_run
    import core.inference.predict  # noqa: F401 - at import would keep the stub below after this test
    import core.models.runs as registry_module

    def not_the_best(_runs):  # issue 24: the run just trained is opened, whichever run is "best"
        raise AssertionError("Evaluate fell back to the best run instead of the one just trained")

    monkeypatch.setattr(registry_module, "best_run", not_the_best)
    at.button(key="train_to_eval").click().run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Evaluate"]
    assert at.multiselect(key="evaluate_runs").value == [registry_with_run.run_id]


def test_cancelled_job_says_nothing_was_saved(page_env):
    def work(job):
        raise JobCancelled()

    page_env.wait(page_env.submit("train", "stopped", work), 10)
    at = page().run()
    assert not at.exception and "nothing was saved" in texts(at.warning)


@pytest.mark.slow
def test_past_runs_table_lists_saved_models(page_env, registry_with_run):
    at = page().run()
    assert not at.exception
    past = at.dataframe[-1].value
    assert list(past["model"]) == [registry_with_run.run_id]
    for column in ("val accuracy", "macro-F1", "ECE", "train time (s)", "size (MB)"):
        assert column in past and past[column].notna().all(), column


def test_transfer_model_shows_weight_status_and_where_to_put_the_file(page_env, monkeypatch):
    import core.models.weights as weights
    from core.models.architectures import ARCHITECTURES

    monkeypatch.setattr(weights, "download_reachable", lambda timeout=1.5: False)
    transfer = next(k for k, s in ARCHITECTURES.items() if s.transfer)
    at = page().run()
    at.selectbox(key="train_arch").set_value(transfer).run()
    assert not at.exception
    spec = ARCHITECTURES[transfer]
    assert "ImageNet weights unreachable" in texts(at.warning)
    assert str(weights.keras_cache_dir() / spec.weights_file) in texts(at.code)
    assert at.number_input(key="train_ft_epochs") and at.radio(key=f"train_weights_{transfer}")
    assert not [s for s in at.select_slider if s.key == "train_width"]  # width is for the custom CNN


def test_augmentation_preset_can_be_changed_on_the_page(page_env):
    from core.config import AUGMENT_PRESETS
    from core.training.preset_notes import PRESET_NOTES

    at = page().run()
    # The default is the shipped model's preset (issue 24), said in words with its one-line description.
    assert at.selectbox(key="train_aug_preset").value == "generalise"
    assert "rotation up to ±15°" in texts(at.caption) and PRESET_NOTES["generalise"] in texts(at.caption)
    assert "rotation_deg" not in texts(at.caption)  # issue 14, item 11: no raw field names
    at.selectbox(key="train_aug_preset").set_value("none").run()
    assert at.session_state["augment_config"] == AUGMENT_PRESETS["none"]
    assert "no augmentation" in texts(at.caption) and PRESET_NOTES["none"] in texts(at.caption)
    assert all(j.status in FINISHED for j in page_env.jobs())


def test_fast_recipe_replaces_the_settings_and_keeps_seed_batch_cap_and_style_mixing(page_env):
    import json

    from core.training.presets import preset_config

    at = page().run()
    recipe = at.radio(key="train_recipe")
    assert "Fast (about 10 minutes)" in recipe.options  # the labels people see
    at.number_input(key="train_seed").set_value(5)
    at.number_input(key="train_max_batches").set_value(2)
    at.slider(key="train_style_mix").set_value(0.5)
    recipe.set_value("fast").run()
    assert not at.exception and not at.error
    shown = json.loads(next(c.value for c in at.code if '"small_epochs"' in c.value))
    assert shown == preset_config("fast", seed=5, max_train_batches=2, style_mix=0.5).to_dict()
    at.radio(key="train_recipe").set_value("custom").run()
    shown = json.loads(next(c.value for c in at.code if '"small_epochs"' in c.value))
    assert shown["image_size"] == 128 and shown["epochs"] != preset_config("fast").epochs  # the page's own settings
    assert shown["style_mix"] == 0.5


def test_the_folders_own_split_is_offered_only_when_it_has_a_test_folder(page_env, demo_root, tmp_path, monkeypatch):
    at = page().run()  # the demo has Testing/: both choices
    assert not at.exception and at.radio(key="train_split_mode").options == [
        "Near-duplicates kept together (recommended)", "The folder's own Training/Testing split (may leak "
        "near-duplicates)"]
    flat = tmp_path / "flat"
    shutil.copytree(demo_root, flat, ignore=shutil.ignore_patterns("Testing"))
    for class_dir in (flat / "Training").iterdir():
        class_dir.rename(flat / class_dir.name)
    (flat / "Training").rmdir()
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(flat))
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path))
    st.cache_resource.clear()
    at = page().run()
    assert not at.exception, at.exception
    assert at.radio(key="train_split_mode").options == ["Near-duplicates kept together (recommended)"]

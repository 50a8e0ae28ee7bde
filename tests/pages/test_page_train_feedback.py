"""Issue 14, items 7–10 and 15 on the Train page (AppTest): what a person sees while and after a run.

"Cancelling…" at once, a phase text before the first batch, no time estimate before measured
batches, a verdict after the run, settings kept in the address and a running job's own settings.
"""

from __future__ import annotations

import threading

import fixtures_training as ft
import pytest
import test_page_train as tpt

from core.jobs import JobRegistry
from core.training.train_feedback import PHASE_COMPILING

recorded_run, registry_with_run = ft.recorded_run, ft.registry_with_run  # fixtures
page_env = tpt.page_env  # autouse: a fresh job registry, the demo and an empty models folder
hold, page, texts = tpt.hold, tpt.page, tpt.texts


def _stubborn(registry: JobRegistry, **state):
    """A running train job that ignores a cancel until released (a long step in flight)."""
    release = threading.Event()

    def work(job):
        job.update(**state)
        release.wait(30)
        job.check_cancelled()

    return registry.submit("train", "stubborn job", work), release


def test_cancel_says_cancelling_at_once(page_env: JobRegistry) -> None:
    job, release = _stubborn(page_env, phase="Training", epoch=1, epochs=3, batch=2, batches=5, eta_s=9.0)
    try:
        at = page().run()
        at.button(key="train_cancel").click().run()
        assert not at.exception
        assert at.get("progress")[0].proto.text.startswith("Cancelling…")
        assert at.button(key="train_cancel").disabled and at.button(key="train_cancel").label == "Cancelling…"
    finally:
        release.set()
        page_env.wait(job, 10)
    assert job.status == "cancelled"


def test_first_batch_shows_a_phase_and_no_estimate(page_env: JobRegistry) -> None:
    job, release = _stubborn(page_env, phase=PHASE_COMPILING, epoch=1, epochs=3, batch=0, batches=9)
    try:
        text = page().run().get("progress")[0].proto.text
        assert text.startswith("Preparing: compiling the model") and "usually under a minute" in text
        assert "batch 0/9" not in text and "left" not in text
        job.update(batch=1, phase="train", eta_s=None)
        text = page().run().get("progress")[0].proto.text
        assert "batch 1/9" in text and "estimating the time left" in text
    finally:
        release.set()
        page_env.wait(job, 10)


def test_start_is_disabled_while_a_job_runs_and_its_settings_show(page_env: JobRegistry) -> None:
    from core.training.config import TrainConfig
    from core.training.train_feedback import TrainSettings

    job, release = hold(page_env)
    job.update(settings=TrainSettings(TrainConfig(arch="custom_cnn", epochs=7), "Demo phantoms"))
    try:
        at = page().run()
        assert at.button(key="train_start").disabled
        (box,) = [e for e in at.expander if e.label == "This job's settings (read-only)"]
        table = box.dataframe[0].value.set_index("setting")["value"]
        assert table["Epochs (at most)"] == "7" and table["Dataset"] == "Demo phantoms"
        assert "rotation up to ±10°" in table["Augmentation"]
    finally:
        release.set()
        page_env.wait(job, 10)


@pytest.mark.slow
def test_finished_run_gets_a_plain_verdict(page_env: JobRegistry, registry_with_run) -> None:
    page_env.wait(page_env.submit("train", "finished", lambda job: registry_with_run), 10)
    at = page().run()
    assert not at.exception
    words = texts(at.warning) + texts(at.info) + texts(at.success)
    k = len(registry_with_run.class_names)
    assert f"guessing among {k} classes would score about {1 / k:.0%}" in words
    assert any(s in words for s in ("learned nothing useful", "not enough to rely on", "A good validation score"))


def test_settings_and_dataset_survive_a_refresh(page_env: JobRegistry) -> None:
    at = page().run()
    at.number_input(key="train_epochs").set_value(7)
    at.number_input(key="train_batch").set_value(8)
    at.selectbox(key="train_aug_preset").set_value("light")
    at.radio(key="train_split_mode").set_value("dataset")
    at.run()
    assert not at.exception
    url = dict(at.query_params)
    assert url["dataset"] == ["demo"] or url["dataset"] == "demo"
    # A refresh: a new session with the same address.
    again = page()
    for key, value in url.items():
        again.query_params[key] = value[0] if isinstance(value, list) else value
    again.run()
    assert not again.exception
    assert again.number_input(key="train_epochs").value == 7
    assert again.number_input(key="train_batch").value == 8
    assert again.selectbox(key="train_aug_preset").value == "light"
    assert again.radio(key="train_split_mode").value == "dataset"


def test_a_hand_edited_address_is_ignored(page_env: JobRegistry) -> None:
    at = page()
    at.query_params.update({"train_epochs": "99999", "train_arch": "nonsense", "dataset": "/etc"})
    at.run()
    assert not at.exception
    assert at.number_input(key="train_epochs").value == 20  # the default, not an out-of-range value
    assert "could not be opened" in texts(at.warning)

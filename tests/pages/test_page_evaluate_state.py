"""Issue 14, items 13 and 14 on the Evaluate page (AppTest): no stale state, honest cautions.

The picked confusion-matrix cell belongs to one model and set; the stress test runs in the
background with progress and Cancel; scoring a model on the other kind of data (synthetic demo
vs real scans) carries a caution.
"""

from __future__ import annotations

import threading

import pytest
import test_page_evaluate as tpe
from streamlit.testing.v1 import AppTest

from core.evaluation.eval_sets import EvalSet, data_kind_warning
from core.evaluation.evaluate import evaluate_run
from core.models.card import ModelCard

pytestmark = pytest.mark.slow
app_env = tpe.app_env  # autouse: the demo as the active dataset, empty models folder
add_run, texts, PAGE, TIMEOUT = tpe.add_run, tpe.texts, tpe.PAGE, tpe.TIMEOUT


def test_data_kind_warning_both_ways() -> None:
    real, demo = ModelCard(data={"synthetic": False}), ModelCard(data={"synthetic": True})
    assert "synthetic demo" in data_kind_warning(real, eval_synthetic=True)
    assert "never seen a real image" in data_kind_warning(demo, eval_synthetic=False)
    assert data_kind_warning(real, False) is None and data_kind_warning(demo, True) is None
    assert data_kind_warning(ModelCard(), True) is None  # an older card that does not say


def test_picked_cell_resets_when_the_model_changes(tiny_run, app_env) -> None:
    runs = [add_run(tiny_run, app_env["models"], name) for name in ("20990101-000000-custom_cnn-aaaa",
                                                                     "20990101-000001-custom_cnn-bbbb")]
    for run in runs:
        evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.multiselect(key="evaluate_runs").set_value([r.run_id for r in runs]).run()
    at.selectbox(key="evaluate_detail").set_value(runs[0].run_id).run()
    default = (at.selectbox(key="evaluate_true").value, at.selectbox(key="evaluate_pred").value)
    names = runs[0].class_names
    picked = next((t, p) for t in names for p in names if (t, p) != default)
    at.selectbox(key="evaluate_true").set_value(picked[0])
    at.selectbox(key="evaluate_pred").set_value(picked[1]).run()
    assert (at.selectbox(key="evaluate_true").value, at.selectbox(key="evaluate_pred").value) == picked
    at.selectbox(key="evaluate_detail").set_value(runs[1].run_id).run()  # another model: the pick is gone
    assert not at.exception
    assert (at.selectbox(key="evaluate_true").value, at.selectbox(key="evaluate_pred").value) == default


def test_stress_test_shows_progress_and_can_be_cancelled(tiny_run, app_env, monkeypatch) -> None:
    import pages._evaluate_sections as sections

    run = add_run(tiny_run, app_env["models"])
    evaluate_run(run, EvalSet("card_test"))
    release = threading.Event()

    def slow(run, eval_set, job=None, use_cache=True):
        job.update(phase="Predicting shifted images 1/12", progress=0.1)
        while not release.wait(0.02):
            job.check_cancelled()

    monkeypatch.setattr(sections, "evaluate_robustness", slow)  # the name the section calls
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    try:
        at.button(key="evaluate_robustness").click().run()
        assert not at.exception
        bars = [b.proto.text for b in at.get("progress")]
        assert any("shifted images" in t or "Starting the stress test" in t for t in bars), bars
        at.button(key="evaluate_robustness_cancel").click().run()
        assert not at.exception
        for _ in range(20):
            if any("cancelled" in t for t in texts(at.caption)):
                break
            at.run()
        assert any("The stress test was cancelled" in t for t in texts(at.caption))
        assert at.button(key="evaluate_robustness")  # it can be started again
    finally:
        release.set()


def test_real_data_model_on_the_demo_gets_a_caution(tiny_run, app_env) -> None:
    from core.models.runs import update_card

    run = add_run(tiny_run, app_env["models"])
    run = update_card(run, data={**run.card.data, "synthetic": False})  # as if trained on real scans
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="evaluate_kind").set_value("dataset_test").run()
    at.button(key="evaluate_start").click().run()
    tpe.wait_for_results(at)
    assert any("synthetic demo" in t for t in texts(at.warning))

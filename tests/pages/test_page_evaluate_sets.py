"""The Evaluate page's prediction-set controls (AppTest): what the sets were fitted on, a background
fit on more images through to the new sets, and plain errors (no data folder, a failed fit)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import test_page_evaluate as tpe
from streamlit.testing.v1 import AppTest

from core.errors import WorkbenchError
from core.evaluation.eval_sets import EvalSet
from core.evaluation.evaluate import evaluate_run

pytestmark = pytest.mark.slow
app_env = tpe.app_env  # autouse: the demo as the active dataset, empty models folder
add_run, texts, PAGE, TIMEOUT = tpe.add_run, tpe.texts, tpe.PAGE, tpe.TIMEOUT


def quick_fold(part, images, cfg, spec, n_classes, log, job):
    """Stands in for training a fold model: made-up calibrated probabilities at once."""
    job.check_cancelled()
    rng = np.random.default_rng(len(images))
    return rng.dirichlet(np.ones(n_classes), size=len(images)), 1.0


def evaluated_page(tiny_run, app_env) -> tuple[AppTest, object]:
    run = add_run(tiny_run, app_env["models"])
    evaluate_run(run, EvalSet("card_test"))
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run(), run


def poll_until(at: AppTest, done, polls: int = 60) -> AppTest:
    for _ in range(polls):
        if at.exception or done(at):
            return at
        time.sleep(0.5)
        at.run()
    pytest.fail(f"the fit did not finish; errors: {texts(at.error)}")


def test_sets_are_fitted_on_more_images_from_the_page(tiny_run, app_env, monkeypatch):
    import core.training.out_of_fold as oof_module
    from core.models.runs import resolve_run

    monkeypatch.setattr(oof_module, "_fold_probabilities", quick_fold)
    at, run = evaluated_page(tiny_run, app_env)
    assert not at.exception
    assert any("These sets were fitted on" in t and "validation images" in t for t in texts(at.caption))
    assert any("never used" in t and "does not change" in t for t in texts(at.markdown))
    assert any("trains 3 extra models" in t for t in texts(at.caption))  # the default: 3 folds, nothing stored

    at.slider(key="evaluate_sets_folds").set_value(2).run()
    assert any("trains 2 extra models" in t for t in texts(at.caption))
    at.button(key="evaluate_sets_start").click().run()
    poll_until(at, lambda a: any("fitted again" in t for t in texts(a.success)) or a.error)
    assert not at.exception and not at.error

    sets = resolve_run(run.run_id).card.results.conformal
    assert sets["out_of_fold"]["folds"] == 2 and sets["out_of_fold"]["reused"] is False
    assert any("out of fold by 2 models" in t for t in texts(at.caption))  # the page shows the new fit
    assert any("already stored" in t for t in texts(at.caption))  # a second fit would train nothing


def _precision_radio(at: AppTest):
    return [r for r in at.radio if str(r.key).startswith("evaluate_sets_precision")]


def test_the_precision_choice_starts_where_stored_scores_were_made(tiny_run, app_env, monkeypatch):
    import core.training.out_of_fold as oof_module
    import pages._evaluate_sets as sets_ui
    from core.models.runs import resolve_run

    monkeypatch.setattr(oof_module, "_fold_probabilities", quick_fold)
    monkeypatch.setattr(sets_ui, "stored_fold_precision", lambda run, folds: "bfloat16")
    at, run = evaluated_page(tiny_run, app_env)
    (radio,) = _precision_radio(at)
    assert radio.value == "bfloat16"  # reusing what is stored is the first choice, not training again
    at.button(key="evaluate_sets_start").click().run()
    poll_until(at, lambda a: any("fitted again" in t for t in texts(a.success)) or a.error)
    assert not at.exception and not at.error
    sets = resolve_run(run.run_id).card.results.conformal
    assert sets["out_of_fold"]["fold_settings_changed"] == {"precision": "bfloat16"}  # the fit used the choice
    assert "precision bfloat16" in sets["fitted_on"]


def test_no_precision_choice_without_native_bfloat16_or_stored_scores(tiny_run, app_env, monkeypatch):
    import core.training.hardware as hardware

    monkeypatch.setattr(hardware, "detect_hardware", lambda: hardware.Hardware((), 0))
    at, _ = evaluated_page(tiny_run, app_env)
    assert not at.exception and not _precision_radio(at)
    assert any("trains 3 extra models" in t for t in texts(at.caption))


def test_a_failed_fit_is_a_plain_error(tiny_run, app_env, monkeypatch):
    import core.training.out_of_fold as oof_module

    def broken(*args, **kwargs):
        raise WorkbenchError("the fold model could not be trained", "fold 1")

    monkeypatch.setattr(oof_module, "_fold_probabilities", broken)
    at, run = evaluated_page(tiny_run, app_env)
    before = (run.path / "card.json").read_text()
    at.button(key="evaluate_sets_start").click().run()
    poll_until(at, lambda a: bool(a.error))
    assert not at.exception
    assert any("could not be fitted on more images" in t and "could not be trained" in t for t in texts(at.error))
    assert not any("Traceback" in t for t in texts(at.error))
    assert (run.path / "card.json").read_text() == before  # the sets are unchanged


def test_without_sets_the_page_points_to_its_own_action_not_a_command(tiny_run, app_env):
    from core.inference.conformal import CONFORMAL_FILE, FIT_SETS_ACTION

    run = add_run(tiny_run, app_env["models"])
    (run.path / CONFORMAL_FILE).unlink()
    evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    said = [t for t in texts(at.info) if "prediction" in t and "calibration" in t]
    assert said and FIT_SETS_ACTION in said[0] and "python" not in said[0]
    assert at.button(key="evaluate_sets_start").label == FIT_SETS_ACTION


def test_missing_training_data_is_refused_before_the_button(tiny_run, app_env, monkeypatch):
    import pages._evaluate_sets as sets_ui

    def missing(run):
        raise WorkbenchError("the images this model was trained on are not on this machine", "/gone")

    monkeypatch.setattr(sets_ui, "check_training_data", missing)  # the name the section calls
    at, _ = evaluated_page(tiny_run, app_env)
    assert not at.exception
    assert any("not on this machine" in t for t in texts(at.error))
    assert not [b for b in at.button if b.key == "evaluate_sets_start"]


def test_a_running_fit_shows_progress_and_cancel_keeps_the_sets(tiny_run, app_env, monkeypatch):
    import core.training.out_of_fold as oof_module

    release = threading.Event()

    def slow_fold(part, images, cfg, spec, n_classes, log, job):
        job.update(phase="training", progress=0.5)
        while not release.wait(0.02):
            job.check_cancelled()
        return quick_fold(part, images, cfg, spec, n_classes, log, job)

    monkeypatch.setattr(oof_module, "_fold_probabilities", slow_fold)
    at, run = evaluated_page(tiny_run, app_env)
    before = (run.path / "card.json").read_text()
    try:
        at.button(key="evaluate_sets_start").click().run()
        poll_until(at, lambda a: any("fold 1 of 3" in b.proto.text for b in a.get("progress")))
        assert at.slider(key="evaluate_sets_folds").disabled and at.button(key="evaluate_sets_start").disabled
        at.button(key="evaluate_sets_cancel").click().run()
        poll_until(at, lambda a: any("was cancelled" in t for t in texts(a.caption)))
        assert not at.exception and not at.error
        assert (run.path / "card.json").read_text() == before and not (run.path / "oof.npz").exists()
        assert not at.button(key="evaluate_sets_start").disabled  # it can be started again
    finally:
        release.set()


@pytest.mark.parametrize("reason", [
    "the stored out-of-fold scores (oof.npz) are missing; fitted on validation images only",
    # as cards written before session 9 say it, command included
    "the stored out-of-fold scores (oof.npz) are missing; fitted on validation images only: run calibrate "
    "--conformal-only --conformal-folds 3 to add them again",
])
def test_dropped_training_scores_are_explained_with_the_pages_action(tiny_run, app_env, reason):
    from core.inference.conformal import FIT_SETS_ACTION
    from core.models.runs import update_card

    run = add_run(tiny_run, app_env["models"])
    results = run.card.results.to_json()
    results["conformal"] = {**(results.get("conformal") or {}), "out_of_fold_dropped": reason,
                            "out_of_fold_dropped_folds": 3}
    update_card(run, results=results)
    evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    said = [t for t in texts(at.caption) if "left out of this fit" in t]
    assert said and "are missing" in said[0] and FIT_SETS_ACTION in said[0]
    assert "calibrate" not in said[0] and "--conformal" not in said[0]

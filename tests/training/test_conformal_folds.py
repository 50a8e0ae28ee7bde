"""The shared "fit the sets on more images" path (core.training.conformal_folds): the plan before it
starts, the fit with a job, and a cancel that leaves the run's sets as they were."""

from __future__ import annotations

import shutil

import pytest
from fixtures_models import tiny_run  # noqa: F401 - a fixture

from core.errors import WorkbenchError
from core.jobs import Job, JobCancelled
from core.training.conformal_folds import fit_sets_out_of_fold, plan_folds, trainings_needed

TINY = {"max_train_batches": 1}  # one batch per fold model


@pytest.fixture
def own_run(tiny_run, tmp_path, monkeypatch):  # noqa: F811
    from core.models.runs import resolve_run

    models = tmp_path / "models"
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(models))
    return resolve_run(tiny_run.run_id)


@pytest.mark.parametrize("folds", [0, 1, -3])
def test_too_few_folds_are_refused_before_any_work(folds):
    with pytest.raises(WorkbenchError, match="at least 2 folds"):
        fit_sets_out_of_fold(object(), folds)


@pytest.mark.slow
def test_fit_reports_into_the_job_and_later_needs_no_training(own_run):
    run = own_run
    plan = plan_folds(run, 2, TINY)
    assert (plan.trainings, plan.networks, plan.folds) == (2, 1, 2)
    assert plan.seconds is None or plan.seconds > 0
    job = Job("conformal", "test fit")
    run = fit_sets_out_of_fold(run, 2, job, cfg_override=TINY)

    sets = run.card.results.conformal
    n_train, n_val = sum(run.card.data["counts"]["train"].values()), len(run.card.data["val_files"])
    assert sets["out_of_fold"]["folds"] == 2 and sets["out_of_fold"]["reused"] is False
    assert sum(sets["n_per_class"].values()) == n_train + n_val and "out of fold" in sets["fitted_on"]
    snap = job.snapshot()
    assert snap.progress >= 0.9 and any("fold 2 of 2" in line for line in snap.log)
    assert any("prediction sets fitted on" in line for line in snap.log)
    assert trainings_needed(run, 2, TINY) == 0  # its oof.npz is reused from now on
    assert trainings_needed(run, 3, TINY) == 3  # another fold count: trained again
    again = fit_sets_out_of_fold(run, 2, Job("conformal", "second"), cfg_override=TINY)
    assert again.card.results.conformal["out_of_fold"]["reused"] is True


@pytest.mark.slow
def test_cancel_inside_fold_training_leaves_the_sets_unchanged(own_run):
    run = own_run
    before_file = (run.path / "conformal.npz").read_bytes() if (run.path / "conformal.npz").is_file() else None
    before_card = (run.path / "card.json").read_text()
    job = Job("conformal", "cancelled fit")
    log = job.add_log

    def add_log(line: str) -> None:  # cancel as the first fold model starts its epochs
        log(line)
        if line.startswith("phase 1"):
            job.cancel()

    job.add_log = add_log
    with pytest.raises(JobCancelled):
        fit_sets_out_of_fold(run, 2, job, cfg_override=TINY)
    assert not any("fold 2 of 2" in line for line in job.snapshot().log)  # stopped inside the first fold
    after_file = (run.path / "conformal.npz").read_bytes() if (run.path / "conformal.npz").is_file() else None
    assert after_file == before_file and (run.path / "card.json").read_text() == before_card
    assert not (run.path / "oof.npz").exists()
    assert trainings_needed(run, 2, TINY) == 2


@pytest.mark.slow
def test_missing_training_folder_is_refused_plainly(own_run, monkeypatch):
    from core.models.run import Run

    monkeypatch.setattr(Run, "data_root", property(lambda self: self.path / "no-such-data"))
    with pytest.raises(WorkbenchError, match="not on this machine"):
        fit_sets_out_of_fold(own_run, 2, Job("conformal", "no data"))

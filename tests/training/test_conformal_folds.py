"""The shared "fit the sets on more images" path (core.training.conformal_folds): the plan before it
starts, the fit with a job, and a cancel that leaves the run's sets as they were."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

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


def _hashless_run(folder: Path, content: bytes) -> SimpleNamespace:
    """A stand-in single run: a model file of ``content`` and a card recording its sha256 (no TensorFlow)."""
    model = folder / "model.keras"
    model.write_bytes(content)
    card = SimpleNamespace(is_ensemble=False, model_sha256=hashlib.sha256(content).hexdigest(), data={},
                           train_config={}, train_seconds=60.0)
    return SimpleNamespace(run_id="r1", path=folder, model_path=model, card=card, class_names=["a", "b"])


def test_plan_hashes_an_unchanged_model_once_and_a_changed_one_again(tmp_path, monkeypatch):
    import core.models.runs as runs

    reads = []
    real = runs.file_sha256
    monkeypatch.setattr(runs, "file_sha256", lambda path: reads.append(path) or real(path))
    run = _hashless_run(tmp_path, b"weights v1")
    first = plan_folds(run, 2)
    assert plan_folds(run, 2) == first
    assert len(reads) == 1  # the page's reruns re-read nothing
    assert (first.trainings, first.seconds) == (2, pytest.approx(60.0))

    model = run.model_path
    mtime = model.stat().st_mtime_ns
    model.write_bytes(b"weights v2")  # same size, other content: the card's sha256 no longer fits
    os.utime(model, ns=(mtime + 1_000_000, mtime + 1_000_000))
    with pytest.raises(WorkbenchError, match="does not match its model card"):
        plan_folds(run, 2)
    assert len(reads) == 2
    assert runs.cached_file_sha256(model) == hashlib.sha256(b"weights v2").hexdigest() and len(reads) == 2

    os.utime(model, ns=(mtime + 2_000_000, mtime + 2_000_000))  # touched, same bytes: hashed again, same hash
    assert runs.cached_file_sha256(model) == hashlib.sha256(b"weights v2").hexdigest() and len(reads) == 3


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

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
from core.training.conformal_folds import (
    check_training_data,
    fit_sets_out_of_fold,
    plan_folds,
    trainings_needed,
)

TINY = {"max_train_batches": 1}  # one batch per fold model
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


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


def _run_on(kaggle: Path, classes: tuple[str, ...] = CLASSES):
    """A run whose card records the split of ``kaggle_tree`` (3 training + 2 test images per class) as
    training does: the first training image of each class held out for validation."""
    from core.models.card import ModelCard
    from core.models.run import Run

    data = {"root": str(kaggle), "val_files": [f"Training/{c}/img_000.png" for c in classes],
            "test_files": [f"Testing/{c}/img_{i:03d}.png" for c in classes for i in range(2)],
            "counts": {"train": dict.fromkeys(classes, 2), "val": dict.fromkeys(classes, 1),
                       "test": dict.fromkeys(classes, 2)}}
    return Run("r1", kaggle.parent / "models" / "r1", ModelCard(class_names=classes, data=data))


def test_an_unchanged_data_folder_passes_without_reading_any_image(kaggle_tree, monkeypatch):
    import PIL.Image

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    check_training_data(_run_on(kaggle_tree))


def test_other_class_folders_are_refused_naming_both_lists(kaggle_tree):
    for split in ("Training", "Testing"):
        shutil.rmtree(kaggle_tree / split / "pituitary")
    with pytest.raises(WorkbenchError) as raised:
        check_training_data(_run_on(kaggle_tree))
    reason = raised.value.reason
    assert "(Glioma, Meningioma, No tumour)" in reason and "(Glioma, Meningioma, No tumour, Pituitary tumour)" in reason
    assert "split differently" in reason and raised.value.source == str(kaggle_tree)


@pytest.mark.parametrize("gone,words", [
    (["Training/meningioma/img_000.png"], "1 of the model's 4 validation images"),
    (["Testing/glioma/img_001.png", "Testing/notumor/img_000.png"], "2 of the model's 8 held-out test images"),
    (["Training/notumor/img_002.png"], "1 of the model's 8 training images"),
])
def test_missing_recorded_images_are_counted_with_an_example(kaggle_tree, gone, words):
    for rel in gone:
        (kaggle_tree / rel).unlink()
    with pytest.raises(WorkbenchError) as raised:
        check_training_data(_run_on(kaggle_tree))
    reason = raised.value.reason
    assert words in reason and "prediction sets cannot be fitted" in reason
    example = "No tumour: 2 at training, 1 now" if "training images" in words else gone[0]
    assert f"(e.g. {example})" in reason


def test_a_missing_data_folder_is_refused_plainly(kaggle_tree):
    run = _run_on(kaggle_tree)
    shutil.rmtree(kaggle_tree)
    with pytest.raises(WorkbenchError, match="not on this machine"):
        check_training_data(run)


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
    # The fold models did not follow the run's recipe exactly: the card says how, in words and as data.
    assert sets["out_of_fold"]["fold_settings_changed"] == TINY
    assert sets["fitted_on"].endswith("(changed for the fold models: max train batches 1)")
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


def test_fold_precision_needs_fold_models(capsys):
    from core.cli import main

    code = main(["calibrate", "--model", "any", "--fold-precision", "bfloat16"])
    assert code == 2 and "--fold-precision" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # not a precision: argparse lists the choices
        main(["calibrate", "--model", "any", "--conformal-only", "--conformal-folds", "3", "--fold-precision", "fp8"])


def _stored_scores(run: SimpleNamespace, folds: int, cfg_override: dict | None) -> None:
    """Save an ``oof.npz`` for the stand-in run, as a fit with ``cfg_override`` would have left it."""
    import numpy as np

    from core.inference.oof_store import OutOfFold, depends_on, save_oof

    run.class_names = ["glioma", "notumor"]  # class folders the scores' labels are checked against
    files = ("Training/glioma/1.png", "Training/notumor/2.png")
    save_oof(run.path, OutOfFold(files, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]),
                                 (1.0,) * folds, depends_on(run, folds, cfg_override)))


@pytest.mark.parametrize("stored_with, expected", [(None, None), ("bfloat16", "bfloat16"), ("float32", "float32")])
def test_scores_stored_with_a_fold_precision_are_found_and_need_no_training(tmp_path, stored_with, expected):
    from core.training.conformal_folds import precision_override, stored_fold_precision

    run = _hashless_run(tmp_path, b"weights")
    assert stored_fold_precision(run, 2) is None  # nothing stored: each network's own recipe
    _stored_scores(run, 2, precision_override(stored_with))
    assert stored_fold_precision(run, 2) == expected
    assert plan_folds(run, 2, precision_override(expected)).trainings == 0
    if stored_with is not None:  # a fit that does not name the precision would have trained again
        assert plan_folds(run, 2).trainings == 2
    assert stored_fold_precision(run, 3) is None  # stored for another fold count: nothing to reuse


@pytest.mark.parametrize("own, wanted, factor", [
    ("float32", "bfloat16", 1 / 1.42), ("bfloat16", "float32", 1.42), ("float32", "float32", 1.0), ("float32", None, 1.0)])
def test_the_plans_time_follows_the_fold_precision(tmp_path, own, wanted, factor):
    from core.training.conformal_folds import precision_override

    run = _hashless_run(tmp_path, b"weights")
    run.card.train_config = {"precision": own}
    plan = plan_folds(run, 3, precision_override(wanted))
    assert plan.seconds == pytest.approx(3 * 60.0 * 2 / 3 * factor)


def test_calibrate_reuses_scores_stored_with_another_precision_and_says_so(monkeypatch, capsys):
    import core.models.runs as runs
    import core.training.conformal_folds as cf
    from core.cli import main

    seen = {}
    stand_in = SimpleNamespace(run_id="r1", card=SimpleNamespace(results=SimpleNamespace(to_json=lambda: {
        "conformal": {"fitted_on": "x", "score": "aps", "score_title": "APS",
                      "score_choice": {"aps": {"mean_set_size": 1.1, "min_class_coverage": 0.9}}}})))
    monkeypatch.setattr(runs, "resolve_run", lambda ref: stand_in)
    monkeypatch.setattr(cf, "stored_fold_precision", lambda run, folds: "bfloat16")
    monkeypatch.setattr(cf, "fit_sets_out_of_fold",
                        lambda run, folds, log=None, cfg_override=None: seen.update(c=cfg_override) or run)
    assert main(["calibrate", "--model", "r1", "--conformal-only", "--conformal-folds", "3"]) == 0
    assert seen["c"] == {"precision": "bfloat16"}
    assert "whose fold models trained in bfloat16" in capsys.readouterr().out
    # Named explicitly, the precision wins over what is stored.
    assert main(["calibrate", "--model", "r1", "--conformal-only", "--conformal-folds", "3",
                 "--fold-precision", "float32"]) == 0
    assert seen["c"] == {"precision": "float32"}

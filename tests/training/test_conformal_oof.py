"""Prediction sets calibrated on out-of-fold training scores (core.training.out_of_fold)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fixtures_models import tiny_run  # noqa: F401 - a fixture

from core.cli import main
from core.errors import WorkbenchError
from core.training.out_of_fold import fold_assignment


def _rows(n_groups: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = ["glioma", "meningioma", "notumor", "pituitary"][g % 4]
        for _ in range(int(rng.integers(1, 5))):
            rows.append({"label": label, "near_group": g if g % 3 else -1})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_cover_every_image_once_keep_groups_whole_and_stratify(folds):
    rows = _rows()
    fold = fold_assignment(rows, folds, seed=1)
    assert fold.shape == (len(rows),) and set(fold) == set(range(folds))
    grouped = rows.assign(fold=fold)[rows["near_group"] >= 0]
    assert (grouped.groupby("near_group")["fold"].nunique() == 1).all()  # a group never straddles folds
    for _, per_class in rows.assign(fold=fold).groupby("label"):
        assert per_class["fold"].nunique() >= min(folds, len(per_class)) - 1  # every class spread over folds
    assert np.array_equal(fold, fold_assignment(rows, folds, seed=1))  # deterministic for a seed


@pytest.mark.parametrize("folds", [0, 1, -2])
def test_fewer_than_two_folds_is_refused(folds):
    with pytest.raises(WorkbenchError, match="at least 2 folds"):
        fold_assignment(_rows(), folds, seed=1)


def test_cli_refuses_one_fold_and_folds_without_conformal_only(capsys):
    assert main(["calibrate", "--model", "nothing", "--conformal-only", "--conformal-folds", "1"]) == 2
    assert "at least 2 folds" in capsys.readouterr().err
    assert main(["calibrate", "--model", "nothing", "--conformal-folds", "3"]) == 2
    assert "--conformal-only" in capsys.readouterr().err


@pytest.mark.slow
def test_out_of_fold_calibration_adds_every_training_image(tiny_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    from core.inference.conformal import run_conformal
    from core.models.runs import resolve_run
    from core.training.out_of_fold import out_of_fold_probabilities

    models = tmp_path / "models"
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(models))
    run = resolve_run(tiny_run.run_id)
    oof = out_of_fold_probabilities(run, 2, log=lambda _: None, cfg_override={"max_train_batches": 1})
    probs, labels = oof.probs, oof.labels
    n_train = sum(run.card.data["counts"]["train"].values())
    assert probs.shape == (n_train, len(run.class_names)) and labels.shape == (n_train,)
    assert np.allclose(probs.sum(axis=1), 1) and (probs >= 0).all()
    assert oof.folds == 2 and len(oof.summary()["fold_temperatures"]) == 2
    assert len(set(oof.files)) == n_train and not (run.path / "oof.npz").exists()  # computing alone stores nothing

    n_val = len(run.card.data["val_files"])
    assert main(["calibrate", "--model", run.run_id, "--conformal-only", "--conformal-folds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = resolve_run(run.run_id)
    assert sum(run_conformal(run).n_per_class.values()) == n_val + n_train == sum(out["n_per_class"].values())
    assert out["out_of_fold"]["folds"] == 2 and "out of fold" in out["fitted_on"]
    assert out["out_of_fold"]["reused"] is False and (run.path / "oof.npz").is_file()  # stored for the next call
    assert run.card.temperature == tiny_run.card.temperature  # the model's own calibration is kept

    # A temperature refit keeps the out-of-fold part while the stored scores fit (no fold model is trained) ...
    from core.training import out_of_fold

    monkeypatch.setattr(out_of_fold, "_fold_probabilities", lambda *a, **k: pytest.fail("a fold model was trained"))
    trained_tta = run.card.train_config.get("tta", "none")
    assert main(["calibrate", "--model", run.run_id, "--tta", trained_tta]) == 0
    printed = capsys.readouterr().out
    run = resolve_run(run.run_id)
    assert sum(run_conformal(run).n_per_class.values()) == n_val + n_train
    assert "out of fold" in printed and "left out" not in printed
    # ... and drops it, saying so, when the model's test-time augmentation no longer matches the fold models'.
    other = "none" if trained_tta != "none" else "hflip"
    assert main(["calibrate", "--model", run.run_id, "--tta", other]) == 0
    printed = capsys.readouterr().out
    run = resolve_run(run.run_id)
    assert sum(run_conformal(run).n_per_class.values()) == n_val
    dropped = run.card.results.conformal
    assert "left out" in printed and "--conformal-folds 2" in printed  # the command line names its command
    assert dropped["out_of_fold_dropped_folds"] == 2 and "calibrate" not in dropped["out_of_fold_dropped"]

"""The model registry: only complete runs are listed, writes are atomic, tampered models refused.

Runs here are fakes (a few bytes standing in for model.keras), so no TensorFlow is needed:
every check below happens before Keras would read the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.runs import (
    CARD_FILE,
    MODEL_FILE,
    best_run,
    file_sha256,
    list_runs,
    load_model,
    publish,
    resolve_run,
    staging_dir,
    update_card,
    write_json_atomic,
)


@pytest.fixture
def models(isolated_workbench_dirs: dict) -> Path:
    root = isolated_workbench_dirs["models"]
    root.mkdir(parents=True, exist_ok=True)
    return root


def fake_run(folder: Path, created: str = "2026-01-01T00:00:00", model: bytes | None = b"weights",
             **card) -> Path:
    """A run folder with a stand-in model file and a card whose sha256 matches it."""
    folder.mkdir(parents=True)
    if model is not None:
        (folder / MODEL_FILE).write_bytes(model)
    base = {"run_id": folder.name, "status": "complete", "created": created, "class_names": ["a", "b"],
            "image_size": 32, "model_sha256": file_sha256(folder / MODEL_FILE) if model is not None else None}
    (folder / CARD_FILE).write_text(json.dumps({**base, **card}))
    return folder


# --- listing ------------------------------------------------------------------------------------------

def test_list_runs_returns_complete_runs_newest_first(models):
    fake_run(models / "old", created="2026-01-01T00:00:00")
    fake_run(models / "new", created="2026-03-01T00:00:00")
    assert [r.run_id for r in list_runs()] == ["new", "old"]


def test_incomplete_folders_are_never_listed(models):
    fake_run(models / "good")
    fake_run(models / ".tmp-staging")  # being assembled (or left by a crash)
    (models / "model_only").mkdir()
    (models / "model_only" / MODEL_FILE).write_bytes(b"weights")  # card never written
    fake_run(models / "card_only", model=None)
    fake_run(models / "no_classes")
    (models / "no_classes" / CARD_FILE).write_text(json.dumps({"status": "complete"}))  # not a model card
    (models / "half_card").mkdir()
    (models / "half_card" / MODEL_FILE).write_bytes(b"weights")
    (models / "half_card" / CARD_FILE).write_text('{"class_names": ["a", "b"], "imag')  # torn write
    (models / "stray_file.txt").write_text("not a run")
    fake_run(models / "partial", status="partial")
    assert [r.run_id for r in list_runs()] == ["good"]
    assert sorted(r.run_id for r in list_runs(include_partial=True)) == ["good", "partial"]
    assert list_runs(include_partial=True)[0].label()


def test_missing_registry_folder_lists_nothing(tmp_path):
    assert list_runs(tmp_path / "nowhere") == []


# --- atomic writes --------------------------------------------------------------------------------------

def test_staging_folder_is_hidden_and_starts_empty(models):
    stage = staging_dir("run-1")
    (stage / "junk").write_text("left over")
    stage = staging_dir("run-1")  # a retry starts clean
    assert stage.parent == models and stage.name.startswith(".") and not any(stage.iterdir())


def test_publish_moves_a_complete_staging_folder_in_one_step(models):
    stage = staging_dir("run-2")
    (stage / MODEL_FILE).write_bytes(b"weights")
    write_json_atomic(stage / CARD_FILE, {"class_names": ["a", "b"], "image_size": 32, "status": "complete",
                                          "model_sha256": file_sha256(stage / MODEL_FILE)})
    assert list_runs() == []  # not visible while staged
    run = publish(stage, "run-2")
    assert run.path == models / "run-2" and not stage.exists()
    assert [r.run_id for r in list_runs()] == ["run-2"]


@pytest.mark.parametrize("missing", [MODEL_FILE, CARD_FILE])
def test_publish_refuses_an_incomplete_staging_folder(models, missing):
    stage = staging_dir("run-3")
    for name in {MODEL_FILE, CARD_FILE} - {missing}:
        (stage / name).write_text("{}")
    with pytest.raises(WorkbenchError, match=f"{missing} is missing"):
        publish(stage, "run-3")
    assert not (models / "run-3").exists()


def test_json_is_written_atomically_with_numpy_values(tmp_path):
    target = tmp_path / CARD_FILE
    write_json_atomic(target, {"acc": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2), "p": tmp_path})
    assert json.loads(target.read_text()) == {"acc": 0.5, "n": 3, "arr": [0, 1], "p": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == [CARD_FILE]  # no temporary file left behind


def test_update_card_merges_and_keeps_the_rest(models):
    fake_run(models / "r")
    (run,) = list_runs()
    updated = update_card(run, evaluation={"leakage_free": {"macro_f1": 0.8}})
    assert list(updated.card.class_names) == ["a", "b"] and updated.leakage_free_macro_f1() == 0.8
    assert json.loads((models / "r" / CARD_FILE).read_text())["evaluation"]["leakage_free"]["macro_f1"] == 0.8


def test_best_run_prefers_evaluated_then_newest(models):
    fake_run(models / "a", created="2026-01-01", evaluation={"leakage_free": {"macro_f1": 0.7}})
    fake_run(models / "b", created="2026-02-01", evaluation={"leakage_free": {"macro_f1": 0.9}})
    fake_run(models / "c", created="2026-03-01")
    assert best_run(list_runs()).run_id == "b"
    assert best_run([r for r in list_runs() if r.run_id == "c"]).run_id == "c"
    assert best_run([]) is None


def test_a_run_serving_an_ensemble_never_displaces_it_as_the_default(models):
    """A member (or sentinel) scoring higher on the test than its ensemble is not the default: the
    ensemble was chosen as a whole on validation. A run outside any ensemble still competes."""
    sha = "0" * 64
    fake_run(models / "member", evaluation={"leakage_free": {"macro_f1": 0.97}})
    fake_run(models / "watch", evaluation={"leakage_free": {"macro_f1": 0.98}})
    fake_run(models / "other", evaluation={"leakage_free": {"macro_f1": 0.95}})
    fake_run(models / "ens", model=None, kind="ensemble", arch="ensemble", model_sha256=sha, model_file="",
             members=[{"run_id": "member", "model_sha256": sha}, {"run_id": "m2", "model_sha256": sha}],
             sentinels=[{"run_id": "watch", "model_sha256": sha}], evaluation={"leakage_free": {"macro_f1": 0.96}})
    assert best_run(list_runs()).run_id == "ens"
    fake_run(models / "better", evaluation={"leakage_free": {"macro_f1": 0.99}})
    assert best_run(list_runs()).run_id == "better"
    assert best_run([r for r in list_runs() if r.run_id != "ens"]).run_id == "better"  # no ensemble: all compete


# --- loading safely -------------------------------------------------------------------------------------

def test_tampered_model_file_is_refused(models):
    fake_run(models / "r")
    (run,) = list_runs()
    (models / "r" / MODEL_FILE).write_bytes(b"weights, modified")
    with pytest.raises(WorkbenchError, match="sha256"):
        load_model(run)


def test_card_without_checksum_is_refused(models):
    fake_run(models / "r", model_sha256=None)
    (run,) = list_runs()
    with pytest.raises(WorkbenchError, match="sha256"):
        load_model(run)


def test_resolve_run_by_id_or_folder_inside_the_registry_only(models, tmp_path):
    fake_run(models / "r")
    assert resolve_run("r").run_id == "r"
    assert resolve_run(str(models / "r" / MODEL_FILE)).run_id == "r"
    outside = fake_run(tmp_path / "elsewhere" / "r2")
    with pytest.raises(WorkbenchError, match="only loaded from the registry"):
        resolve_run(str(outside))
    fake_run(models / ".tmp-r3")
    with pytest.raises(WorkbenchError, match="no complete model run"):
        resolve_run("missing")


def test_stale_staging_folders_are_reclaimed_and_fresh_ones_kept(tmp_path) -> None:
    import os
    import time

    from core.models.runs import remove_stale_staging

    old = tmp_path / ".tmp-20200101-000000-custom_cnn-dead"
    fresh = tmp_path / ".tmp-20200101-000001-custom_cnn-busy"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "model.keras").write_bytes(b"half")
    past = time.time() - 7 * 3600
    os.utime(old, (past, past))
    assert remove_stale_staging(tmp_path) == [old]
    assert not old.exists() and fresh.exists()


# --- the card's data folder ---------------------------------------------------------------------------

def test_relative_data_root_resolves_from_the_project_root(models, tmp_path, monkeypatch):
    import core.paths
    from core.models.runs import Run

    project = tmp_path / "project"
    (tmp_path / "shared" / "data" / "mri").mkdir(parents=True)
    project.mkdir()
    monkeypatch.setattr(core.paths, "PROJECT_ROOT", project)
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # "../shared/data/mri" does not exist from here
    run = Run("r", models / "r", ModelCard(data={"root": "../shared/data/mri"}))
    assert run.data_root == project / "../shared/data/mri"
    assert run.data_root.is_dir()
    absolute = Run("r", models / "r", ModelCard(data={"root": str(tmp_path / "gone")}))
    assert absolute.data_root == tmp_path / "gone"  # absolute paths are kept, even when missing
    missing = Run("r", models / "r", ModelCard(data={"root": "nowhere/at/all"}))
    assert missing.data_root == Path("nowhere/at/all")  # the message then names what the card says

"""Out-of-fold scores kept in ``oof.npz`` (core.inference.oof_store), checked on a stand-in run (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.inference.oof_store import OOF_FILE, OutOfFold, depends_on, load_oof, save_oof
from core.models.runs import file_sha256

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
TINY_FOLDS = {"max_train_batches": 1}  # fold models see one batch: seconds, not minutes


def stand_in_run(tmp_path: Path, per_class: int = 3, seed: int = 0) -> tuple[SimpleNamespace, OutOfFold]:
    """A run with what oof_store reads (model file, card, class order) and scores that fit it."""
    folder = tmp_path / f"run{seed}"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"weights" + bytes([seed]))
    files = [f"{c}/img{i}.png" for c in CLASSES for i in range(per_class)]
    card = SimpleNamespace(model_sha256=file_sha256(folder / "model.keras"), train_config={"arch": "custom_cnn"},
                           data={"val_files": ["glioma/v.png"], "test_files": ["notumor/t.png"],
                                 "train_hashes": [f"{i:016x}" for i in range(len(files))],
                                 "counts": {"train": {c: per_class for c in CLASSES}}})
    run = SimpleNamespace(run_id=f"run-{seed}", path=folder, model_path=folder / "model.keras", card=card,
                          class_names=list(CLASSES), data_root=tmp_path / "data")
    probs = np.random.default_rng(seed).dirichlet(np.ones(len(CLASSES)), size=len(files))
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    return run, OutOfFold(tuple(files), labels, probs, (1.2, 0.8), depends_on(run, 2))


def test_stored_scores_read_back_unchanged(tmp_path):
    run, oof = stand_in_run(tmp_path)
    save_oof(run.path, oof)
    back, problem = load_oof(run, depends_on(run, 2))
    assert problem is None and back.files == oof.files and back.fold_temperatures == oof.fold_temperatures
    assert np.array_equal(back.labels, oof.labels) and np.array_equal(back.probs, oof.probs)
    assert back.summary() == oof.summary() and back.summary()["folds"] == 2
    assert sorted(p.name for p in run.path.iterdir()) == sorted(["model.keras", OOF_FILE])  # no temporary left
    assert load_oof(SimpleNamespace(**{**vars(run), "path": tmp_path}), depends_on(run, 2)) == (None, None)  # no file


def _retrained(run, oof):  # same run id, new model file (and a card that matches it)
    run.model_path.write_bytes(b"other weights")
    run.card.model_sha256 = file_sha256(run.model_path)
    return depends_on(run, 2)


def _reordered(run, oof):
    run.class_names = list(reversed(CLASSES))
    return depends_on(run, 2)


def _resplit(run, oof):
    run.card.data["val_files"] = ["meningioma/v.png"]
    return depends_on(run, 2)


def _truncated(run, oof):
    path = run.path / OOF_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return depends_on(run, 2)


def _rewritten(**changes):
    def tamper(run, oof):
        fields = {**vars(oof), **changes}
        save_oof(run.path, OutOfFold(**{k: v(oof) if callable(v) else v for k, v in fields.items()}))
        return depends_on(run, 2)
    return tamper


@pytest.mark.parametrize("tamper, reason", [
    (lambda run, oof: depends_on(run, 3), "another number of folds"),
    (lambda run, oof: depends_on(run, 2, TINY_FOLDS), "another recipe"),
    (_retrained, "model file changed"),
    (_reordered, "another class order"),
    (_resplit, "split"),
    (_truncated, "damaged and cannot be read"),
    (_rewritten(labels=lambda o: np.roll(o.labels, 1)), "labels do not match"),
    (_rewritten(probs=lambda o: 2 * o.probs), "not probabilities"),
    (_rewritten(files=lambda o: o.files[:1] + o.files[:-1]), "twice"),
    (_rewritten(fold_temperatures=(1.0,)), "1 fold temperatures"),
    (_rewritten(files=lambda o: o.files[:-1], labels=lambda o: o.labels[:-1], probs=lambda o: o.probs[:-1]),
     "not the ones the run's card counts"),
], ids=["folds", "recipe", "model", "class-order", "split", "truncated", "labels", "probs", "duplicate",
        "temperatures", "missing-image"])
def test_stale_or_damaged_scores_are_never_used(tmp_path, tamper, reason):
    run, oof = stand_in_run(tmp_path)
    save_oof(run.path, oof)
    expected = tamper(run, oof)
    stored, problem = load_oof(run, expected)
    assert stored is None and reason in problem


def test_a_model_file_that_differs_from_its_card_is_refused(tmp_path):
    run, _ = stand_in_run(tmp_path)
    run.model_path.write_bytes(b"edited")
    with pytest.raises(WorkbenchError, match="sha256 differs"):
        depends_on(run, 2)

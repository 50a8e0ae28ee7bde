"""The training engine end to end on tiny inputs: saved model, model card, history, progress.

Most tests read one shared run (``recorded_run``: two epochs × three batches, 32 px). The
two-phase transfer run uses MobileNetV3-Small with random weights, so nothing is downloaded.
"""

from __future__ import annotations

import csv
import shutil

import fixtures_training as ft
import numpy as np
import pytest

from core.config import DataConfig
from core.models.runs import CARD_FILE, HISTORY_FILE, MODEL_FILE, file_sha256, list_runs, load_model
from core.training.config import FineTuneConfig, TrainConfig

recorded_run, registry_with_run = ft.recorded_run, ft.registry_with_run  # fixtures
TINY = ft.TINY
RecordingJob = ft.RecordingJob
pytestmark = pytest.mark.slow


# --- the saved model ---------------------------------------------------------------------------

def test_run_is_registered_and_loads(recorded_run, registry_with_run):
    run = recorded_run.run
    assert not run.partial and (run.path / MODEL_FILE).is_file()
    assert [r.run_id for r in list_runs(run.path.parent)] == [run.run_id]
    model = load_model(registry_with_run)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, len(run.class_names))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_model_card_is_complete(recorded_run):
    run, cfg, ds = recorded_run.run, recorded_run.cfg, recorded_run.dataset
    card = run.card.to_json()
    for key in ("class_names", "image_size", "preprocessing", "versions", "model_sha256", "train_config",
                "data", "results", "timings"):
        assert key in card, key
    assert card["class_names"] == sorted(ds.class_names) == ds.class_names
    assert card["image_size"] == cfg.image_size == 32
    assert card["preprocessing"]["id"]
    assert set(card["versions"]) >= {"tensorflow", "keras", "python"}
    assert card["model_sha256"] == file_sha256(run.model_path)
    assert TrainConfig.from_dict(card["train_config"]) == cfg  # the config travels unchanged
    data = card["data"]
    assert data["fingerprint"] == ds.fingerprint
    assert data["split_mode"] == "leakage_free"
    n = {s: sum(c.values()) for s, c in data["counts"].items()}
    assert n["train"] + n["val"] + n["test"] == len(recorded_run.report.readable)
    assert len(data["test_files"]) == n["test"] > 0 and len(data["val_files"]) == n["val"] > 0
    assert len(data["train_hashes"]) == n["train"]
    assert set(data["test_files"]).isdisjoint(data["val_files"])
    assert 0.0 <= card["results"]["val_accuracy"] <= 1.0
    assert card["results"]["temperature"] > 0
    assert card["timings"]["train_seconds"] > 0


def test_no_image_has_a_near_copy_in_another_split(recorded_run):
    """Leakage-free split: no image is within the near-duplicate distance of one in another split.

    The demo plants exact copies and shifted near-copies; a split that ignored near-duplicate
    groups would put some pair on both sides, which equal hash strings alone would not see.
    """
    import json

    from core.data.hashing import hashes_from_hex, near_pairs, nearest_distance

    report = recorded_run.report
    phash = report.readable.set_index("path")["phash"]
    data = json.loads((recorded_run.run.path / CARD_FILE).read_text())["data"]  # the split the run recorded
    hashes = {"train": hashes_from_hex(data["train_hashes"]),
              "val": hashes_from_hex(list(phash[data["val_files"]])),
              "test": hashes_from_hex(list(phash[data["test_files"]]))}
    assert sum(len(h) for h in hashes.values()) == len(phash)
    planted = near_pairs(hashes_from_hex(list(phash)), report.threshold)
    assert len(planted) >= 6  # the demo's 3 exact and 3 shifted copies: the check below can fail
    for a, b in (("test", "train"), ("val", "train"), ("test", "val")):
        closest = nearest_distance(hashes[a], hashes[b])
        assert closest.min() > report.threshold, (
            f"{int((closest <= report.threshold).sum())} {a} image(s) within {report.threshold} bits of a {b} image")


def test_history_csv_matches_the_epochs(recorded_run):
    with open(recorded_run.run.path / HISTORY_FILE) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for col in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "phase"):
        assert col in rows[0], col
    history = recorded_run.job.snapshot().history
    assert [float(r["val_loss"]) for r in rows] == pytest.approx([h["val_loss"] for h in history])
    assert (recorded_run.run.path / CARD_FILE).is_file()


# --- progress events ---------------------------------------------------------------------------

def test_progress_events_arrive_in_order(recorded_run):
    job, steps = recorded_run.job, recorded_run.cfg.max_train_batches
    progress = [e[3] for e in job.events]
    assert progress == sorted(progress) and 0 <= progress[0] and progress[-1] <= 1.0
    batch_events = [(epoch, batch) for phase, epoch, batch, _ in job.events if phase == "train" and batch]
    assert batch_events == sorted(batch_events)  # epochs increase; batches increase within an epoch
    assert batch_events == [(e, b) for e in (1, 2) for b in range(1, steps + 1)]
    snap = job.snapshot()
    assert [row["step"] for row in snap.batch_log] == list(range(1, 2 * steps + 1))
    assert [row["epoch"] for row in snap.history] == [1, 2]
    assert snap.epochs == 2 and snap.batches == steps
    assert all(np.isfinite(row["lr"]) and row["lr"] > 0 for row in snap.batch_log)


def test_training_raises_no_keras_warning_noise(recorded_run):
    noisy = [w for w in recorded_run.warnings if "structure of `inputs`" in w or "shuffle=True" in w]
    assert not noisy


# --- data preparation (no TensorFlow) -------------------------------------------------------------

def test_unreadable_file_is_skipped_by_training(demo_root, tmp_path):
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.training.train import prepare_data

    root = shutil.copytree(demo_root, tmp_path / "demo")
    bad = root / "Training" / "glioma" / "zz_truncated.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a complete JPEG")
    ds = open_folder(root)
    report = scan_dataset(ds)
    assert "Training/glioma/zz_truncated.jpg" in [p for p, _ in report.unreadable()]
    data = prepare_data(ds, report, TrainConfig(**TINY), DataConfig())
    used = [p for split in data.paths.values() for p in split]
    assert "Training/glioma/zz_truncated.jpg" not in used
    assert len(used) == len(report.readable) == len(ds.files) - 1
    assert all(x.shape[1:] == (32, 32, 1) and x.dtype == np.uint8 for x in data.x.values())


# --- transfer learning: two phases ----------------------------------------------------------------

def test_backbone_freezing_keeps_batchnorm_frozen():
    from core.lazy_tensorflow import keras
    from core.models.architectures import backbone_layers, build_model
    from core.training.loop import set_backbone_trainable as _set_backbone_trainable

    bn = keras().layers.BatchNormalization
    model = build_model("mobilenetv3small", 4, 32, "none")
    layers = backbone_layers(model)
    _set_backbone_trainable(model, None)
    assert not any(layer.trainable for layer in layers)
    assert model.get_layer("logits").trainable
    _set_backbone_trainable(model, 15)
    top, rest = layers[-15:], layers[:-15]
    assert any(isinstance(layer, bn) for layer in top)  # the test means something
    assert all(layer.trainable != isinstance(layer, bn) for layer in top)
    assert not any(layer.trainable for layer in rest)


def test_transfer_model_fine_tunes_in_two_phases(demo_root, monkeypatch):
    import core.training.train as train
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.lazy_tensorflow import keras
    from core.models.architectures import backbone_layers

    seen = {}
    post = train.fit_calibration

    def capture(model, *args, **kwargs):  # the trained model, right after phase 2
        bn = keras().layers.BatchNormalization
        seen["backbone"] = [(layer.trainable, isinstance(layer, bn)) for layer in backbone_layers(model)]
        seen["head"] = model.get_layer("logits").trainable
        return post(model, *args, **kwargs)

    monkeypatch.setattr(train, "fit_calibration", capture)
    ds = open_folder(demo_root)
    cfg = TrainConfig(arch="mobilenetv3small", weights="none", epochs=1, max_train_batches=2,
                      finetune=FineTuneConfig(epochs=1, unfreeze_layers=12), **TINY)
    job = RecordingJob("train", "two phases")
    run = train.train_model(ds, scan_dataset(ds), cfg, job)

    history = job.snapshot().history
    assert [(h["epoch"], h["phase"]) for h in history] == [(1, "head"), (2, "finetune")]
    assert history[1]["lr"] < history[0]["lr"]  # phase 2 runs at the lower rate
    steps = [row["step"] for row in job.snapshot().batch_log]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 4  # one step axis across phases
    top, rest = seen["backbone"][-12:], seen["backbone"][:-12]
    assert any(is_bn for _, is_bn in top)
    assert all(trainable != is_bn for trainable, is_bn in top)  # BN frozen, the others unfrozen
    assert not any(trainable for trainable, _ in rest)
    assert seen["head"]
    assert run.card.weights.startswith("random initialisation")
    assert run.card.train_config["finetune"]["epochs"] == 1

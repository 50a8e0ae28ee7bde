"""Failure paths of training: cancel, errors in the data, and kill -9 at any point.

Whatever happens, the registry holds only complete runs: a cancelled, failed or killed run
leaves no usable model, earlier runs stay intact and loadable, and the next job can start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import fixtures_training as ft
import pytest

from core.data.datasets import open_folder
from core.data.scan import scan_dataset
from core.errors import WorkbenchError
from core.jobs import CANCELLED, DONE, FAILED, Job, JobRegistry
from core.models.architectures import ARCHITECTURES, ArchSpec
from core.models.runs import list_runs, load_model
from core.training.config import FineTuneConfig, TrainConfig

pytestmark = pytest.mark.slow
recorded_run, registry_with_run = ft.recorded_run, ft.registry_with_run  # fixtures
TINY = ft.TINY
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CancellingJob(Job):
    """Cancels itself at the first training batch of ``cancel_phase``; counts batches after that."""

    cancel_phase: str = "train"
    batches_after_cancel: int = 0

    def add_batch(self, row: dict) -> None:
        if self.cancelled:
            self.batches_after_cancel += 1
        super().add_batch(row)
        if self.phase == self.cancel_phase and not self.cancelled:
            self.cancel()


def staging_folders(models: Path) -> list[str]:
    return [p.name for p in models.iterdir() if p.name.startswith(".")] if models.exists() else []


def build_tiny_transfer(num_classes: int, image_size: int = 32, weights: str = "none", width: float = 1.0):
    """A three-block stand-in 'backbone' (conv + batch norm): exercises phase 2 in seconds."""
    from core.lazy_tensorflow import keras
    from core.models.architectures import _head

    k = keras()
    inputs = k.Input((image_size, image_size, 1), name="image")
    x = k.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    for i in range(3):
        x = k.layers.Conv2D(8, 3, strides=2, padding="same", name=f"block{i}_conv")(x)
        x = k.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = k.layers.ReLU(name=f"block{i}_relu")(x)
    return k.Model(inputs, _head(x, num_classes, 0.1), name="tiny_transfer")


@pytest.fixture
def tiny_transfer(extend_registry) -> str:
    spec = ArchSpec("tiny_transfer", "Tiny transfer (test)", "test only", build_tiny_transfer, 32, True)
    extend_registry(ARCHITECTURES, spec)
    return spec.key


@pytest.fixture
def demo(demo_root: Path):
    ds = open_folder(demo_root)
    return ds, scan_dataset(ds)


# --- cancel -----------------------------------------------------------------------------------------

def test_cancel_stops_within_one_batch_and_saves_nothing(demo, isolated_workbench_dirs, monkeypatch):
    from core.lazy_tensorflow import keras
    from core.training.train import train_model

    validation_batches = []
    callbacks = keras().callbacks.CallbackList
    on_test_batch_end = callbacks.on_test_batch_end

    def count(self, batch, logs=None):
        validation_batches.append(batch)
        return on_test_batch_end(self, batch, logs)

    monkeypatch.setattr(callbacks, "on_test_batch_end", count)
    ds, report = demo
    job = CancellingJob("train", "cancel me")
    cfg = TrainConfig(epochs=2, max_train_batches=4, **{**TINY, "batch_size": 8})
    JobRegistry._run(job, lambda j: train_model(ds, report, cfg, j))
    assert job.status == CANCELLED, job.error
    assert job.batches_after_cancel <= 1  # without the cancel, 7 more batches would follow
    assert len(validation_batches) <= 1  # the end-of-epoch validation (7+ batches) is cut short too
    assert job.snapshot().history == []  # the cut-short epoch is not recorded as a result
    assert list_runs(include_partial=True) == []
    assert staging_folders(isolated_workbench_dirs["models"]) == []


def test_cancel_during_fine_tuning_phase_two(demo, tiny_transfer, isolated_workbench_dirs):
    from core.training.train import train_model

    ds, report = demo
    job = CancellingJob("train", "cancel in phase 2", cancel_phase="finetune")
    cfg = TrainConfig(arch=tiny_transfer, weights="none", epochs=1, max_train_batches=3,
                      finetune=FineTuneConfig(epochs=2, unfreeze_layers=4), **TINY)
    JobRegistry._run(job, lambda j: train_model(ds, report, cfg, j))
    assert job.status == CANCELLED, job.error
    assert job.batches_after_cancel <= 1
    assert [h["phase"] for h in job.snapshot().history] == ["head"]  # phase 1 finished, phase 2 cut
    assert list_runs(include_partial=True) == []
    assert staging_folders(isolated_workbench_dirs["models"]) == []


def test_cancel_while_loading_images(demo, isolated_workbench_dirs):
    from core.training.train import train_model

    ds, report = demo
    job = Job("train", "cancelled early")
    job.cancel()
    JobRegistry._run(job, lambda j: train_model(ds, report, TrainConfig(**TINY), j))
    assert job.status == CANCELLED and job.snapshot().history == []
    assert staging_folders(isolated_workbench_dirs["models"]) == []


# --- errors in the data ---------------------------------------------------------------------------

def test_error_mid_epoch_fails_the_job_and_keeps_earlier_runs(demo, registry_with_run, isolated_workbench_dirs,
                                                             monkeypatch):
    import core.training.pipeline as pipeline
    from core.lazy_tensorflow import tf
    from core.training.train import train_model

    original = pipeline.train_dataset

    def failing_after_two_batches(*args, **kwargs):
        t = tf()

        def check(i, batch):
            ok = t.debugging.assert_less(i, t.constant(2, t.int64), message="simulated unreadable image")
            with t.control_dependencies([ok]):
                return tuple(t.identity(part) for part in batch)

        return original(*args, **kwargs).enumerate().map(check)

    import core.training.loop as loop

    monkeypatch.setattr(loop, "train_dataset", failing_after_two_batches)  # the name the fit loop calls
    ds, report = demo
    registry = JobRegistry()
    job = registry.submit("train", "fails mid-epoch",
                          lambda j: train_model(ds, report, TrainConfig(epochs=1, max_train_batches=5, **TINY), j))
    registry.wait(job, 300)
    assert job.status == FAILED
    assert "simulated unreadable image" in job.error and job.error_traceback
    assert 1 <= len(job.snapshot().batch_log) <= 3  # it really failed mid-epoch
    assert [r.run_id for r in list_runs(include_partial=True)] == [registry_with_run.run_id]
    assert staging_folders(isolated_workbench_dirs["models"]) == []
    assert load_model(registry_with_run) is not None  # untouched: its sha256 still matches
    follow_up = registry.submit("train", "next one", lambda j: "ok")  # the kind is not blocked
    registry.wait(follow_up, 10)
    assert follow_up.status == DONE


def test_unreadable_image_while_loading_is_a_readable_failure(demo, registry_with_run, isolated_workbench_dirs,
                                                             monkeypatch):
    from core.training.train import train_model

    def broken(paths, *args, **kwargs):
        raise WorkbenchError("cannot be decoded (truncated file)", "Training/glioma/0001.png")

    import core.training.data as data

    monkeypatch.setattr(data, "cached_images", broken)  # the name the data step calls
    ds, report = demo
    job = Job("train", "bad image")
    JobRegistry._run(job, lambda j: train_model(ds, report, TrainConfig(**TINY), j))
    assert job.status == FAILED
    assert job.error == "Training/glioma/0001.png: cannot be decoded (truncated file)"
    assert [r.run_id for r in list_runs()] == [registry_with_run.run_id]
    assert staging_folders(isolated_workbench_dirs["models"]) == []


# --- kill -9 -------------------------------------------------------------------------------------------

KILL_SCRIPT = r'''
"""Train a tiny model and hang at one point (argv[1]) so the test can kill -9 it there."""
import sys
import time
from pathlib import Path

point, marker, data = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


def hang(where):
    marker.write_text(where)
    time.sleep(600)


import core.training.train as train
from core.training.config import TrainConfig
from core.data.datasets import open_folder
from core.jobs import Job
from core.models.runs import MODEL_FILE
from core.data.scan import scan_dataset
from core.lazy_tensorflow import keras


class HangingJob(Job):
    def add_batch(self, row):
        super().add_batch(row)
        if point == "training" and row["step"] == 2:
            hang("training")


original_save = keras().Model.save


def half_save(self, path, *args, **kwargs):  # the final model file, half written
    original_save(self, path, *args, **kwargs)
    if point == "saving" and Path(path).name == MODEL_FILE:
        content = Path(path).read_bytes()
        Path(path).write_bytes(content[: len(content) // 2])
        hang("saving")


def hanging_publish(stage, run_id):  # everything written, not yet renamed into place
    hang("publishing")


class NoHistory:
    history = {"loss": [1.0]}


keras().Model.save = half_save
if point != "training":  # these points come after training: skip the (slow) fitting itself
    keras().Model.fit = lambda self, *args, **kwargs: NoHistory()
if point == "publishing":
    train.publish = hanging_publish
ds = open_folder(data)
cfg = TrainConfig(epochs=1, max_train_batches=3, image_size=32, width=0.25, batch_size=16)
train.train_model(ds, scan_dataset(ds), cfg, HangingJob("train", "kill me"))
marker.write_text("finished without hanging")
'''
KILL_POINTS = ("training", "saving", "publishing")


def test_kill_9_at_any_point_leaves_only_complete_runs(demo_root, registry_with_run, isolated_workbench_dirs,
                                                      tmp_path):
    script = tmp_path / "train_and_hang.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {}
    for point in KILL_POINTS:  # in parallel: most of each one's time is importing TensorFlow
        marker = tmp_path / f"{point}.marker"
        log = open(tmp_path / f"{point}.log", "wb")
        proc = subprocess.Popen([sys.executable, str(script), point, str(marker), str(demo_root)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        procs[point] = (proc, marker, log)
    try:
        deadline = time.monotonic() + 300
        for point, (proc, marker, _) in procs.items():
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            output = (tmp_path / f"{point}.log").read_text(errors="replace")[-3000:]
            assert marker.exists() and marker.read_text() == point, output
    finally:
        for proc, _, log in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
            log.close()

    models = isolated_workbench_dirs["models"]
    assert len(staging_folders(models)) == len(KILL_POINTS)  # each died with a run half-assembled
    assert [r.run_id for r in list_runs(include_partial=True)] == [registry_with_run.run_id]
    assert load_model(registry_with_run) is not None

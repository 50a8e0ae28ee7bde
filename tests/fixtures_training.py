"""One tiny training run, recorded event by event, shared by the training, fault and page tests.

Usage in a test module (module-level names, so pytest finds the fixtures)::

    import fixtures_training as ft

    recorded_run, registry_with_run = ft.recorded_run, ft.registry_with_run

``recorded_run`` trains a width-0.25 custom CNN on the 32-px demo for two epochs of three
batches, once per session, through the real engine, and keeps every progress update the
job received (the page only ever sees the latest one) plus the Python warnings raised.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.jobs import Job

TINY_SIZE = 32
TINY = {"image_size": TINY_SIZE, "width": 0.25, "batch_size": 16, "patience": 2, "seed": 1}


@dataclass
class RecordingJob(Job):
    """A Job that also keeps every update, in order, as (phase, epoch, batch, progress)."""

    events: list[tuple[str, int, int, float]] = field(default_factory=list)

    def update(self, **changes: Any) -> None:
        super().update(**changes)
        with self._lock:
            self.events.append((self.phase, self.epoch, self.batch, self.progress))


@dataclass
class RecordedRun:
    run: Any  # core.models.runs.Run
    job: RecordingJob
    cfg: Any  # core.training.config.TrainConfig
    dataset: Any  # core.data.datasets.Dataset
    report: Any  # core.data.scan.ScanReport
    warnings: list[str]


# Each module that imports a fixture registers its own copy, with its own session cache; this
# one keeps the run, so it is trained once per test session however many modules use it.
_TRAINED: dict[str, RecordedRun] = {}


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> RecordedRun:
    """A complete registered run in its own session-wide models folder (~15 s on two cores)."""
    if "run" not in _TRAINED:
        _TRAINED["run"] = _train_recorded_run(tmp_path_factory, demo_root)
    return _TRAINED["run"]


def _train_recorded_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> RecordedRun:
    from fixtures_models import train_isolated

    from core.training.config import TrainConfig

    cfg = TrainConfig(epochs=2, max_train_batches=3, **TINY)
    job = RecordingJob("train", "recorded tiny run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run, ds, report = train_isolated(tmp_path_factory.mktemp("recorded_run"), demo_root, cfg, job)
    return RecordedRun(run, job, cfg, ds, report, [str(w.message) for w in caught])


@pytest.fixture
def registry_with_run(recorded_run: RecordedRun, isolated_workbench_dirs: dict):
    """This test's (empty) models folder with a copy of the recorded run in it; returns the copy."""
    from core.models.runs import list_runs

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(recorded_run.run.path, models / recorded_run.run.run_id)
    (run,) = list_runs()
    return run

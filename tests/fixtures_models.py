"""A tiny trained model (and a tiny ensemble), shared by prediction, evaluation, CLI and page tests.

tests/conftest.py (section 4) re-exports these fixtures, so any test can just ask for them.

``tiny_run`` trains a width-0.25 custom CNN on the 32-px demo dataset for one epoch, once per
session (~15 s on two cores), through the real engine, so the card holds everything a real
run's card holds (temperature, thresholds, OOD model, training hashes, test files).
``tiny_ensemble`` adds one 48-px whole-frame member to it (~15 s more) and registers the pair.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_SIZE = 32


def train_isolated(base: Path, demo_root: Path, cfg, job):
    """Train ``cfg`` on the demo dataset with models and caches under ``base``; (run, dataset, scan)."""
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.training.train import train_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_MODELS_DIR", str(base / "models"))
        mp.setenv("WORKBENCH_CACHE_DIR", str(base / "cache"))
        ds = open_folder(demo_root)
        report = scan_dataset(ds)
        return train_model(ds, report, cfg, job), ds, report


def train_members(base: Path, demo_root: Path, specs) -> list:
    """Tiny one-epoch custom CNNs trained into ``base``: one per (image size, preprocessing, seed) of
    ``specs`` (ensemble members that differ in input)."""
    from core.config import AUGMENT_PRESETS
    from core.jobs import Job
    from core.training.config import TrainConfig

    runs = []
    for size, pre, seed in specs:
        cfg = TrainConfig(arch="custom_cnn", image_size=size, width=0.25, epochs=1, batch_size=32,
                          augment=AUGMENT_PRESETS["none"], patience=1, seed=seed, preprocessing=pre)
        runs.append(train_isolated(base, demo_root, cfg, Job("train", "tiny ensemble member"))[0])
    return runs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path):
    """A complete registered run (core.models.runs.Run) in its own session-wide models folder."""
    from core.config import AUGMENT_PRESETS
    from core.jobs import Job
    from core.training.config import TrainConfig

    cfg = TrainConfig(arch="custom_cnn", image_size=TINY_SIZE, width=0.25, epochs=1, batch_size=32,
                      augment=AUGMENT_PRESETS["none"], patience=1, seed=1)
    run, _, _ = train_isolated(tmp_path_factory.mktemp("tiny_model"), demo_root, cfg, Job("train", "tiny test model"))
    assert run.path.is_dir() and not run.partial
    return run


@pytest.fixture
def tiny_registry(tiny_run, monkeypatch: pytest.MonkeyPatch):
    """Point WORKBENCH_MODELS_DIR at the folder holding ``tiny_run`` for one test."""
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tiny_run.path.parent))
    assert os.environ["WORKBENCH_MODELS_DIR"] == str(tiny_run.path.parent)
    return tiny_run


@pytest.fixture(scope="session")
def tiny_predictor(tiny_run):
    """The loaded :class:`core.inference.predict.Predictor` for ``tiny_run`` (loaded once per session)."""
    from core.inference.predict import Predictor

    return Predictor(tiny_run)


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory: pytest.TempPathFactory, demo_root: Path, tiny_run):
    """A registered ensemble of ``tiny_run`` (32-px head crop) and a 48-px whole-frame member, in
    its own session-wide models folder: members that differ in preprocessing and image size.

    Read-only by convention: copy ``tiny_ensemble.path.parent`` before changing anything.
    """
    import shutil

    from core.inference.ensemble_fit import register_ensemble

    base = tmp_path_factory.mktemp("tiny_ensemble")
    shutil.copytree(tiny_run.path, base / "models" / tiny_run.run_id)
    (other,) = train_members(base, demo_root, [(48, "gray-uint8-resize-area-v1", 2)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(base / "cache"))
        return register_ensemble([tiny_run.run_id, other.run_id], root=base / "models")


@pytest.fixture
def tiny_ensemble_copy(tiny_ensemble, isolated_workbench_dirs):
    """The tiny ensemble and its members, copied into this test's own registry (free to change)."""
    import shutil

    from core.models.runs import resolve_run

    shutil.copytree(tiny_ensemble.path.parent, isolated_workbench_dirs["models"])
    return resolve_run(tiny_ensemble.run_id)


@pytest.fixture
def forward_inputs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shape of every batch of images a network is run on during the test."""
    import numpy as np

    from core.inference.runner import ModelRunner

    seen: list[tuple[int, ...]] = []
    real = ModelRunner.run

    def spy(self, images, progress=None):
        seen.append(tuple(np.asarray(images).shape[1:]))
        return real(self, images, progress)

    monkeypatch.setattr(ModelRunner, "run", spy)
    return seen


def private_registry(models_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the models folder ``models_root`` as the workbench's registry, with a private
    cache (tests delete and tamper with files in it)."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_root, root)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(root))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return root

"""Site adaptation of an ENSEMBLE run: every member adapted on one site split, a new ensemble of them.

Two tiny members (a head-crop 32-px and a whole-frame 40-px custom CNN) are trained once for the
module and registered as an ensemble; the site is the demo's Testing images re-styled
(tests/training/test_site.py). One adaptation, run once through the CLI, serves the tests that
only read its result; the others adapt in a private copy of the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from core.errors import WorkbenchError

pytestmark = pytest.mark.slow

SIZES = ((32, "head-v2", 1), (40, "gray-uint8-resize-area-v1", 2))


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, demo_root: Path):
    """(models folder, ensemble run id, site folder): two tiny members and their ensemble."""
    from fixtures_models import train_isolated
    from test_site import make_site

    from core.config import AUGMENT_PRESETS
    from core.inference.ensemble_fit import register_ensemble
    from core.jobs import Job
    from core.training.config import TrainConfig

    base = tmp_path_factory.mktemp("adapt_ensemble")
    members = []
    for size, pre, seed in SIZES:
        cfg = TrainConfig(arch="custom_cnn", image_size=size, width=0.25, epochs=1, batch_size=32,
                          augment=AUGMENT_PRESETS["none"], patience=1, seed=seed, preprocessing=pre)
        run, _, _ = train_isolated(base, demo_root, cfg, Job("train", "ensemble member"))
        members.append(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(base / "cache"))
        ensemble = register_ensemble([m.run_id for m in members], root=base / "models")
    site = make_site(demo_root, base / "site")
    return base / "models", ensemble.run_id, site


@pytest.fixture
def registry(source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the registry (tests adapt, cancel and tamper in it)."""
    root = tmp_path / "models"
    shutil.copytree(source[0], root)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(root))
    return root


def _adapt(parent, site, job=None, **kw):
    from core.jobs import Job
    from core.training.adapt import AdaptConfig, adapt_model

    cfg = AdaptConfig(**{"epochs": 1, "replay": 20, "batch_size": 16, "source_check": 40, **kw})
    return adapt_model(parent, site, cfg, job or Job("adapt", "test"))


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_adapt_an_ensemble_creates_an_adapted_ensemble(registry, source):
    from core.models.runs import resolve_run

    _, ens_id, site = source
    result = _adapt(resolve_run(ens_id), site)
    assert result.run.card.is_ensemble and result.run.adapted

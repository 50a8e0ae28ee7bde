"""Fixtures shared by the evaluation tests that run the tiny ensemble."""

from __future__ import annotations

import shutil

import numpy as np
import pytest


@pytest.fixture
def ensemble(tiny_ensemble, isolated_workbench_dirs):
    """The tiny ensemble and its members, copied into this test's own registry."""
    from core.models.runs import resolve_run

    shutil.copytree(tiny_ensemble.path.parent, isolated_workbench_dirs["models"])
    return resolve_run(tiny_ensemble.run_id)


@pytest.fixture
def forward_inputs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shape of every batch of images a network is run on during the test."""
    from core.inference.runner import ModelRunner

    seen: list[tuple[int, ...]] = []
    real = ModelRunner.run

    def spy(self, images, progress=None):
        seen.append(tuple(np.asarray(images).shape[1:]))
        return real(self, images, progress)

    monkeypatch.setattr(ModelRunner, "run", spy)
    return seen

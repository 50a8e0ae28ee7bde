"""Smoke test: every benchmark runs once on tiny inputs. Not a timed test: no figure is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_benchmark_runs_once_on_tiny_input(tiny_run, demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, WORKBENCH_MODELS_DIR=str(tiny_run.path.parent), WORKBENCH_CACHE_DIR=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--data", str(demo_root), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in ("1. Training throughput", "2. Predict + Grad-CAM", "3. Evaluate", "4. Dataset scan",
                    "5. App cold start"):
        assert heading in text
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["quick"] is True and res["model"]["run_id"] == tiny_run.run_id
    positive = [res["matmul_peak_gflop_s"], res["training"]["ours_img_s"], res["training"]["naive_img_s"],
                res["training"]["forward_gflops_per_image"], res["predict"]["single_gradcam_median_ms"],
                res["predict"]["batch100_s"], res["predict"]["naive_reload_median_ms"], res["evaluate"]["seconds"],
                res["scan"]["cold_s"], res["scan"]["warm_s"], res["app"]["start_s"]]
    assert all(v > 0 for v in positive), positive
    assert res["scan"]["images"] > 0 and res["evaluate"]["images"] > 0

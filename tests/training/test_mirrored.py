"""strategy="mirrored" trains across devices: two logical CPUs stand in for two GPUs.

Logical devices can only be configured before TensorFlow runs its first op, so the run
happens in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import core.training.train as train
from core.training.config import TrainConfig
from core.data.datasets import open_folder
from core.jobs import Job
from core.data.scan import scan_dataset

replicas = []
make_strategy = train.strategy_for


def spy(cfg):
    strategy = make_strategy(cfg)
    replicas.append(strategy.num_replicas_in_sync)
    return strategy


train.strategy_for = spy
ds = open_folder(sys.argv[1])
cfg = TrainConfig(epochs=1, max_train_batches=2, image_size=32, width=0.25, batch_size=16, strategy="mirrored")
job = Job("train", "mirrored")
run = train.train_model(ds, scan_dataset(ds), cfg, job)
print("RESULT " + json.dumps({"replicas": replicas, "run": str(run.path), "epochs": len(job.history),
                              "strategy": run.card.train_config["strategy"]}))
'''


def test_mirrored_strategy_trains_on_two_replicas(demo_root, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(script), str(demo_root)], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=420)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == [2]
    assert result["epochs"] == 1 and result["strategy"] == "mirrored"

    from core.models.runs import list_runs, load_model

    (run,) = list_runs()  # the subprocess wrote into this test's models folder
    assert str(run.path) == result["run"]
    assert load_model(run).output_shape == (None, 4)

"""``--strategy multiworker``: TF_CONFIG checks, and two real worker processes on localhost (CPU).

The comparison run is one process with MirroredStrategy on two logical CPUs: the same global
batch cut into the same two halves, one per replica. Against one device the weights would
differ for a known reason: batch normalisation normalises each replica's half with its own
statistics. So equal weights show that each worker trained on exactly its half of every
global batch; a worker that saw the whole batch, or the wrong half, would end elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.training.distributed import EXAMPLE, parse_tf_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "32", "--width", "0.25", "--batch-size", "16", "--patience", "2", "--seed", "3",
        "--tta", "none"]

# Runs the CLI; with KILL_AT_BATCH set, the process SIGKILLs itself after that training batch.
WORKER = r'''
import os
import signal
import sys

kill_at = int(os.environ.get("KILL_AT_BATCH", "-1"))
if kill_at >= 0:
    import core.training.loop as loop

    real = loop.progress_callback

    def killing(*args, **kwargs):
        callback = real(*args, **kwargs)
        after = callback.on_train_batch_end

        def on_train_batch_end(batch, logs=None):
            after(batch, logs)
            if batch >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        callback.on_train_batch_end = on_train_batch_end
        return callback

    loop.progress_callback = killing
if os.environ.get("LOGICAL_CPUS"):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.cli import main

raise SystemExit(main(sys.argv[1:]))
'''

# ------------------------------------------------------------------------------------------
# TF_CONFIG checks (fast)
# ------------------------------------------------------------------------------------------

TWO = {"worker": ["localhost:1111", "localhost:2222"]}


def _text(cluster, task) -> str:
    return json.dumps({"cluster": cluster, "task": task})


def test_valid_tf_config_names_the_chief() -> None:
    zero = parse_tf_config(_text(TWO, {"type": "worker", "index": 0}))
    one = parse_tf_config(_text(TWO, {"type": "worker", "index": 1}))
    assert zero.num_workers == one.num_workers == 2
    assert zero.is_chief and not one.is_chief
    with_chief = {"chief": ["h0:1"], "worker": ["h1:1"]}
    assert parse_tf_config(_text(with_chief, {"type": "chief", "index": 0})).is_chief
    assert not parse_tf_config(_text(with_chief, {"type": "worker", "index": 0})).is_chief


@pytest.mark.parametrize("text, words", [
    (None, "not set"),
    ("  ", "not set"),
    ("{cluster:", "not valid JSON"),
    ("[1, 2]", "'cluster' object"),
    (json.dumps({"cluster": TWO}), "'task' object"),
    (_text({"ps": ["h:1"], "worker": ["h:2"]}, {"type": "worker", "index": 0}), "found: ps"),
    (_text({}, {"type": "worker", "index": 0}), "found: none"),
    (_text({"worker": []}, {"type": "worker", "index": 0}), "non-empty list"),
    (_text({"worker": ["localhost"]}, {"type": "worker", "index": 0}), "'localhost' in cluster 'worker'"),
    (_text({"worker": ["h:99999"]}, {"type": "worker", "index": 0}), "not a host:port"),
    (_text({"worker": [7]}, {"type": "worker", "index": 0}), "not a host:port"),
    (_text({"worker": ["h:1", "h:1"]}, {"type": "worker", "index": 0}), "share one host:port"),
    (_text({"chief": ["a:1", "b:1"], "worker": ["c:1"]}, {"type": "chief", "index": 0}), "at most one chief"),
    (_text(TWO, {"type": "chief", "index": 0}), "task type 'chief'"),
    (_text(TWO, {"type": "worker", "index": 2}), "between 0 and 1"),
    (_text(TWO, {"type": "worker", "index": "0"}), "task index '0'"),
    (_text(TWO, {"type": "worker", "index": True}), "task index True"),
    (_text(TWO, {"type": "worker"}), "task index None"),
])
def test_bad_tf_config_is_refused_with_an_example(text, words) -> None:
    with pytest.raises(WorkbenchError) as err:
        parse_tf_config(text)
    assert err.value.source == "TF_CONFIG"
    assert words in err.value.reason and EXAMPLE in err.value.reason
    assert parse_tf_config(EXAMPLE).num_workers == 2  # the example itself is valid


def test_cli_refuses_a_missing_tf_config_before_any_work(monkeypatch, capsys, tmp_path) -> None:
    from core.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["train", "--data", str(tmp_path / "absent"), "--strategy", "multiworker"]) == 2
    err = capsys.readouterr().err
    assert "TF_CONFIG is not set" in err and "for example" in err  # not "folder not found": checked first


def test_multiworker_is_a_registered_strategy() -> None:
    from core.training.config import TrainConfig
    from core.training.options import STRATEGIES

    assert "multiworker" in STRATEGIES and "TF_CONFIG" in STRATEGIES["multiworker"].help
    assert TrainConfig(strategy="multiworker").strategy == "multiworker"


# ------------------------------------------------------------------------------------------
# Two worker processes (slow)
# ------------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(script: Path, args: list[str], models: Path, tmp: Path, **env: str) -> subprocess.Popen:
    tmp.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
            "WORKBENCH_MODELS_DIR": str(models), "TMPDIR": str(tmp), **env}
    if "TF_CONFIG" not in env:
        full.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, str(script), "train", *args], env=full, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_workers(script: Path, args: list[str], models: Path, tmp_path: Path, **victim_env: str) -> list:
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    return [_start(script, [*args, "--strategy", "multiworker"], models, tmp_path / f"tmp{i}",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   **(victim_env if i == 1 else {}))
            for i in range(2)]


def _weights(run) -> list[np.ndarray]:
    from core.models.runs import load_model

    return load_model(run).get_weights()


def _runs(models: Path) -> list:
    from core.models.runs import list_runs

    return list_runs(models) if models.exists() else []


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_publishes(demo_root, tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = ["--data", str(demo_root), "--epochs", "1", "--max-batches", "3", *TINY]
    workers = _start_workers(script, args, tmp_path / "models", tmp_path)
    reference = _start(script, [*args, "--strategy", "mirrored"], tmp_path / "reference", tmp_path / "tmpref",
                       LOGICAL_CPUS="2")
    outs = [p.communicate(timeout=400) for p in (*workers, reference)]
    for proc, (_out, err) in zip((*workers, reference), outs):
        assert proc.returncode == 0, err[-3000:]
    assert "the chief published the run" in outs[1][0]

    (run,) = _runs(tmp_path / "models")  # exactly one run: the chief's
    assert run.card.train_config["strategy"] == "multiworker" and run.run_id in outs[0][0]
    assert not list((tmp_path / "models").glob(".tmp-*"))
    assert not [f for i in range(2) for f in (tmp_path / f"tmp{i}").glob("workbench-*")]  # worker folders removed
    (ref,) = _runs(tmp_path / "reference")
    ours, theirs = _weights(run), _weights(ref)
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    gap = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(ours, _weights_at_start(run)))
    print(f"largest weight difference vs one process (mirrored, 2 replicas): {gap:.2e}; moved by training {moved:.2e}")
    assert moved > 1e-3  # training changed the weights, so equal weights mean equal training
    assert gap < 1e-4


def _weights_at_start(run) -> list[np.ndarray]:
    """The same architecture freshly initialised with the run's seed (no training)."""
    from core.lazy_tensorflow import keras
    from core.models.architectures import build_model

    keras().utils.set_random_seed(run.card.train_config["seed"])
    model = build_model(run.card.arch, len(run.class_names), run.image_size, "none", run.card.train_config["width"])
    return model.get_weights()


@pytest.mark.slow
def test_a_killed_worker_fails_the_other_cleanly_and_nothing_is_published(demo_root, tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = ["--data", str(demo_root), "--epochs", "2", "--max-batches", "6", *TINY]
    chief, victim = _start_workers(script, args, tmp_path / "models", tmp_path, KILL_AT_BATCH="1")
    victim.communicate(timeout=300)
    killed_at = time.monotonic()
    assert victim.returncode == -9  # really killed mid-training, no clean shutdown
    out, err = chief.communicate(timeout=120)
    waited = time.monotonic() - killed_at
    print(f"the chief exited {waited:.1f} s after worker 1 was killed")
    assert chief.returncode == 2, err[-3000:]
    assert "error: training failed" in err and "another worker stopped or cannot be reached" in err
    assert "nothing was published" in err and 'File "' not in out + err  # one plain message, no traceback
    assert waited < 90
    assert _runs(tmp_path / "models") == []
    assert not list((tmp_path / "models").glob(".tmp-*"))  # the chief's staging folder is gone

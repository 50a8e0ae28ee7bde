"""Issue 24, command line: native log noise hidden (shown with --verbose), arguments checked before any
model is loaded, the app's percentage formats, the synthetic flag, and the scan's whole time."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from core import cli
from core.cli import main


def test_native_stderr_is_hidden_unless_verbose(capfd, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a fresh CLI process
    with cli._native_logs(verbose=False):
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit\n")
        print("error: ours stays visible", file=sys.stderr)
    os.write(2, b"after\n")  # descriptor 2 is back
    err = capfd.readouterr().err
    assert "cuInit" not in err and "ours stays visible" in err and "after" in err
    with cli._native_logs(verbose=True):
        os.write(2, b"failed call to cuInit\n")
    assert "cuInit" in capfd.readouterr().err
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3" or "TF_CPP_MIN_LOG_LEVEL" in cli.QUIET_ENV


def test_tensorflows_python_warnings_are_hidden_unless_verbose(monkeypatch):
    """"triggered tf.function retracing" reached the terminal through Python's logging, past descriptor 2
    (a batch predict with its site check printed two of them above the results)."""
    import logging

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a fresh CLI process
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    level = tf_logger.level
    try:
        with cli._native_logs(verbose=False):
            tf_logger.warning("5 out of the last 5 calls triggered tf.function retracing")
            tf_logger.error("a real error stays visible")
        assert seen == ["a real error stays visible"] and tf_logger.level == level  # restored afterwards
        with cli._native_logs(verbose=True):
            tf_logger.warning("retracing, shown with --verbose")
        assert seen[-1] == "retracing, shown with --verbose"
    finally:
        tf_logger.removeHandler(handler)


def test_predict_refuses_missing_files_before_loading_a_model(monkeypatch, capsys, tmp_path):
    from core.inference import predict as predict_module

    def no_loading(*_a, **_k):
        raise AssertionError("the model was loaded for files that do not exist")

    monkeypatch.setattr(predict_module.Predictor, "load", no_loading)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path))
    assert main(["predict", "/nonexistent.jpg"]) == 2
    assert main(["predict", "--verbose", str(tmp_path / "nope.png"), "/nonexistent.jpg"]) == 2
    captured = capsys.readouterr()
    assert "/nonexistent.jpg: the file does not exist" in captured.err
    assert "Prediction set" not in captured.out and captured.out == ""


def test_scan_reports_the_whole_time(demo_root: Path, capsys):
    assert main(["scan", str(demo_root)]) == 0
    main(["scan", str(demo_root)])  # the second one reads the cache
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("Took ")][-1]
    total, scan = map(float, re.findall(r"(\d+\.\d+) s", line))
    assert "in all" in line and "read from the cache" in line and total >= scan
    assert main(["scan", str(demo_root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total_seconds"] >= summary["seconds"]


@pytest.mark.slow
def test_predict_output_uses_the_app_formats_and_flags_a_synthetic_model(tiny_registry, demo_root, capsys,
                                                                         monkeypatch):
    from core.models.run import Run

    monkeypatch.setattr(Run, "synthetic", property(lambda self: True))  # as if trained on the demo
    good = sorted((demo_root / "Testing" / "glioma").glob("*.png"))[0]
    assert main(["predict", str(good)]) == 0
    out = capsys.readouterr().out
    assert "[SYNTHETIC training data]" in out and "flags: synthetic_model" in out
    assert not re.search(r"\d%", out)  # "99.8 %", "< 0.1 %", "> 99.9 %": never "100.0%" or "0.0%"
    assert "100.0 %" not in out and " 0.0 %" not in out
    assert main(["predict", str(good), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["synthetic_model"] is True and "synthetic_model" in row["flags"]

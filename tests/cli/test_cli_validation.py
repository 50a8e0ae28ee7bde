"""Command-line input validation (issue 13, defect 10).

Every option is checked against the range its settings class declares *before any work*; the
message names the option and the allowed range, on one stderr line, exit status 2. The data
folder given below does not exist: an option error must come first, before the folder is opened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, write_class_tree

from core.cli import main

#: option values -> the option the message must name and words of the allowed range
BAD_TRAIN_OPTIONS = {
    "max-batches-negative": (["--max-batches", "-1"], "--max-batches", "at least 1"),
    "max-batches-zero": (["--max-batches", "0"], "--max-batches", "at least 1"),
    "image-size-zero": (["--image-size", "0"], "--image-size", "from 32 to 512"),
    "label-smoothing-5": (["--label-smoothing", "5"], "--label-smoothing", "from 0 to below 1"),
    "width-negative": (["--width", "-1"], "--width", "above 0 and at most 4"),
    "width-nan": (["--width", "nan"], "--width", "above 0 and at most 4"),
    "width-inf": (["--width", "inf"], "--width", "above 0 and at most 4"),
    "finetune-epochs-negative": (["--finetune-epochs", "-1"], "--finetune-epochs", "from 0 (off) to 1000"),
    "unfreeze-negative": (["--unfreeze", "-3"], "--unfreeze", "from 0 to 10000"),
    "seed-negative": (["--seed", "-1"], "--seed", "from 0 to"),
    "split-seed-negative": (["--split-seed", "-5"], "--split-seed", "from 0 to"),
    "batch-size-huge": (["--batch-size", "100000"], "--batch-size", "from 1 to 1024"),
    "lr-nan": (["--lr", "nan"], "--lr", "above 0 and below 1"),
    "patience-negative": (["--patience", "-1"], "--patience", "from 0 to 1000"),
    "mixup-nan": (["--mixup", "nan"], "--mixup", "from 0 (off) to 1"),
}


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("name", list(BAD_TRAIN_OPTIONS))
def test_train_option_out_of_range_is_refused_before_any_work(name, tmp_path, capsys):
    args, option, allowed = BAD_TRAIN_OPTIONS[name]
    assert main(["train", "--data", str(tmp_path / "not-opened"), *args]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {option}: ") and allowed in line, line
    assert "does not exist" not in line  # the data folder was never opened


def test_scan_threshold_out_of_range_is_refused(tmp_path, capsys):
    write_class_tree(tmp_path / "data", {"glioma": 2, "notumor": 2})
    assert main(["scan", str(tmp_path / "data"), "--threshold", "300"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: --threshold: ") and "from 0 to 64" in line


def test_nul_byte_in_a_typed_path_is_a_clear_error(capsys):
    assert main(["scan", "data\0/etc"]) == 2
    assert "NUL character" in one_error_line(capsys)
    assert main(["evaluate", "--model", "run\0id"]) == 2
    assert "NUL character" in one_error_line(capsys)


def test_gradcam_pointing_at_a_file_is_refused(tmp_path, capsys):
    existing = tmp_path / "overlays.png"
    existing.write_bytes(b"not a folder")
    assert main(["predict", str(tmp_path / "x.png"), "--gradcam", str(existing)]) == 2
    line = one_error_line(capsys)
    assert "--gradcam" in line and "a file, not a folder" in line
    assert existing.read_bytes() == b"not a folder"


@pytest.mark.parametrize("variable", ["WORKBENCH_MODELS_DIR", "WORKBENCH_CACHE_DIR"])
def test_settings_naming_a_file_are_a_clear_error(variable, tmp_path, monkeypatch, capsys):
    write_class_tree(tmp_path / "data", {"glioma": 2, "notumor": 2})
    a_file = tmp_path / "setting.txt"
    a_file.write_text("oops")
    monkeypatch.setenv(variable, str(a_file))
    command = ["predict", str(tmp_path / "x.png")] if variable == "WORKBENCH_MODELS_DIR" else [
        "scan", str(tmp_path / "data")]
    assert main(command) == 2
    line = one_error_line(capsys)
    assert f"{variable} names a file, not a folder" in line


def test_mistyped_models_folder_is_reported_not_created(tmp_path, monkeypatch, capsys):
    from core.models.runs import list_runs

    typo = tmp_path / "modles"
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(typo))
    assert list_runs() == []
    assert main(["predict", str(tmp_path / "x.png")]) == 2
    assert "registry folder does not exist" in one_error_line(capsys)
    assert main(["evaluate", "--model", "some-run"]) == 2
    line = one_error_line(capsys)
    assert "some-run" in line and f"registry folder {typo} does not exist" in line
    assert not typo.exists()


def test_scan_json_into_a_closed_pipe_ends_quietly(tmp_path):
    write_class_tree(tmp_path / "data", {"glioma": 2, "notumor": 2})
    proc = subprocess.Popen([sys.executable, "-m", "core", "scan", str(tmp_path / "data"), "--json"],
                            cwd=PROJECT_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written, as with `| head` at its end
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err.decode() and "BrokenPipeError" not in err.decode(), err.decode()
    assert proc.returncode in (0, 1)


def test_valid_options_still_pass_the_check(tmp_path):
    from core.cli.train import OPTION_FIELDS, check_options

    args = type("Args", (), {attr: None for _, _, attr in OPTION_FIELDS.values()})()
    args.epochs, args.width, args.max_batches, args.seed, args.finetune_epochs = 1, 0.25, 3, 0, 0
    check_options(args)  # no error
    assert Path(tmp_path).is_dir()

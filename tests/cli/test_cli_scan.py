"""`python -m core scan`: JSON for machines, readable text for people, clean errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "classes",
    "counts",
    "unreadable",
    "exact_duplicate_groups",
    "near_duplicate_groups",
    "cross_split_leaks",
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, exactly as a user types it (env carries the tmp cache)."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_scan_json_of_the_demo(demo_root: Path) -> None:
    result = run_cli("scan", str(demo_root), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert set(summary["counts"]) == {"train", "test"}
    assert summary["unreadable"] == []
    assert len(summary["exact_duplicate_groups"]) == 3
    assert len(summary["cross_split_leaks"]) == 3


def test_bad_folder_exits_2_with_a_clear_error_and_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_cli("scan", str(missing))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {missing}: the folder does not exist"
    assert "Traceback" not in result.stderr


def test_folder_with_unknown_classes_exits_2(tmp_path: Path, class_tree, capsys) -> None:
    class_tree(tmp_path, {"glioma": 1, "cats": 1})
    assert main(["scan", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}: unknown class folder(s) 'cats'")


def test_text_report(demo_root: Path, capsys) -> None:
    assert main(["scan", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert "Classes: glioma, meningioma, notumor, pituitary" in out
    assert "Exact-duplicate groups: 3 (6 files)" in out
    assert "Groups crossing the folder's own splits: 3" in out
    assert "no cache yet)" in out
    assert main(["scan", str(demo_root)]) == 0
    assert "read from the cache)" in capsys.readouterr().out


def test_threshold_option_and_unreadable_files(tmp_path: Path, class_tree, capsys) -> None:
    class_tree(tmp_path, {"glioma": 2, "notumor": 2})
    (tmp_path / "glioma" / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["scan", str(tmp_path), "--threshold", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["near_duplicate_threshold_bits"] == 0
    assert [u["path"] for u in summary["unreadable"]] == ["glioma/broken.jpg"]
    assert main(["scan", str(tmp_path)]) == 0
    assert "UNREADABLE glioma/broken.jpg: not an image file" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["scan"])
    assert info.value.code == 2
    assert "data_dir" in capsys.readouterr().err

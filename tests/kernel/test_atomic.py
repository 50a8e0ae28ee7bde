"""core.atomic: unique temporaries, fsync, rename; nothing left behind; safe under concurrency."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import core.atomic
from core.atomic import (
    atomic_dir,
    atomic_open,
    is_temp_name,
    reclaim_stale,
    temp_path,
    write_bytes,
    write_text,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_temporary_names_are_unique_hidden_and_beside_the_target(tmp_path):
    target = tmp_path / "card.json"
    names = {temp_path(target) for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(".card.json.") and is_temp_name(name.name)


def test_a_very_long_target_name_still_gives_a_valid_temporary(tmp_path):
    target = tmp_path / ("x" * 250)
    write_text(target, "ok")
    assert target.read_text() == "ok" and os.listdir(tmp_path) == [target.name]


def test_write_replaces_and_fsyncs(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(core.atomic.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    target = tmp_path / "a.bin"
    write_bytes(target, b"one")
    write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["a.bin"]
    assert len(synced) >= 2, "each file is fsynced before the rename"


@pytest.mark.parametrize("stage", ["write", "rename"])
def test_a_failure_leaves_the_old_file_and_no_temporary(stage, tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    target.write_text("old")
    if stage == "rename":
        monkeypatch.setattr(core.atomic.os, "replace",
                            lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises((OSError, RuntimeError)):
        with atomic_open(target, "w") as fh:
            fh.write("half")
            if stage == "write":
                raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_concurrent_writers_never_collide(tmp_path):
    """The pid-named temporaries of old: threads of one process shared a name and failed."""
    target = tmp_path / "scan.npz"
    payloads = [bytes([i]) * 200_000 for i in range(16)]
    barrier = threading.Barrier(16)

    def write(data: bytes) -> None:
        barrier.wait()
        write_bytes(target, data)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, payloads))
    assert target.read_bytes() in payloads, "one complete version wins"
    assert os.listdir(tmp_path) == ["scan.npz"]


def test_concurrent_processes_publishing_one_file(tmp_path):
    code = ("import sys; from pathlib import Path; from core.atomic import write_text\n"
            "for i in range(50): write_text(Path(sys.argv[1]), sys.argv[2] * 10_000)\n")
    procs = [subprocess.Popen(["python", "-c", code, str(tmp_path / "x.txt"), str(k)], cwd=PROJECT_ROOT)
             for k in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert re.fullmatch(r"(\d)\1{9999}", (tmp_path / "x.txt").read_text())
    assert os.listdir(tmp_path) == ["x.txt"]


def test_atomic_dir_publishes_whole_and_the_loser_of_a_race_keeps_the_winner(tmp_path):
    dest = tmp_path / "upload"
    with atomic_dir(dest) as tmp:
        (tmp / "a.png").write_bytes(b"a")
        assert not dest.exists()
    assert os.listdir(dest) == ["a.png"]
    with atomic_dir(dest) as tmp:  # someone published first: keep theirs, drop ours
        (tmp / "b.png").write_bytes(b"b")
    assert os.listdir(dest) == ["a.png"] and os.listdir(tmp_path) == ["upload"]


def test_atomic_dir_removes_everything_on_error(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "upload") as tmp:
            (tmp / "deep" / "er").mkdir(parents=True)
            raise ValueError("refused")
    assert os.listdir(tmp_path) == []


def test_reclaim_removes_only_stale_temporaries(tmp_path):
    old = time.time() - 7 * 3600
    stale = [tmp_path / ".a.json.0123456789abcdef.tmp", tmp_path / ".b.npz.tmp1234", tmp_path / ".c.tmp99"]
    for p in stale:
        p.write_text("x")
    (tmp_path / ".d.0011223344556677.tmp").mkdir()
    stale.append(tmp_path / ".d.0011223344556677.tmp")
    kept = [tmp_path / ".e.json.aaaaaaaaaaaaaaaa.tmp", tmp_path / "f.tmp", tmp_path / ".tmp-run", tmp_path / "g.json"]
    for p in kept[1:]:
        p.write_text("x")
    kept[0].write_text("fresh")  # being written right now
    for p in stale + kept[1:]:
        os.utime(p, (old, old))
    assert sorted(reclaim_stale(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept)
    assert reclaim_stale(tmp_path / "missing") == []


def test_no_module_names_temporaries_by_process_id():
    """The class of the bug: every publish goes through core.atomic."""
    offenders = [f"{p.relative_to(PROJECT_ROOT)}:{i}" for p in sorted((PROJECT_ROOT / "core").glob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if "getpid" in line]
    assert offenders == []

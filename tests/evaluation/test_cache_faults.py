"""Cache faults: a read-only or full cache folder, damaged and inconsistent entries, leftovers.

A cache is an optimisation, so none of these may stop the work or change a result:

* cannot write (read-only, full disk): the work goes on uncached, with exactly one
  CacheWriteWarning, no traceback and no temporary file left behind;
* truncated, empty or unparsable entry: discarded and rebuilt;
* valid JSON that disagrees with the dataset (10 of its rows, another fingerprint): discarded;
* temporaries left by a killed process: reclaimed once stale, never while fresh.

Tests run as root, for whom chmod does not make a folder read-only, so refusals are simulated
by making ``os.replace`` or the temporary's ``open`` raise the errors the kernel would raise.
A real ENOSPC on a tiny tmpfs is tried too where the machine allows mounting one.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_class_tree

import core.atomic
from core.cachefs import CacheWriteWarning
from core.data.datasets import open_folder
from core.data.image_cache import cached_images
from core.data.preprocess import WHOLE_FRAME_ID
from core.data.scan import scan_dataset

# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path: Path):
    root = tmp_path / "data"
    write_class_tree(root, {"glioma": 5, "notumor": 5})
    return open_folder(root)


def scan_folder(cache: Path) -> Path:
    return cache / "scans"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name) if folder.exists() else []


def summary_without_timing(report) -> dict:
    return {k: v for k, v in report.summary().items() if k not in ("seconds", "from_cache")}


def refuse_replace(exc: OSError):
    """os.replace that refuses like a read-only folder (EACCES) or a full disk (ENOSPC)."""

    def fake(src, dst, *a, **k):
        raise exc

    return fake


def full_disk_open(real_open=open):
    """open() whose files accept 100 bytes, then fail with ENOSPC: a partial temporary exists."""

    class Full:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    return lambda path, mode="r", *a, **k: Full(real_open(path, mode, *a, **k))


WRITE_FAULTS = {
    "read-only (EACCES on rename)": lambda mp: mp.setattr(
        core.atomic.os, "replace", refuse_replace(PermissionError(errno.EACCES, "Permission denied"))),
    "read-only file system (EROFS on open)": lambda mp: mp.setattr(
        core.atomic, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")),
        raising=False),
    "disk full (ENOSPC while writing)": lambda mp: mp.setattr(core.atomic, "open", full_disk_open(), raising=False),
}


# --- cannot write -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(WRITE_FAULTS))
def test_scan_goes_on_uncached_with_one_warning(fault, dataset, isolated_workbench_dirs, monkeypatch):
    reference = summary_without_timing(scan_dataset(dataset, use_cache=False, workers=1))
    cache = isolated_workbench_dirs["cache"]
    for entry in scan_folder(cache).glob("*"):
        entry.unlink()
    with monkeypatch.context() as mp:
        WRITE_FAULTS[fault](mp)
        with pytest.warns(CacheWriteWarning) as caught:
            report = scan_dataset(dataset, workers=1)
    assert len([w for w in caught if w.category is CacheWriteWarning]) == 1
    assert "working without a cache" in str(caught[0].message)
    assert summary_without_timing(report) == reference
    assert leftovers(cache) == [], "no temporary left behind"
    assert list(scan_folder(cache).glob("*")) == []
    again = scan_dataset(dataset, workers=1)  # writable again: the cache is filled
    assert not again.from_cache and scan_dataset(dataset, workers=1).from_cache


def test_scan_works_when_the_cache_folder_cannot_even_be_created(dataset, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(CacheWriteWarning):
        report = scan_dataset(dataset, workers=1)
    assert report.files["ok"].all() and not report.from_cache


@pytest.mark.parametrize("fault", list(WRITE_FAULTS))
def test_image_array_cache_goes_on_uncached(fault, dataset, isolated_workbench_dirs, monkeypatch):
    paths = [dataset.abspath(p) for p in dataset.files["path"]]
    reference = cached_images(paths, 24, "ref-key", preprocessing=WHOLE_FRAME_ID)
    with monkeypatch.context() as mp:
        WRITE_FAULTS[fault](mp)
        with pytest.warns(CacheWriteWarning) as caught:
            arr = cached_images(paths, 24, "other-key", preprocessing=WHOLE_FRAME_ID)
    assert len([w for w in caught if w.category is CacheWriteWarning]) == 1
    np.testing.assert_array_equal(arr, reference)
    assert leftovers(isolated_workbench_dirs["cache"]) == []


def _evaluation(n: int = 4):
    from core.evaluation.result import EvaluationResult

    preds = pd.DataFrame({"file": [f"f{i}.png" for i in range(n)], "true": ["glioma", "notumor"] * (n // 2),
                          "predicted": ["glioma"] * n, "confidence": [0.9] * n,
                          "prob_glioma": [0.9] * n, "prob_notumor": [0.1] * n,
                          "train_distance": [99] * n, "overlap": [False] * n})
    return EvaluationResult(run_id="r", model_sha256="abc", eval_kind="folder", description="d", root="/x",
                            dataset_fingerprint="fp", class_names=["glioma", "notumor"], predictions=preds,
                            metrics={"n_images": n, "accuracy": 0.5}, leakage_free={"n_images": n},
                            n_overlapping=0, temperature=1.0, created="now")


@pytest.mark.parametrize("fault", list(WRITE_FAULTS))
def test_evaluation_cache_goes_on_uncached(fault, isolated_workbench_dirs, monkeypatch):
    from core.evaluation.cache import load_cached
    from core.evaluation.cache import save_result as _save

    with monkeypatch.context() as mp:
        WRITE_FAULTS[fault](mp)
        with pytest.warns(CacheWriteWarning) as caught:
            _save(_evaluation(), "key1")
    assert len([w for w in caught if w.category is CacheWriteWarning]) == 1
    assert leftovers(isolated_workbench_dirs["cache"]) == []
    assert load_cached("key1") is None  # nothing half-written is ever read back
    _save(_evaluation(), "key1")
    hit = load_cached("key1")
    assert hit is not None and hit.from_cache and len(hit.predictions) == 4


def test_a_real_full_disk_on_a_tiny_tmpfs(dataset, tmp_path, monkeypatch):
    """Where the machine lets us mount a 64 KB tmpfs, fill it for real (else skipped)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the simulated ENOSPC tests cover this")
    try:
        (mount / "filler").write_bytes(b"\0" * 60_000)
        monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(mount))
        with pytest.warns(CacheWriteWarning):
            report = scan_dataset(dataset, workers=1)
        assert report.files["ok"].all()
        assert leftovers(mount) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazy: a traceback may hold a file open


# --- damaged and inconsistent entries ---------------------------------------------------------


def _scan_entry(cache: Path, suffix: str) -> Path:
    (entry,) = scan_folder(cache).glob(f"*{suffix}")
    return entry


DAMAGE = {
    "npz truncated": (".npz", lambda b: b[: len(b) // 2]),
    "npz empty": (".npz", lambda b: b""),
    "npz not a zip": (".npz", lambda b: b"garbage" * 10),
    "json truncated": (".json", lambda b: b[: len(b) // 2]),
    "json empty": (".json", lambda b: b""),
    "json not an object": (".json", lambda b: b"[1, 2]"),
    "json 10 of the rows": (".json", "rows"),
    "json another fingerprint": (".json", "fingerprint"),
    "json other class names": (".json", "classes"),
    "json paths swapped": (".json", "paths"),
    "json columns missing": (".json", "columns"),
}


def tamper_entry(cache: Path, damage: str) -> None:
    """Damage the scan cache entry in ``cache`` the way DAMAGE[damage] says."""
    suffix, how = DAMAGE[damage]
    entry = _scan_entry(cache, suffix)
    data = entry.read_bytes()
    entry.write_bytes(how(data) if callable(how) else _tamper(data, how))


def _tamper(data: bytes, how: str) -> bytes:
    payload = json.loads(data)
    files = payload["files"]
    if how == "rows":
        files["data"] = files["data"][:3]
    elif how == "fingerprint":
        payload["fingerprint"] = "0" * 20
    elif how == "classes":
        payload["class_names"] = ["meningioma", "pituitary"]
    elif how == "paths":
        col = files["columns"].index("path")
        files["data"][0][col], files["data"][-1][col] = files["data"][-1][col], files["data"][0][col]
    elif how == "columns":
        keep = [i for i, c in enumerate(files["columns"]) if c != "near_group"]
        files["columns"] = [files["columns"][i] for i in keep]
        files["data"] = [[row[i] for i in keep] for row in files["data"]]
    return json.dumps(payload).encode()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_or_inconsistent_scan_entry_is_discarded_and_rebuilt(damage, dataset, isolated_workbench_dirs):
    cache = isolated_workbench_dirs["cache"]
    first = scan_dataset(dataset, workers=1)
    reference = summary_without_timing(first)
    tamper_entry(cache, damage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged entry is not worth a warning: it is just rebuilt
        second = scan_dataset(dataset, workers=1)
    assert not second.from_cache, "a damaged or inconsistent entry is never trusted"
    assert summary_without_timing(second) == reference
    third = scan_dataset(dataset, workers=1)
    assert third.from_cache and summary_without_timing(third) == reference, "rebuilt in the cache"


@pytest.mark.parametrize("damage", ["truncated", "empty", "wrong shape", "text"])
def test_damaged_image_array_entry_is_rebuilt(damage, dataset, isolated_workbench_dirs):
    paths = [dataset.abspath(p) for p in dataset.files["path"]]
    reference = cached_images(paths, 24, "k", preprocessing=WHOLE_FRAME_ID)
    (entry,) = (isolated_workbench_dirs["cache"] / "arrays").glob("*.npy")
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "wrong shape":
        np.save(entry, np.zeros((3, 24, 24, 1), np.uint8))
    else:
        entry.write_text("hello")
    np.testing.assert_array_equal(cached_images(paths, 24, "k", preprocessing=WHOLE_FRAME_ID), reference)
    assert np.load(entry).shape == reference.shape, "the entry was rebuilt"


@pytest.mark.parametrize("damage", ["json truncated", "json empty", "json not an object", "metrics not a dict",
                                    "csv empty", "csv rows missing", "csv column missing"])
def test_damaged_evaluation_entry_is_a_miss(damage, isolated_workbench_dirs):
    from core.evaluation.cache import cache_paths as _cache_paths
    from core.evaluation.cache import load_cached
    from core.evaluation.cache import save_result as _save

    _save(_evaluation(), "key")
    json_path, csv_path = _cache_paths("key")
    if damage == "json truncated":
        json_path.write_text(json_path.read_text()[:30])
    elif damage == "json empty":
        json_path.write_text("")
    elif damage == "json not an object":
        json_path.write_text("[1, 2]")
    elif damage == "metrics not a dict":
        meta = json.loads(json_path.read_text())
        meta["metrics"] = [1, 2]
        json_path.write_text(json.dumps(meta))
    elif damage == "csv empty":
        csv_path.write_text("")
    elif damage == "csv rows missing":
        csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:2]))
    else:
        df = pd.read_csv(csv_path).drop(columns=["overlap"])
        df.to_csv(csv_path, index=False)
    assert load_cached("key") is None
    _save(_evaluation(), "key")  # recomputed results overwrite the damaged entry
    assert load_cached("key") is not None


# --- leftovers --------------------------------------------------------------------------------


def test_stale_temporaries_are_reclaimed_and_fresh_ones_kept(dataset, isolated_workbench_dirs):
    folder = scan_folder(isolated_workbench_dirs["cache"])
    folder.mkdir(parents=True)
    old = time.time() - 7 * 3600
    stale = [folder / ".v3-abc.npz.0123456789abcdef.tmp", folder / ".v3-abc.json.tmp4242"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
        os.utime(path, (old, old))
    stale_dir = folder / ".upload.0123456789abcdef.tmp"
    stale_dir.mkdir()
    (stale_dir / "x.png").write_bytes(b"x")
    os.utime(stale_dir, (old, old))
    fresh = folder / ".v3-def.npz.fedcba9876543210.tmp"  # another session is writing it right now
    fresh.write_bytes(b"\0")
    keep = folder / "v3-notatemp.json"
    keep.write_text("{}")
    os.utime(keep, (old, old))
    scan_dataset(dataset, workers=1)
    assert not any(p.exists() for p in [*stale, stale_dir])
    assert fresh.exists() and keep.exists()

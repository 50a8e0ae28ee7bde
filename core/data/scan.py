"""Dataset scan: decode every file once, hash it, find duplicates, and cache the result.

The report is cached under the dataset fingerprint (paths, sizes, mtimes) so re-scanning an
unchanged folder only lists it and reads one JSON and one npz file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from core.cachefs import DAMAGED_ENTRY, cache_folder, cache_write, discard
from core.data.datasets import Dataset
from core.data.hashing import (
    content_hash,
    group_pairs,
    hash_to_hex,
    hashes_from_hex,
    near_pairs,
    perceptual_hash,
)
from core.data.imageio import MAX_FILE_BYTES, decode_image
from core.data.safeio import OUTSIDE_ROOTS, allowed_roots, is_inside, read_regular_file
from core.errors import WorkbenchError

SCAN_VERSION = 3
MEAN_SIZE = 64  # side of the per-class mean image
HIST_BINS = 32

Progress = Callable[[int, int], None]


@dataclass
class ScanReport:
    """Everything the scan learned about a dataset. ``files`` has one row per listed file."""

    fingerprint: str
    class_names: list[str]
    threshold: int
    files: pd.DataFrame
    class_means: dict[str, np.ndarray]  # label -> (64, 64) float32 mean image in [0, 255]
    class_hists: dict[str, np.ndarray]  # label -> (32,) intensity histogram, sums to 1
    listing_problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    from_cache: bool = False

    @property
    def readable(self) -> pd.DataFrame:
        return self.files[self.files["ok"]]

    def counts(self, split_col: str = "source_split") -> pd.DataFrame:
        """Readable images per split (rows) and class (columns)."""
        df = self.readable
        table = df.groupby([split_col, "label"]).size().unstack(fill_value=0)
        return table.reindex(columns=self.class_names, fill_value=0)

    def unreadable(self) -> list[tuple[str, str]]:
        """(path, reason) for files that failed to decode, plus listing problems."""
        bad = self.files[~self.files["ok"]]
        return list(self.listing_problems) + list(zip(bad["path"], bad["error"]))

    def groups(self, column: str) -> list[list[str]]:
        """Groups (size ≥ 2) of paths sharing ``exact_group`` or ``near_group``."""
        df = self.readable[self.readable[column] >= 0]
        return [sorted(g["path"]) for _, g in df.groupby(column) if len(g) > 1]

    def label_conflicts(self) -> list[list[str]]:
        """Near-duplicate groups whose members carry different class labels."""
        df = self.readable[self.readable["near_group"] >= 0]
        return [sorted(g["path"]) for _, g in df.groupby("near_group") if g["label"].nunique() > 1]

    def cross_split_leaks(self, split: pd.Series | None = None) -> list[list[str]]:
        """Near-duplicate groups spanning more than one split (default: the folder's own splits)."""
        df = self.readable.copy()
        df["_split"] = split.reindex(df.index) if split is not None else df["source_split"]
        df = df[(df["near_group"] >= 0) & (df["_split"] != "")]
        return [sorted(g["path"]) for _, g in df.groupby("near_group") if g["_split"].nunique() > 1]

    def summary(self) -> dict[str, Any]:
        """Machine-readable summary (the CLI's --json)."""
        counts = self.counts()
        return {
            "fingerprint": self.fingerprint,
            "classes": self.class_names,
            "n_files": int(len(self.files)),
            "n_images": int(self.files["ok"].sum()),
            "counts": {str(s or "all"): {c: int(v) for c, v in row.items()} for s, row in counts.iterrows()},
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable()],
            "exact_duplicate_groups": self.groups("exact_group"),
            "near_duplicate_groups": self.groups("near_group"),
            "near_duplicate_threshold_bits": self.threshold,
            "label_conflicts": self.label_conflicts(),
            "cross_split_leaks": self.cross_split_leaks(),
            "sizes": {f"{w}x{h}": int(n) for (w, h), n in self.readable.groupby(["width", "height"]).size().items()},
            "modes": {str(m): int(n) for m, n in self.readable["mode"].value_counts().items()},
            "seconds": round(self.seconds, 3),
            "from_cache": self.from_cache,
        }


def _analyse(path: Path, rel: str, allowed: list[Path]) -> dict[str, Any]:
    # Checked again at read time: a file may have been swapped for a link since the listing.
    if not is_inside(path, allowed):
        return {"ok": False, "error": OUTSIDE_ROOTS}
    try:
        data = read_regular_file(path, rel, MAX_FILE_BYTES)
    except WorkbenchError as exc:
        return {"ok": False, "error": exc.reason}
    try:
        img = decode_image(data, rel)
    except WorkbenchError as exc:
        return {"ok": False, "error": exc.reason, "sha256": content_hash(data) if data else ""}
    px = img.pixels
    thumb = cv2.resize(px, (MEAN_SIZE, MEAN_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    hist = np.bincount((px >> 3).ravel(), minlength=HIST_BINS).astype(np.float64)
    return {
        "ok": True,
        "error": "",
        "width": img.size[0],
        "height": img.size[1],
        "mode": img.source_mode,
        "format": img.source_format,
        "sha256": content_hash(data),
        "phash": hash_to_hex(perceptual_hash(px)),
        "colourfulness": round(img.colourfulness, 3),
        "mean": float(px.mean()),
        "std": float(px.std()),
        "_thumb": thumb,
        "_hist": hist / max(hist.sum(), 1),
    }


def _assign_groups(files: pd.DataFrame, threshold: int) -> None:
    """Fill exact_group and near_group columns (-1 = no duplicate) in place."""
    files["exact_group"] = -1
    files["near_group"] = -1
    ok = files.index[files["ok"]]
    if len(ok) == 0:
        return
    sha = files.loc[ok, "sha256"]
    dup_sha = sha[sha.duplicated(keep=False)]
    files.loc[dup_sha.index, "exact_group"] = dup_sha.map({s: i for i, s in enumerate(dup_sha.unique())})
    hashes = hashes_from_hex(files.loc[ok, "phash"].tolist())
    gid = group_pairs(len(ok), near_pairs(hashes, threshold))
    sizes = np.bincount(gid, minlength=len(ok))
    files.loc[ok, "near_group"] = np.where(sizes[gid] > 1, gid, -1)


def _cache_paths(fingerprint: str) -> tuple[Path, Path] | None:
    """The (json, npz) cache entry of a fingerprint; None when the cache folder is unusable."""
    folder = cache_folder("scans")
    if folder is None:
        return None
    stem = folder / f"v{SCAN_VERSION}-{fingerprint}"
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def scan_dataset(ds: Dataset, threshold: int = 20, progress: Progress | None = None,
                 workers: int | None = None, use_cache: bool = True) -> ScanReport:
    """Scan a listed dataset (decode, hash, group duplicates), using the cache when fresh.

    Args:
        ds: a dataset from :mod:`core.data.datasets`.
        threshold: near-duplicate Hamming threshold in bits (of 256).
        progress: called as ``progress(done, total)`` while decoding.
        workers: decoding threads (Pillow and OpenCV release the GIL while decoding).
    """
    start = time.perf_counter()
    entry = _cache_paths(ds.fingerprint)
    if use_cache and entry is not None and entry[0].exists() and entry[1].exists():
        report = _load(*entry, ds)
        if report is not None:
            if report.threshold != threshold:
                _assign_groups(report.files, threshold)
                report.threshold = threshold
            report.seconds = time.perf_counter() - start
            if progress:
                progress(len(report.files), len(report.files))
            return report

    n = len(ds.files)
    results: list[dict[str, Any]] = [None] * n  # type: ignore[list-item]
    paths = [ds.abspath(p) for p in ds.files["path"]]
    allowed = [allowed_roots(ds.root)] * n
    with ThreadPoolExecutor(max_workers=workers or min(8, 2 * (os.cpu_count() or 2))) as pool:
        for i, res in enumerate(pool.map(_analyse, paths, ds.files["path"], allowed)):
            results[i] = res
            if progress and (i % 64 == 0 or i == n - 1):
                progress(i + 1, n)
    files = ds.files.copy()
    columns = ["ok", "error", "width", "height", "mode", "format", "sha256", "phash", "colourfulness", "mean", "std"]
    table = pd.DataFrame([{k: r.get(k) for k in columns} for r in results], index=files.index)
    files = pd.concat([files, table], axis=1)
    files["ok"] = files["ok"].astype(bool)
    files["error"] = files["error"].fillna("")
    _assign_groups(files, threshold)

    means, hists = {}, {}
    for label in ds.class_names:
        idx = [i for i, r in enumerate(results) if r["ok"] and ds.files["label"].iat[i] == label]
        means[label] = (np.mean([results[i]["_thumb"] for i in idx], axis=0) if idx
                        else np.zeros((MEAN_SIZE, MEAN_SIZE), np.float32)).astype(np.float32)
        hists[label] = (np.mean([results[i]["_hist"] for i in idx], axis=0) if idx
                        else np.zeros(HIST_BINS)).astype(np.float64)
    report = ScanReport(ds.fingerprint, list(ds.class_names), threshold, files, means, hists,
                        list(ds.problems), time.perf_counter() - start, False)
    if entry is not None:
        _save(report, *entry)
    return report


def _save(report: ScanReport, json_path: Path, npz_path: Path) -> None:
    payload = {
        "version": SCAN_VERSION,
        "fingerprint": report.fingerprint,
        "class_names": report.class_names,
        "threshold": report.threshold,
        "listing_problems": report.listing_problems,
        "files": json.loads(report.files.to_json(orient="split", index=False)),
    }
    arrays = {f"mean_{k}": v for k, v in report.class_means.items()}
    arrays |= {f"hist_{k}": v for k, v in report.class_hists.items()}
    # The npz lands first: a JSON file means the pair is complete. A cache that cannot be
    # written costs one warning (cache_write) and the JSON is not attempted.
    if cache_write(npz_path, lambda fh: np.savez_compressed(fh, **arrays)):
        cache_write(json_path, lambda fh: fh.write(json.dumps(payload)), mode="w")


#: Columns every cached file table must have (the ones scan_dataset fills).
_CACHED_COLUMNS = ("path", "label", "source_split", "ok", "error", "width", "height", "mode", "sha256", "phash",
                   "exact_group", "near_group")


def _load(json_path: Path, npz_path: Path, ds: Dataset) -> ScanReport | None:
    """The cached report, or None after discarding an entry that is damaged or disagrees with ``ds``."""
    try:
        payload = json.loads(json_path.read_text())
        split = payload["files"]
        files = pd.DataFrame(split["data"], columns=split["columns"])
        names = list(payload["class_names"])
        with open(npz_path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:  # our handle: always closed
            means = {k: np.asarray(npz[f"mean_{k}"], np.float32) for k in names}
            hists = {k: np.asarray(npz[f"hist_{k}"], np.float64) for k in names}
        consistent = (
            payload.get("version") == SCAN_VERSION and payload.get("fingerprint") == ds.fingerprint
            and names == list(ds.class_names) and all(c in files.columns for c in _CACHED_COLUMNS)
            and files["path"].tolist() == ds.files["path"].tolist()
            and files["label"].tolist() == ds.files["label"].tolist()
            and all(m.shape == (MEAN_SIZE, MEAN_SIZE) for m in means.values())
            and all(h.shape == (HIST_BINS,) for h in hists.values())
        )
        if consistent:
            files["ok"] = files["ok"].astype(bool)
            files["error"] = files["error"].fillna("")
            files.index = ds.files.index
            return ScanReport(payload["fingerprint"], names, int(payload["threshold"]), files, means, hists,
                              [tuple(p) for p in payload["listing_problems"]], 0.0, True)
    except DAMAGED_ENTRY:
        pass
    discard(json_path, npz_path)  # damaged or inconsistent: rebuilt by the caller
    return None

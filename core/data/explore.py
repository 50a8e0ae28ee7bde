"""Numbers behind the Dataset Explorer: sample grids, class balance, histograms, leaks.

Pure functions over a :class:`~core.data.scan.ScanReport` and its ``files`` table. They return
dataframes, dicts and arrays; drawing lives in :mod:`core.reports.charts` and the pages.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.imageio import decode_image
from core.data.scan import ScanReport
from core.data.splits import grouped_split

ALL_SPLITS = "all"  # the name shown for a dataset without split folders
IMBALANCE_WARN = 1.5  # max/min class ratio above which the Explorer warns

#: Declared columns and dtypes of the tables below. An empty result is built from these, so
#: filtering it (``dups[dups["spans_splits"]]``) stays a row filter: under pandas 3 an empty
#: object column used as a mask is read as a list of column names and drops every column.
DUPLICATE_COLUMNS = {"group": "int64", "path": "object", "label": "object", "split": "object",
                     "spans_splits": "bool", "mixed_labels": "bool"}
HISTOGRAM_COLUMNS = {"label": "object", "intensity": "float64", "share": "float64"}
SIZE_MODE_COLUMNS = {"label": "object", "size": "object", "mode": "object", "count": "int64"}


def empty_table(columns: dict[str, str]) -> pd.DataFrame:
    """A frame with no rows but the declared columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def split_names(report: ScanReport, split: pd.Series | None = None) -> pd.Series:
    """Split name for every readable file: ``split`` if given, else the folder's own split.

    Files of a flat folder (no Training/Testing) are all in ``"all"``.
    """
    files = report.readable
    names = split.reindex(files.index) if split is not None else files["source_split"]
    return names.fillna("").replace("", ALL_SPLITS).astype(str)


def sample_grid(files_df: pd.DataFrame, per_class: int, seed: int, classes: Iterable[str] | None = None,
                splits: Iterable[str] | None = None, split_col: str = "source_split") -> pd.DataFrame:
    """Pick up to ``per_class`` rows of each class, reproducibly for a seed.

    Each class draws from its own RNG stream (seed + class name), so hiding one class never
    reshuffles the others. A class with fewer rows than asked contributes all it has.

    Args:
        files_df: one row per image with ``label`` and ``split_col`` columns (e.g. ``report.readable``).
        per_class: how many images to show per class (0 gives an empty frame).
        seed: the same seed, filters and data always give the same grid.
        classes: keep only these labels (None: all).
        splits: keep only rows whose ``split_col`` is one of these (None: all).
    Returns:
        The chosen rows (original index kept), grouped by class in sorted order.
    """
    df = files_df
    if classes is not None:
        df = df[df["label"].isin(list(classes))]
    if splits is not None:
        df = df[df[split_col].isin(list(splits))]
    parts = []
    for label in sorted(df["label"].unique()):
        rows = df[df["label"] == label].sort_values("path")  # order-independent of the input
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(label.encode())])
        take = rng.permutation(len(rows))[: max(0, int(per_class))]
        parts.append(rows.iloc[np.sort(take)])
    return pd.concat(parts) if parts else df.iloc[0:0]


def class_balance(report: ScanReport, split: pd.Series | None = None) -> pd.DataFrame:
    """Readable images per split and class, as a long table.

    Args:
        report: a dataset scan.
        split: split name per readable file (from :func:`core.data.splits.make_split`); None uses
            the folder's own split folders.
    Returns:
        Columns ``split, label, count, share``; ``share`` is the class's fraction of its
        split. Every class appears in every split, with 0 where it has no images.
    """
    names = split_names(report, split)
    files = report.readable
    table = pd.crosstab(names, files["label"]).reindex(columns=report.class_names, fill_value=0)
    order = [s for s in ("train", "val", "test", ALL_SPLITS) if s in table.index]
    table = table.reindex(order + sorted(set(table.index) - set(order)))
    long = table.rename_axis(index="split", columns="label").stack().rename("count").reset_index()
    totals = long.groupby("split")["count"].transform("sum")
    long["share"] = np.where(totals > 0, long["count"] / totals.where(totals > 0, 1), 0.0)
    long["count"] = long["count"].astype(int)
    return long


def imbalance_ratio(balance: pd.DataFrame, split: str | None = None) -> float:
    """Largest class count over smallest (1.0 = balanced; inf when a class has no images).

    Args:
        balance: the output of :func:`class_balance`.
        split: one split's ratio; None pools all splits.
    """
    df = balance if split is None else balance[balance["split"] == split]
    counts = df.groupby("label")["count"].sum()
    if counts.empty or counts.max() == 0:
        return 1.0
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def thumbnail(path: str | Path, size: int = 96) -> np.ndarray:
    """Decode an image file and shrink it to fit in ``size``×``size`` (aspect kept).

    Returns:
        A (h, w) uint8 array with max(h, w) == size (images are never enlarged).
    Raises:
        WorkbenchError: the file cannot be decoded (the message names the file and why).
    """
    pixels = decode_image(path).pixels
    h, w = pixels.shape
    scale = min(1.0, size / max(h, w))
    if scale == 1.0:
        return pixels
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, new, interpolation=cv2.INTER_AREA)


def intensity_histogram(pixels: np.ndarray, bins: int = 32) -> pd.DataFrame:
    """Histogram of 0..255 intensities.

    Returns:
        Columns ``start, end, count, share`` (one row per bin); counts sum to the pixel count.
    """
    values = np.asarray(pixels).ravel()
    counts, edges = np.histogram(values, bins=bins, range=(0, 256))
    total = max(int(counts.sum()), 1)
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts.astype(int),
                         "share": counts / total})


def class_histograms(report: ScanReport, skip_background: bool = True) -> pd.DataFrame:
    """The scan's per-class mean intensity histograms as a long table (label, intensity, share).

    Args:
        skip_background: drop the darkest bin (the black air around the head, a third of
            every slice) and renormalise, so the tissue intensities are what the chart shows.
    """
    rows = []
    for label in report.class_names:
        hist = np.asarray(report.class_hists[label], dtype=float)
        width = 256 / len(hist)
        centres = (np.arange(len(hist)) + 0.5) * width
        if skip_background:
            hist, centres = hist[1:], centres[1:]
            hist = hist / hist.sum() if hist.sum() > 0 else hist
        rows.append(pd.DataFrame({"label": label, "intensity": centres, "share": hist}))
    return pd.concat(rows, ignore_index=True) if rows else empty_table(HISTOGRAM_COLUMNS)


def size_mode_mix(report: ScanReport) -> pd.DataFrame:
    """Image counts per class by size (W×H) and file mode; mixed sizes or colour modes hint at mixed sources."""
    df = report.readable
    if df.empty:
        return empty_table(SIZE_MODE_COLUMNS)
    size = df["width"].astype(int).astype(str) + "×" + df["height"].astype(int).astype(str)
    out = df.assign(size=size).groupby(["label", "size", "mode"]).size().rename("count").reset_index()
    return out.sort_values(["label", "count"], ascending=[True, False], ignore_index=True)


def duplicate_groups(report: ScanReport, column: str, split: pd.Series | None = None) -> pd.DataFrame:
    """Members of every duplicate group, one row per file.

    Args:
        column: ``exact_group`` (byte-identical) or ``near_group`` (perceptual near-copies).
        split: split per file (None: the folder's own).
    Returns:
        Columns ``group, path, label, split, spans_splits, mixed_labels``, largest groups first.
    """
    files = report.readable
    df = files[files[column] >= 0].assign(split=split_names(report, split))
    df = df[df.groupby(column)["path"].transform("size") > 1]
    if df.empty:
        return empty_table(DUPLICATE_COLUMNS)
    grouped = df.groupby(column)
    df = df.assign(group=df[column], spans_splits=grouped["split"].transform("nunique") > 1,
                   mixed_labels=grouped["label"].transform("nunique") > 1,
                   _size=grouped["path"].transform("size"))
    df = df.sort_values(["_size", "group", "path"], ascending=[False, True, True])
    return df[list(DUPLICATE_COLUMNS)].astype(DUPLICATE_COLUMNS).reset_index(drop=True)


def leak_summary(report: ScanReport, split: pd.Series | None = None) -> dict[str, Any]:
    """How much of the evaluation data has a near-twin in training.

    Args:
        split: split per readable file (None: the folder's own Training/Testing split).
    Returns:
        ``n_test``, ``n_test_with_train_twin``, ``n_val``, ``n_val_with_train_twin``,
        ``share_test_with_train_twin`` and ``groups`` (path lists of near-duplicate groups
        that span splits, as :meth:`ScanReport.cross_split_leaks`).
    """
    files = report.readable
    names = split_names(report, split)
    grouped = files["near_group"] >= 0
    train_groups = set(files.loc[grouped & (names == "train"), "near_group"])
    out: dict[str, Any] = {}
    for part in ("test", "val"):
        mask = names == part
        twins = mask & grouped & files["near_group"].isin(train_groups)
        out[f"n_{part}"] = int(mask.sum())
        out[f"n_{part}_with_train_twin"] = int(twins.sum())
    out["share_test_with_train_twin"] = out["n_test_with_train_twin"] / out["n_test"] if out["n_test"] else 0.0
    out["groups"] = report.cross_split_leaks(split)
    return out


def naive_split(report: ScanReport, cfg: DataConfig = DataConfig()) -> pd.Series:
    """The split most notebooks make: stratified and seeded, but blind to near-duplicates.

    Only for showing what leakage-free splitting prevents; never train on it.
    """
    files = report.readable.assign(near_group=-1)  # every file its own group
    return grouped_split(files, {"test": cfg.test_fraction, "val": cfg.val_fraction}, cfg.split_seed)


def moved_across_test_folder(report: ScanReport, split: pd.Series) -> dict[str, int]:
    """How a re-split moved images across the folder's own Testing line.

    Returns:
        ``n_test_folder`` (readable images in Testing/), ``test_moved_out`` (of those, how many
        the split puts in train or val) and ``moved_into_test`` (Training/ images it puts in test).
        All 0 for a folder without a Testing/ folder.
    """
    files = report.readable
    names = split.reindex(files.index)
    own_test = files["source_split"] == "test"
    return {"n_test_folder": int(own_test.sum()),
            "test_moved_out": int((own_test & (names != "test")).sum()),
            "moved_into_test": int((~own_test & (names == "test")).sum()) if own_test.any() else 0}


def short_file_name(name: str, limit: int = 16) -> str:
    """A file name that fits under a thumbnail: the middle gives way ("Tr-gl_…0012.jpg"), never
    the extension, so a caption never breaks a name mid-word."""
    if len(name) <= limit:
        return name
    keep = limit - 1
    head, tail = keep // 2, keep - keep // 2
    return f"{name[:head]}…{name[-tail:]}"


def group_reason(report: ScanReport, paths: list[str], column: str) -> str:
    """Why these files were grouped, in words: byte-identical, or the largest fingerprint distance in the group."""
    if column == "exact_group":
        return "byte-identical files (the same SHA-256 checksum)"
    from core.data.hashing import hamming_matrix, hashes_from_hex

    rows = report.readable.set_index("path").loc[paths]
    hashes = hashes_from_hex(rows["phash"].tolist())
    widest = int(hamming_matrix(hashes, hashes).max()) if len(hashes) > 1 else 0
    if widest <= report.threshold:
        return f"the pictures differ in at most {widest} of 256 coarse features (near-copies: {report.threshold} or fewer)"
    return (f"each file is within {report.threshold} of 256 coarse features of another in the group; the two "
            f"furthest apart differ by {widest}")

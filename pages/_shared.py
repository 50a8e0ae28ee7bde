"""State shared by every page: the active dataset, its cached scan and split, and the settings
handed to training. This is the only module that reads or writes those session-state keys.
Navigation lives in ``pages/_nav.py``, the page address in ``pages/_url.py``, config widgets in
``pages/_settings.py``.

Keys (st.session_state):
    active_dataset   the core Dataset every page works on
    split_mode       a key of core.data.splits.SPLIT_MODES; the Train page splits this way
    augment_config   the AugmentConfig the Train page trains with
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.config import AUGMENT_PRESETS, AugmentConfig, DataConfig
from core.data.datasets import Dataset, open_demo, open_folder, open_zip
from core.data.explore import naive_split, thumbnail
from core.data.imageio import DecodedImage, decode_image
from core.data.scan import ScanReport, scan_dataset
from core.data.splits import SPLIT_MODES, make_split
from core.errors import WorkbenchError
from core.paths import cache_dir, check_under_data_roots, default_data_dir
from core.safetext import escape_markdown
from core.training.preset_notes import DEFAULT_PRESET
from pages._url import remember_in_url

DATASET_KEY = "active_dataset"
WARNING_KEY = "active_dataset_warning"
SPLIT_KEY = "split_mode"
AUGMENT_KEY = "augment_config"
DEFAULT_SPLIT_MODE = "leakage_free"
EVALUATE_HANDOFF = "evaluate_open_run"  # a run id the Train page hands to the Evaluate page (the run just trained)
QUERY_DATASET = "dataset"  # the page-address parameter holding the active dataset
QUERY_AUGMENT = "augment"  # ... and the augmentation preset the Train page uses
DEFAULT_AUGMENT = DEFAULT_PRESET  # the shipped model's preset, used until the user picks another


# --- errors -----------------------------------------------------------------------------------

@contextmanager
def shown_errors(stop: bool = False) -> Iterator[None]:
    """Show a WorkbenchError raised inside the block as st.error (never a traceback).

    Args:
        stop: end the page run after the message (for errors the rest of the page depends on).
    """
    try:
        yield
    except WorkbenchError as exc:
        st.error(escape_markdown(str(exc)), icon=":material/error:")  # names in it are literal
        if stop:
            st.stop()


# --- the active dataset -----------------------------------------------------------------------

# The cache directory is part of each key: tests (and admins) point WORKBENCH_CACHE_DIR
# elsewhere, and a cached Dataset must never refer to another cache's demo folder.
@st.cache_resource(show_spinner="Listing the dataset…", max_entries=16)
def _open_cached(kind: str, location: str, _cache: str) -> Dataset:
    if kind == "demo":
        return open_demo()
    return open_folder(location)


def _open_default() -> Dataset:
    path = default_data_dir()
    if path is None:
        return _open_cached("demo", "", str(cache_dir()))
    try:
        return _open_cached("folder", str(path), str(cache_dir()))
    except WorkbenchError as exc:
        st.session_state[WARNING_KEY] = f"WORKBENCH_DATA_DIR could not be opened ({exc}); showing the demo."
        return _open_cached("demo", "", str(cache_dir()))


def _dataset_from_url() -> Dataset | None:
    """The dataset named in the page address (kept there so a refresh keeps it), or None."""
    value = st.query_params.get(QUERY_DATASET, "")
    if not value:
        return None
    try:
        if value == "demo":
            return _open_cached("demo", "", str(cache_dir()))
        folder = check_under_data_roots(value)
        return _open_cached("folder", str(folder), str(cache_dir()))
    except WorkbenchError as exc:
        st.session_state[WARNING_KEY] = f"The dataset in the page address could not be opened ({exc})."
        return None


def _remember_dataset(ds: Dataset) -> None:
    """Write the active dataset into the address (a folder by path; an upload cannot be reopened)."""
    value = {"demo": "demo", "folder": str(ds.root)}.get(ds.kind)
    if value is None:
        st.query_params.pop(QUERY_DATASET, None)
    elif st.query_params.get(QUERY_DATASET) != value:
        st.query_params[QUERY_DATASET] = value


def active_dataset() -> Dataset:
    """The dataset every page works on: after a refresh the one in the page address, else
    WORKBENCH_DATA_DIR, else the synthetic demo."""
    if DATASET_KEY not in st.session_state:
        st.session_state[DATASET_KEY] = _dataset_from_url() or _open_default()
    ds = st.session_state[DATASET_KEY]
    _remember_dataset(ds)
    return ds


def set_active_dataset(kind: str, **args: Any) -> Dataset:
    """Open a dataset and make it the active one for all pages.

    Args:
        kind: ``demo``; ``folder`` with ``path`` (must lie under a data root); or ``zip``
            with ``data`` (bytes) and ``filename``.
    Raises:
        WorkbenchError: the folder or zip cannot be used (the page shows the message).
    """
    if kind == "demo":
        ds = _open_cached("demo", "", str(cache_dir()))
    elif kind == "folder":
        folder = check_under_data_roots(str(args["path"]).strip())
        _open_cached.clear(kind, str(folder), str(cache_dir()))  # re-list: files may have changed
        ds = _open_cached(kind, str(folder), str(cache_dir()))
    elif kind == "zip":
        ds = open_zip(args["data"], args.get("filename", "upload.zip"))  # extracted once per content
    else:
        raise WorkbenchError(f"unknown dataset source '{kind}'", "dataset source")
    st.session_state[DATASET_KEY] = ds
    st.session_state.pop(WARNING_KEY, None)
    return ds


SPLIT_FOLDERS = {"train": "Training/", "val": "a validation folder", "test": "Testing/"}


def split_folders_words(splits: list[str]) -> str:
    """The folder's own split folders in words: the app's train/val/test split is another thing."""
    if not splits:
        return "class folders only (the app splits them)"
    if splits == ["train"]:
        return "a Training/ folder only (the app splits it into train, validation and test)"
    order = ["train", "val", "test"]
    ordered = sorted(splits, key=lambda s: order.index(s) if s in order else len(order))
    return "folders " + " and ".join(SPLIT_FOLDERS.get(s, s) for s in ordered)


def show_active_dataset_badge() -> Dataset:
    """One caption line naming the active dataset (SYNTHETIC for the demo); returns it."""
    ds = active_dataset()
    files = ds.files
    splits = sorted(s for s in files["source_split"].unique() if s)
    parts = [f"**{escape_markdown(ds.name)}**", f"{len(files):,} images", f"{len(ds.class_names)} classes",
             split_folders_words(splits)]
    badge = " :orange-badge[SYNTHETIC — not patient data]" if ds.synthetic else ""
    st.caption(":material/database: Active dataset: " + " · ".join(parts) + badge)
    if WARNING_KEY in st.session_state:
        st.warning(escape_markdown(st.session_state[WARNING_KEY]))  # holds the typed address
    return ds


def listing_counts(ds: Dataset) -> pd.DataFrame:
    """Listed files per split (rows) and class (columns), from the listing alone (no decoding)."""
    files = ds.files.assign(split=ds.files["source_split"].replace("", "all"))
    table = files.groupby(["split", "label"]).size().unstack(fill_value=0)
    order = [s for s in ("train", "val", "test", "all") if s in table.index]
    return table.reindex(index=order, columns=ds.class_names, fill_value=0)


# --- scan, split and images (cached) ----------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=8)
def _scan(fingerprint: str, threshold: int, _ds: Dataset) -> ScanReport:
    # The bar is created inside the cached call, so a cache hit replays nothing but an empty slot.
    bar = st.progress(0.0, text=f"Scanning {len(_ds.files):,} files (decoding, hashing, duplicates)…")
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        frac = done / max(total, 1)
        if frac - shown[0] >= 0.05 or done == total:  # few updates: each one is replayed on hits
            shown[0] = frac
            bar.progress(frac, text=f"Scanning… {done:,} of {total:,} files")

    report = scan_dataset(_ds, threshold, progress=progress)
    bar.empty()
    return report


def cached_scan(ds: Dataset, threshold: int | None = None) -> ScanReport:
    """The dataset's scan, computed once per fingerprint (with a progress bar the first time)."""
    threshold = DataConfig().near_dup_threshold if threshold is None else threshold
    return _scan(ds.fingerprint, threshold, ds)


@st.cache_data(show_spinner=False, max_entries=32)
def _split(fingerprint: str, mode: str, threshold: int, _report: ScanReport) -> pd.Series:
    return make_split(_report, DataConfig(), mode)


@st.cache_data(show_spinner=False, max_entries=8)
def _naive(fingerprint: str, threshold: int, _report: ScanReport) -> pd.Series:
    return naive_split(_report)


def naive_split_cached(report: ScanReport) -> pd.Series:
    """The group-blind random split, only to show how much leakage it would cause."""
    return _naive(report.fingerprint, report.threshold, report)


def split_mode() -> str:
    """The split mode shared with the Train page (default: leakage-free)."""
    if st.session_state.get(SPLIT_KEY) not in SPLIT_MODES:
        from_url = st.query_params.get(SPLIT_KEY)
        st.session_state[SPLIT_KEY] = from_url if from_url in SPLIT_MODES else DEFAULT_SPLIT_MODE
    remember_in_url({SPLIT_KEY: st.session_state[SPLIT_KEY]})
    return st.session_state[SPLIT_KEY]


def set_split_mode(mode: str) -> None:
    if mode not in SPLIT_MODES:
        raise WorkbenchError(f"unknown split mode '{mode}'", "split mode")
    st.session_state[SPLIT_KEY] = mode
    remember_in_url({SPLIT_KEY: mode})


def active_split(report: ScanReport, mode: str | None = None) -> pd.Series:
    """train/val/test per readable file, in ``mode`` (default: the shared split mode)."""
    mode = mode or split_mode()
    return _split(report.fingerprint, mode, report.threshold, report)


@st.cache_data(show_spinner=False, max_entries=4000)
def cached_thumbnail(fingerprint: str, path: str, size: int = 96) -> np.ndarray | None:
    """A thumbnail of one file (None if it cannot be decoded); computed only when drawn."""
    try:
        return thumbnail(path, size)
    except WorkbenchError:
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def cached_image(fingerprint: str, path: str) -> DecodedImage:
    """One decoded image at full size (for the large view)."""
    return decode_image(path)


def thumbnails(ds: Dataset, paths: list[str], size: int = 96) -> list[np.ndarray]:
    """Thumbnails for relative paths (a black square stands in for an unreadable file)."""
    out = []
    for rel in paths:
        thumb = cached_thumbnail(ds.fingerprint, str(ds.abspath(rel)), size)
        out.append(thumb if thumb is not None else np.zeros((size, size), np.uint8))
    return out


# --- settings handed to training --------------------------------------------------------------

def augment_config() -> AugmentConfig:
    """The augmentation the Train page will use (default: the shipped model's preset)."""
    if not isinstance(st.session_state.get(AUGMENT_KEY), AugmentConfig):
        name = st.query_params.get(QUERY_AUGMENT)
        st.session_state[AUGMENT_KEY] = AUGMENT_PRESETS[name if name in AUGMENT_PRESETS else DEFAULT_AUGMENT]
    return st.session_state[AUGMENT_KEY]


def set_augment_config(cfg: AugmentConfig) -> None:
    st.session_state[AUGMENT_KEY] = cfg
    preset = next((name for name, p in AUGMENT_PRESETS.items() if p == cfg), None)
    if preset is None:  # a hand-tuned config does not fit in the address: it lasts for the session
        st.query_params.pop(QUERY_AUGMENT, None)
    else:
        remember_in_url({QUERY_AUGMENT: preset})

"""Every core.data.explore function and the Dataset Explorer page on awkward but legal datasets.

The demo and the Kaggle data always contain duplicates, so they never exercise the empty
paths. These datasets are built in tmp_path from small generated PNGs:

* ``no-duplicates``: distinct phantoms, no exact or near copies at all;
* ``one-per-class``: a single image per class (four classes);
* ``unreadable``: a normal dataset with one corrupt and one empty file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core.classes import CANONICAL_CLASSES
from core.data import explore
from core.data.datasets import open_folder
from core.data.demo import phantom
from core.data.scan import ScanReport, scan_dataset
from core.data.splits import make_split
from core.reports import charts

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIDE = 64


def _write_phantoms(root: Path, counts: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = Path(folder).name
            cv2.imwrite(str(root / folder / f"{label}_{i:02d}.png"), phantom(label, rng, SIDE))


def no_duplicates(root: Path) -> None:
    _write_phantoms(root, {f"Training/{c}": 3 for c in ("glioma", "notumor")}, seed=1)
    _write_phantoms(root, {f"Testing/{c}": 1 for c in ("glioma", "notumor")}, seed=2)


def one_per_class(root: Path) -> None:
    _write_phantoms(root, {c: 1 for c in CANONICAL_CLASSES}, seed=3)


def unreadable(root: Path) -> None:
    _write_phantoms(root, {c: 2 for c in ("glioma", "meningioma")}, seed=4)
    (root / "glioma" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "meningioma" / "empty.jpg").write_bytes(b"")


DATASETS: dict[str, Callable[[Path], None]] = {
    "no-duplicates": no_duplicates,
    "one-per-class": one_per_class,
    "unreadable": unreadable,
}


@pytest.fixture(params=list(DATASETS))
def edge_dataset(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    root = tmp_path / request.param
    DATASETS[request.param](root)
    return request.param, root


def _scan(root: Path) -> ScanReport:
    return scan_dataset(open_folder(root), workers=1)


# --- the datasets are what they claim ----------------------------------------------------------

def test_the_edge_datasets_have_the_intended_shape(edge_dataset):
    name, root = edge_dataset
    report = _scan(root)
    assert report.groups("near_group") == [] and report.groups("exact_group") == []
    if name == "one-per-class":
        assert report.readable["label"].value_counts().tolist() == [1, 1, 1, 1]
    if name == "unreadable":
        assert sorted(Path(p).name for p, _ in report.unreadable()) == ["corrupt.png", "empty.jpg"]


# --- every core.data.explore function --------------------------------------------------------------

DUP_COLUMNS = ["group", "path", "label", "split", "spans_splits", "mixed_labels"]


@pytest.mark.parametrize("column", ["near_group", "exact_group"])
@pytest.mark.parametrize("mode", [None, "leakage_free", "dataset"])
def test_duplicate_groups_keeps_its_columns_and_filters_when_empty(edge_dataset, column, mode):
    report = _scan(edge_dataset[1])
    split = make_split(report, mode=mode) if mode else None
    dups = explore.duplicate_groups(report, column, split)
    assert list(dups.columns) == DUP_COLUMNS and dups.empty
    # What the page does with it: boolean filters must stay filters, not column look-ups.
    for flag in ("spans_splits", "mixed_labels"):
        assert dups[flag].dtype == bool
        filtered = dups[dups[flag]]
        assert list(filtered.columns) == DUP_COLUMNS and filtered.empty
    assert list(dict.fromkeys(dups["group"])) == []


def test_split_names_and_class_balance(edge_dataset):
    report = _scan(edge_dataset[1])
    for split in (None, make_split(report)):
        names = explore.split_names(report, split)
        assert len(names) == len(report.readable) and names.notna().all()
        balance = explore.class_balance(report, split)
        assert list(balance.columns) == ["split", "label", "count", "share"]
        assert balance["count"].sum() == len(report.readable)
        assert set(balance["label"]) == set(report.class_names)
        for part in balance["split"].unique():
            ratio = explore.imbalance_ratio(balance, part)
            assert ratio >= 1.0
        assert explore.imbalance_ratio(balance) >= 1.0
        charts.class_balance_chart(balance).to_dict()


def test_sample_grid_on_small_datasets(edge_dataset):
    report = _scan(edge_dataset[1])
    files = report.readable
    grid = explore.sample_grid(files, 6, seed=0)
    assert len(grid) == len(files)  # fewer images than asked: all of them
    assert list(grid.columns) == list(files.columns)
    none = explore.sample_grid(files, 6, seed=0, classes=[])
    assert none.empty and list(none.columns) == list(files.columns)
    none = explore.sample_grid(files, 0, seed=0)
    assert none.empty and list(none.columns) == list(files.columns)


def test_class_views_on_small_datasets(edge_dataset):
    report = _scan(edge_dataset[1])
    hists = explore.class_histograms(report)
    assert list(hists.columns) == ["label", "intensity", "share"]
    assert set(hists["label"]) == set(report.class_names)
    mix = explore.size_mode_mix(report)
    assert list(mix.columns) == ["label", "size", "mode", "count"]
    assert mix["count"].sum() == len(report.readable)
    charts.class_histogram_chart(hists).to_dict()
    path = report.readable["path"].iloc[0]
    thumb = explore.thumbnail(edge_dataset[1] / path, 32)
    assert thumb.dtype == np.uint8 and max(thumb.shape) == 32
    hist = explore.intensity_histogram(thumb, 16)
    assert hist["count"].sum() == thumb.size


def test_leak_summary_and_naive_split(edge_dataset):
    report = _scan(edge_dataset[1])
    for split in (None, make_split(report), explore.naive_split(report)):
        leaks = explore.leak_summary(report, split)
        assert leaks["n_test_with_train_twin"] == 0 and leaks["n_val_with_train_twin"] == 0
        assert leaks["share_test_with_train_twin"] == 0.0 and leaks["groups"] == []
    naive = explore.naive_split(report)
    assert naive.index.equals(report.readable.index) and set(naive) <= {"train", "val", "test"}


def test_empty_results_have_declared_columns_and_dtypes():
    """The empty builders on their own, independent of any dataset."""
    empty = pd.DataFrame({"path": pd.Series(dtype=str), "label": pd.Series(dtype=str),
                          "source_split": pd.Series(dtype=str)})
    grid = explore.sample_grid(empty, 3, seed=0)
    assert grid.empty and list(grid.columns) == ["path", "label", "source_split"]


# --- the Dataset Explorer page ----------------------------------------------------------------

SECTIONS = ["Class balance", "Samples", "Classes", "Data quality", "Tumour types"]


@pytest.fixture
def explorer(edge_dataset, monkeypatch: pytest.MonkeyPatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(edge_dataset[1]))
    return AppTest.from_file(str(PROJECT_ROOT / "pages" / "1_Dataset_Explorer.py"), default_timeout=60)


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


@pytest.mark.parametrize("mode", ["leakage_free", "dataset"])
def test_explorer_draws_every_section_and_control(explorer, edge_dataset, mode):
    at = explorer.run()
    assert not at.exception, at.exception
    from core.safetext import escape_markdown  # names are shown literally: "no\\-duplicates" in Markdown

    assert any(f"**{escape_markdown(edge_dataset[0])}**" in c.value for c in at.caption)
    if [r for r in at.radio if r.key == "explorer_split_widget"]:
        at.radio(key="explorer_split_widget").set_value(mode).run()
    else:  # issue 14, item 17: without a Testing folder there is one split, and the page says so
        assert any("has no Testing folder" in c.value for c in at.caption)
    for section in SECTIONS:
        at.segmented_control(key="explorer_section").set_value(section).run()
        assert not at.exception, (section, at.exception)
        assert not _errors(at), (section, _errors(at))
    # Every control of Data quality, on a dataset without a single duplicate.
    at.segmented_control(key="explorer_section").set_value("Data quality").run()
    for kind in ("exact_group", "near_group"):
        at.radio(key="explorer_dup_kind").set_value(kind).run()
        at.toggle(key="explorer_dup_across").set_value(True).run()
        assert not at.exception, (kind, at.exception)
        at.toggle(key="explorer_dup_across").set_value(False).run()
        assert not at.exception, (kind, at.exception)
    assert any(s.value == "None found." for s in at.success)
    if edge_dataset[0] == "unreadable":
        table = next(df.value for df in at.dataframe if "reason" in getattr(df.value, "columns", []))
        assert sorted(Path(p).name for p in table["file"]) == ["corrupt.png", "empty.jpg"]
    else:
        assert any(s.value.endswith("listed files decode.") for s in at.success)


def test_every_table_keeps_its_columns_when_nothing_is_readable(tmp_path):
    root = tmp_path / "all-bad"
    for label in ("glioma", "notumor"):
        (root / label).mkdir(parents=True)
        (root / label / "broken.png").write_bytes(b"not a png")
    report = _scan(root)
    assert report.readable.empty
    balance = explore.class_balance(report)
    assert list(balance.columns) == ["split", "label", "count", "share"] and balance["count"].sum() == 0
    assert explore.imbalance_ratio(balance) == 1.0
    assert list(explore.size_mode_mix(report).columns) == ["label", "size", "mode", "count"]
    assert list(explore.class_histograms(report).columns) == ["label", "intensity", "share"]
    for column in ("near_group", "exact_group"):
        dups = explore.duplicate_groups(report, column)
        assert list(dups.columns) == DUP_COLUMNS and dups["spans_splits"].dtype == bool
    grid = explore.sample_grid(report.readable, 3, seed=0)
    assert grid.empty and "label" in grid.columns
    leaks = explore.leak_summary(report)
    assert leaks["n_test"] == 0 and leaks["share_test_with_train_twin"] == 0.0

"""core.data.explore (sample grids, balance, histograms, duplicates, leaks) and core.reports.charts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data import explore
from core.data.datasets import open_folder
from core.data.demo import DEMO_COUNTS, PLANTED_EXACT, PLANTED_NEAR
from core.data.scan import ScanReport, scan_dataset
from core.data.splits import make_split
from core.errors import WorkbenchError
from core.reports import charts

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_report(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> ScanReport:
    """The demo scanned once per module, with its cache in a tmp folder (never ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("explore-cache")))
        return scan_dataset(open_folder(demo_root, kind="demo", synthetic=True))


# --- sample_grid ------------------------------------------------------------------------------

def test_sample_grid_is_deterministic_for_a_seed(demo_report):
    a = explore.sample_grid(demo_report.readable, 5, seed=7)
    b = explore.sample_grid(demo_report.readable, 5, seed=7)
    c = explore.sample_grid(demo_report.readable, 5, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["path"]) != list(c["path"])


def test_sample_grid_ignores_input_row_order(demo_report):
    shuffled = demo_report.readable.sample(frac=1.0, random_state=3)
    a = explore.sample_grid(demo_report.readable, 4, seed=1)
    b = explore.sample_grid(shuffled, 4, seed=1)
    assert sorted(a["path"]) == sorted(b["path"])


def test_sample_grid_is_stratified_and_never_repeats(demo_report):
    grid = explore.sample_grid(demo_report.readable, 6, seed=0)
    assert grid["label"].value_counts().to_dict() == {c: 6 for c in demo_report.class_names}
    assert grid["path"].is_unique
    assert set(grid.index) <= set(demo_report.readable.index)  # original rows, index kept


def test_sample_grid_never_returns_more_than_available():
    files = pd.DataFrame({"path": ["a", "b", "c", "d"], "label": ["x", "x", "x", "y"],
                          "source_split": ["train"] * 4})
    grid = explore.sample_grid(files, 10, seed=0)
    assert grid["label"].value_counts().to_dict() == {"x": 3, "y": 1}
    assert explore.sample_grid(files, 0, seed=0).empty


def test_sample_grid_filters_classes_and_splits(demo_report):
    grid = explore.sample_grid(demo_report.readable, 30, seed=2, classes=["glioma", "pituitary"],
                               splits=["test"])
    assert set(grid["label"]) == {"glioma", "pituitary"}
    assert set(grid["source_split"]) == {"test"}
    assert (grid["label"] == "pituitary").sum() == DEMO_COUNTS["Testing"]  # 20 available < 30 asked
    assert explore.sample_grid(demo_report.readable, 3, seed=2, classes=[]).empty


def test_hiding_a_class_keeps_the_other_classes_samples(demo_report):
    full = explore.sample_grid(demo_report.readable, 4, seed=5)
    some = explore.sample_grid(demo_report.readable, 4, seed=5, classes=["meningioma", "notumor"])
    assert list(some["path"]) == list(full[full["label"].isin(["meningioma", "notumor"])]["path"])


def test_sample_grid_leaves_its_input_unmodified(demo_report):
    before = demo_report.readable.copy()
    explore.sample_grid(demo_report.readable, 3, seed=1, classes=["glioma"], splits=["train"])
    pd.testing.assert_frame_equal(before, demo_report.readable)


# --- class balance ----------------------------------------------------------------------------

def test_class_balance_counts_the_demo(demo_report):
    bal = explore.class_balance(demo_report)
    counts = {(r.split, r.label): r.count for r in bal.itertuples()}
    train, test = DEMO_COUNTS["Training"], DEMO_COUNTS["Testing"]
    # The planted exact copies are all gliomas (core.data.demo); near-copies: 2 gliomas, 1 meningioma.
    assert counts[("train", "glioma")] == train + PLANTED_EXACT
    assert counts[("train", "notumor")] == train
    assert counts[("test", "glioma")] == test + 2 and counts[("test", "meningioma")] == test + 1
    assert bal["count"].sum() == len(demo_report.readable)
    np.testing.assert_allclose(bal.groupby("split")["share"].sum(), 1.0)
    assert list(bal.columns) == ["split", "label", "count", "share"]


def test_class_balance_follows_a_given_split(demo_report):
    split = make_split(demo_report, DataConfig(), "leakage_free")
    bal = explore.class_balance(demo_report, split)
    assert list(bal["split"].unique()) == ["train", "val", "test"]
    for name, n in split.value_counts().items():
        assert bal.loc[bal["split"] == name, "count"].sum() == n


def test_class_balance_fills_missing_classes_with_zero(demo_report):
    files = demo_report.readable
    split = pd.Series(np.where(files["label"] == "glioma", "test", "train"), index=files.index)
    bal = explore.class_balance(demo_report, split)
    assert len(bal) == 2 * len(demo_report.class_names)
    assert bal.set_index(["split", "label"]).loc[("train", "glioma"), "count"] == 0
    assert explore.imbalance_ratio(bal, "train") == float("inf")


def test_imbalance_ratio():
    bal = pd.DataFrame({"split": ["train"] * 2 + ["test"] * 2, "label": ["a", "b"] * 2,
                        "count": [30, 10, 5, 5], "share": [0.75, 0.25, 0.5, 0.5]})
    assert explore.imbalance_ratio(bal, "train") == pytest.approx(3.0)
    assert explore.imbalance_ratio(bal, "test") == pytest.approx(1.0)
    assert explore.imbalance_ratio(bal) == pytest.approx(35 / 15)
    assert explore.imbalance_ratio(bal.iloc[0:0]) == 1.0


# --- images -----------------------------------------------------------------------------------

def test_thumbnail_fits_the_box_and_keeps_aspect(tmp_path, image_writer, pixels):
    wide = np.zeros((40, 80), np.uint8)
    path = image_writer(tmp_path / "wide.png", pixels=wide)
    thumb = explore.thumbnail(path, 32)
    assert thumb.dtype == np.uint8 and thumb.shape == (16, 32)
    small = image_writer(tmp_path / "small.png", pixels=pixels(1, size=24))
    assert explore.thumbnail(small, 96).shape == (24, 24)  # never enlarged


def test_thumbnail_of_a_broken_file_raises_a_workbench_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(WorkbenchError, match="broken.png"):
        explore.thumbnail(bad, 32)


@pytest.mark.parametrize("bins", [8, 32, 256])
def test_intensity_histogram_sums_to_the_pixel_count(pixels, bins):
    img = pixels(3, size=40)
    img[0, 0], img[0, 1] = 0, 255  # the extremes land in the first and last bins
    hist = explore.intensity_histogram(img, bins)
    assert len(hist) == bins
    assert hist["count"].sum() == img.size
    assert hist["share"].sum() == pytest.approx(1.0)
    assert hist["start"].iloc[0] == 0 and hist["end"].iloc[-1] == 256
    assert hist["count"].iloc[0] >= 1 and hist["count"].iloc[-1] >= 1


def test_class_views(demo_report):
    for skip in (True, False):
        hists = explore.class_histograms(demo_report, skip_background=skip)
        np.testing.assert_allclose(hists.groupby("label")["share"].sum(), 1.0)
        assert (hists["intensity"] > 8).all() == skip
    mix = explore.size_mode_mix(demo_report)
    assert mix["count"].sum() == len(demo_report.readable)
    assert set(mix["size"]) == {"128×128"}


# --- duplicates and leaks ---------------------------------------------------------------------

def test_exact_duplicate_groups_of_the_demo(demo_report):
    dups = explore.duplicate_groups(demo_report, "exact_group")
    assert dups["group"].nunique() == PLANTED_EXACT
    assert (dups.groupby("group").size() == 2).all()
    assert not dups["spans_splits"].any() and not dups["mixed_labels"].any()


def test_near_duplicate_groups_mark_the_cross_split_ones(demo_report):
    dups = explore.duplicate_groups(demo_report, "near_group")
    spanning = dups[dups["spans_splits"]]
    assert spanning["group"].nunique() == PLANTED_NEAR
    assert set(spanning["split"]) == {"train", "test"}
    assert explore.duplicate_groups(demo_report, "near_group", make_split(demo_report))["spans_splits"].sum() == 0


def test_leak_summary_finds_the_planted_near_copies(demo_report):
    leaks = explore.leak_summary(demo_report)
    assert leaks["n_test_with_train_twin"] == PLANTED_NEAR
    assert leaks["n_test"] == 4 * DEMO_COUNTS["Testing"] + PLANTED_NEAR
    assert leaks["share_test_with_train_twin"] == pytest.approx(PLANTED_NEAR / leaks["n_test"])
    assert len(leaks["groups"]) == PLANTED_NEAR
    assert all(any(p.startswith("Testing/") for p in g) for g in leaks["groups"])


def test_leakage_free_split_has_no_leaks(demo_report):
    leaks = explore.leak_summary(demo_report, make_split(demo_report, DataConfig(), "leakage_free"))
    assert leaks["n_test_with_train_twin"] == 0 and leaks["n_val_with_train_twin"] == 0
    assert leaks["groups"] == [] and leaks["n_test"] > 0


def test_naive_split_ignores_groups_but_keeps_sizes(demo_report):
    naive = explore.naive_split(demo_report)
    grouped = make_split(demo_report, DataConfig(), "leakage_free")
    assert naive.index.equals(demo_report.readable.index)
    assert set(naive) == {"train", "val", "test"}
    assert abs((naive == "test").sum() - (grouped == "test").sum()) <= 8


# --- charts and layering ----------------------------------------------------------------------

def test_charts_build_valid_specs(demo_report, pixels):
    specs = [
        charts.class_balance_chart(explore.class_balance(demo_report)).to_dict(),
        charts.histogram_chart(explore.intensity_histogram(pixels(0), 16)).to_dict(),
        charts.class_histogram_chart(explore.class_histograms(demo_report)).to_dict(),
    ]
    assert all("$schema" in s for s in specs)


def test_core_explore_modules_never_import_streamlit():
    code = ("import sys, core.data.explore, core.reports.charts, core.data.teaching; "
            "assert 'streamlit' not in sys.modules; assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)

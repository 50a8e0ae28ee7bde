"""core.data.splits: grouped, stratified, seeded splits, and the folder's own split in 'dataset' mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.datasets import open_folder
from core.data.scan import ScanReport, scan_dataset
from core.data.splits import SPLIT_MODES, grouped_split, make_split

CLASS_SHARES = {"glioma": 0.4, "meningioma": 0.3, "notumor": 0.2, "pituitary": 0.1}


def synthetic_files(n: int = 600, seed: int = 0, test_share: float = 0.0) -> pd.DataFrame:
    """Scan-like rows: labels in CLASS_SHARES proportions, ~40 % of rows in near groups of 2-5."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(list(CLASS_SHARES), size=n, p=list(CLASS_SHARES.values()))
    near = np.full(n, -1)
    order = rng.permutation(n)
    cursor, gid = 0, 0
    while cursor < int(0.4 * n):
        size = int(rng.integers(2, 6))
        members = order[cursor : cursor + size]
        near[members] = gid
        labels[members] = labels[members[0]]  # a group shares its label...
        cursor, gid = cursor + size, gid + 1
    labels[order[0]] = "pituitary" if labels[order[0]] != "pituitary" else "glioma"  # ...except one
    source = np.where(rng.random(n) < test_share, "test", "train")
    return pd.DataFrame(
        {
            "path": [f"f{i}.png" for i in range(n)],
            "label": labels,
            "source_split": source,
            "near_group": near,
            "ok": True,
        },
        index=pd.RangeIndex(100, 100 + n),  # not starting at 0: catches positional/label mix-ups
    )


def report_for(files: pd.DataFrame) -> ScanReport:
    return ScanReport("fp", sorted(CLASS_SHARES), 20, files, {}, {})


def _groups_within_one_split(files: pd.DataFrame, split: pd.Series) -> bool:
    grouped = files["near_group"] >= 0
    return bool((split[grouped].groupby(files.loc[grouped, "near_group"]).nunique() == 1).all())


def test_every_near_duplicate_group_stays_in_one_split() -> None:
    files = synthetic_files()
    split = grouped_split(files, {"test": 0.15, "val": 0.15}, seed=3)
    assert split.index.equals(files.index)
    assert set(split) == {"train", "val", "test"}
    assert _groups_within_one_split(files, split)
    assert report_for(files).cross_split_leaks(split) == []


def test_split_sizes_follow_the_fractions() -> None:
    files = synthetic_files()
    shares = grouped_split(files, {"test": 0.15, "val": 0.2}, seed=1).value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
    assert shares["val"] == pytest.approx(0.2, abs=0.03)
    assert shares["train"] == pytest.approx(0.65, abs=0.04)


def test_class_proportions_are_roughly_equal_across_splits() -> None:
    files = synthetic_files(n=1000)
    split = grouped_split(files, {"test": 0.15, "val": 0.15}, seed=7)
    overall = files["label"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        part = files.loc[split == name, "label"].value_counts(normalize=True)
        for label, share in overall.items():
            assert part.get(label, 0.0) == pytest.approx(share, abs=0.05), (name, label)


def test_same_seed_same_split_other_seed_other_split() -> None:
    files = synthetic_files()
    a = grouped_split(files, {"test": 0.15, "val": 0.15}, seed=42)
    b = grouped_split(files.copy(), {"test": 0.15, "val": 0.15}, seed=42)
    c = grouped_split(files, {"test": 0.15, "val": 0.15}, seed=43)
    pd.testing.assert_series_equal(a, b)
    assert (a != c).mean() > 0.1


def test_input_rows_are_not_modified() -> None:
    files = synthetic_files()
    before = files.copy()
    grouped_split(files, {"test": 0.15, "val": 0.15}, seed=0)
    pd.testing.assert_frame_equal(files, before)


def test_zero_fractions_put_everything_in_train() -> None:
    files = synthetic_files(n=50)
    split = make_split(report_for(files), DataConfig(val_fraction=0, test_fraction=0))
    assert set(split) == {"train"}


def test_make_split_uses_the_config_seed_and_skips_unreadable_files() -> None:
    files = synthetic_files()
    files.loc[files.index[:5], "ok"] = False
    report = report_for(files)
    split = make_split(report, DataConfig(split_seed=5))
    assert split.index.equals(report.readable.index)
    pd.testing.assert_series_equal(split, make_split(report, DataConfig(split_seed=5)))
    assert not split.equals(make_split(report, DataConfig(split_seed=6)))
    assert _groups_within_one_split(report.readable, split)


def test_dataset_mode_keeps_the_folders_test_split() -> None:
    files = synthetic_files(test_share=0.2)
    report = report_for(files)
    split = make_split(report, DataConfig(val_fraction=0.1), mode="dataset")
    is_test = files["source_split"] == "test"
    assert (split[is_test] == "test").all()
    assert set(split[~is_test]) == {"train", "val"}
    assert (split[~is_test] == "val").mean() == pytest.approx(0.1, abs=0.03)
    train_part = files[~is_test]
    assert _groups_within_one_split(train_part, split[~is_test])


def test_dataset_mode_without_a_test_folder_falls_back_to_grouped() -> None:
    files = synthetic_files()
    report = report_for(files)
    pd.testing.assert_series_equal(
        make_split(report, mode="dataset"), make_split(report, mode="leakage_free")
    )


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split mode"):
        make_split(report_for(synthetic_files(n=20)), mode="random")
    assert set(SPLIT_MODES) == {"leakage_free", "dataset"}


def test_demo_split_has_no_leaks_in_either_mode(demo_root: Path) -> None:
    report = scan_dataset(open_folder(demo_root))
    assert len(report.cross_split_leaks()) == 3  # the folder's own split leaks, as planted
    grouped = make_split(report)
    assert report.cross_split_leaks(grouped) == []
    kept = make_split(report, mode="dataset")
    assert (kept[report.readable["source_split"] == "test"] == "test").all()

"""Stratified, seeded, group-aware train/validation/test splits.

Near-duplicate groups (from the scan) are assigned whole, so a slice and its re-encoded or
shifted copy never sit on both sides of the train/test line. Without this, accuracy on
public MRI datasets is inflated by memorised near-copies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.scan import ScanReport

SPLIT_MODES = {
    "leakage_free": "Near-duplicates kept together (recommended)",
    "dataset": "The folder's own Training/Testing split (may leak near-duplicates)",
}


def _group_ids(files: pd.DataFrame) -> pd.Series:
    """One id per near-duplicate group; singletons get their own id."""
    singles = -(files.index.to_series() + 1)
    return files["near_group"].where(files["near_group"] >= 0, singles)


def grouped_split(files: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """Assign each readable file to a split name, keeping groups whole and classes stratified.

    Args:
        files: scan rows with ``label`` and ``near_group``.
        fractions: e.g. {"test": 0.15, "val": 0.15}; the remainder goes to "train".
        seed: the same seed always gives the same split.
    Returns:
        Series of split names aligned to ``files.index``.
    """
    rng = np.random.default_rng(seed)
    gid = _group_ids(files)
    # A group's class is its majority label (conflicting groups are rare and reported).
    group_label = files.groupby(gid)["label"].agg(lambda s: s.value_counts().index[0])
    group_size = gid.value_counts()
    assigned: dict = {}
    for label in sorted(group_label.unique()):
        groups = np.array(sorted(group_label.index[group_label == label]))
        rng.shuffle(groups)
        total = int(group_size[groups].sum())
        cursor = 0
        for split, frac in fractions.items():
            target, taken = frac * total, 0
            while cursor < len(groups) and taken + group_size[groups[cursor]] / 2 <= target:
                taken += group_size[groups[cursor]]
                assigned[groups[cursor]] = split
                cursor += 1
    return gid.map(assigned).fillna("train").astype(object)


def make_split(report: ScanReport, cfg: DataConfig = DataConfig(), mode: str = "leakage_free") -> pd.Series:
    """Split name (train/val/test) for every readable file of a scanned dataset.

    ``dataset`` mode keeps the folder's own test split when it has one (and holds validation
    out of its training part); ``leakage_free`` pools everything and splits by groups.
    """
    files = report.readable
    has_test = (files["source_split"] == "test").any()
    if mode == "dataset" and has_test:
        out = pd.Series("test", index=files.index, dtype=object)
        train_part = files[files["source_split"] != "test"]
        out[train_part.index] = grouped_split(train_part, {"val": cfg.val_fraction}, cfg.split_seed)
        return out
    if mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {mode}")
    return grouped_split(files, {"test": cfg.test_fraction, "val": cfg.val_fraction}, cfg.split_seed)

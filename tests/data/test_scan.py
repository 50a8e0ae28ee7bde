"""core.data.scan: decoding, exact and near-duplicate groups, unreadable files, the cache, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.datasets import open_folder
from core.data.demo import phantom
from core.data.scan import HIST_BINS, MEAN_SIZE, scan_dataset

SIDE = 128  # pHash needs some structure; 128-px phantoms still encode in microseconds


def _phantom(label: str, seed: int) -> np.ndarray:
    return phantom(label, np.random.default_rng(seed), SIDE)


def _save(path: Path, pixels: np.ndarray, **kwargs) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path.as_posix()


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, dict]:
    """A Kaggle-layout dataset with planted copies; returns (root, expectations)."""
    root = tmp_path / "crafted"
    tr, te = root / "Training", root / "Testing"
    g0, g1, g2 = (_phantom("glioma", s) for s in (1, 2, 3))
    n0, n1, n2 = (_phantom("notumor", s) for s in (4, 5, 6))
    m0, p0, p1 = _phantom("meningioma", 7), _phantom("pituitary", 8), _phantom("pituitary", 9)
    m1, m2 = _phantom("meningioma", 10), _phantom("meningioma", 11)
    for name, px in {"glioma/g0.png": g0, "glioma/g1.png": g1, "glioma/g2.png": g2,
                     "notumor/n0.png": n0, "notumor/n1.png": n1, "notumor/n2.png": n2,
                     "meningioma/m0.png": m0, "meningioma/m1.png": m1,
                     "pituitary/p0.png": p0}.items():  # fmt: skip
        _save(tr / name, px)
    (tr / "glioma" / "g0_copy.png").write_bytes((tr / "glioma" / "g0.png").read_bytes())  # exact
    _save(tr / "notumor" / "n1_shift.png", np.roll(n1, 1, axis=1))  # shifted by one pixel
    _save(te / "glioma" / "g1_reencoded.jpg", g1, quality=70)  # re-encoded, crosses the split
    _save(te / "notumor" / "n0_small.png", cv2.resize(n0, (96, 96), interpolation=cv2.INTER_AREA))
    _save(te / "pituitary" / "m0_mislabelled.jpg", m0, quality=85)  # same slice, other label
    _save(te / "meningioma" / "m2.png", m2)
    _save(te / "pituitary" / "p1.png", p1)
    (te / "glioma" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    expect = {
        "exact": [["Training/glioma/g0.png", "Training/glioma/g0_copy.png"]],
        "near": [
            ["Testing/glioma/g1_reencoded.jpg", "Training/glioma/g1.png"],
            ["Testing/notumor/n0_small.png", "Training/notumor/n0.png"],
            ["Testing/pituitary/m0_mislabelled.jpg", "Training/meningioma/m0.png"],
            ["Training/glioma/g0.png", "Training/glioma/g0_copy.png"],
            ["Training/notumor/n1.png", "Training/notumor/n1_shift.png"],
        ],
        "leaks": [
            ["Testing/glioma/g1_reencoded.jpg", "Training/glioma/g1.png"],
            ["Testing/notumor/n0_small.png", "Training/notumor/n0.png"],
            ["Testing/pituitary/m0_mislabelled.jpg", "Training/meningioma/m0.png"],
        ],
        "conflicts": [["Testing/pituitary/m0_mislabelled.jpg", "Training/meningioma/m0.png"]],
        "corrupt": "Testing/glioma/corrupt.png",
    }
    return root, expect


def _sorted(groups: list[list[str]]) -> list[list[str]]:
    return sorted(sorted(g) for g in groups)


def test_exact_and_near_groups_are_found_and_unrelated_images_are_not(crafted) -> None:
    root, expect = crafted
    report = scan_dataset(open_folder(root))
    assert _sorted(report.groups("exact_group")) == expect["exact"]
    assert _sorted(report.groups("near_group")) == _sorted(expect["near"])
    assert _sorted(report.cross_split_leaks()) == _sorted(expect["leaks"])
    assert _sorted(report.label_conflicts()) == expect["conflicts"]
    grouped = {p for g in expect["near"] for p in g}
    loners = report.readable[~report.readable["path"].isin(grouped)]
    assert len(loners) == 6 and (loners["near_group"] == -1).all() and (loners["exact_group"] == -1).all()


def test_threshold_zero_keeps_only_identical_hashes(crafted) -> None:
    root, expect = crafted
    report = scan_dataset(open_folder(root), threshold=0)
    near = report.groups("near_group")
    assert expect["exact"][0] in near  # byte-identical files have identical hashes
    assert all(len(g) == 2 for g in near)


def test_corrupt_file_is_reported_and_the_rest_still_scans(crafted) -> None:
    root, expect = crafted
    report = scan_dataset(open_folder(root))
    unreadable = dict(report.unreadable())
    assert list(unreadable) == [expect["corrupt"]]
    assert (
        "truncated or corrupt" in unreadable[expect["corrupt"]]
        or "not an image" in unreadable[expect["corrupt"]]
    )
    summary = report.summary()
    assert summary["n_files"] == 17 and summary["n_images"] == 16
    assert summary["unreadable"] == [{"path": expect["corrupt"], "reason": unreadable[expect["corrupt"]]}]


def test_listing_problems_appear_among_unreadable(crafted) -> None:
    root, _ = crafted
    (root / "Training" / "glioma" / "notes.txt").write_text("x")
    report = scan_dataset(open_folder(root))
    assert ("Training/glioma/notes.txt", "skipped: '.txt' is not an image type") in report.unreadable()


def test_per_file_columns_and_class_statistics(crafted) -> None:
    root, _ = crafted
    report = scan_dataset(open_folder(root))
    ok = report.readable
    assert set(ok["format"]) == {"PNG", "JPEG"}
    assert set(ok["mode"]) == {"L"}
    assert ((ok["width"] == SIDE) | (ok["width"] == 96)).all()
    assert ok["sha256"].str.len().eq(64).all() and ok["phash"].str.len().eq(128).all()
    assert (ok["colourfulness"] == 0).all()
    for label in report.class_names:
        assert report.class_means[label].shape == (MEAN_SIZE, MEAN_SIZE)
        assert report.class_means[label].dtype == np.float32
        assert 0 <= report.class_means[label].min() and report.class_means[label].max() <= 255
        assert report.class_hists[label].shape == (HIST_BINS,)
        assert report.class_hists[label].sum() == pytest.approx(1.0)
    counts = report.counts()
    assert counts.loc["train"].to_dict() == {"glioma": 4, "meningioma": 2, "notumor": 4, "pituitary": 1}
    assert counts.loc["test"].to_dict() == {"glioma": 1, "meningioma": 1, "notumor": 1, "pituitary": 2}


def test_summary_has_the_documented_keys_and_is_json(crafted) -> None:
    root, _ = crafted
    summary = scan_dataset(open_folder(root)).summary()
    for key in ("classes", "counts", "unreadable", "exact_duplicate_groups", "near_duplicate_groups",
                "cross_split_leaks", "label_conflicts", "n_files", "n_images", "fingerprint"):  # fmt: skip
        assert key in summary
    assert json.loads(json.dumps(summary)) == summary
    assert summary["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert summary["counts"]["train"]["glioma"] == 4


def test_second_scan_comes_from_the_cache_with_the_same_summary(crafted, isolated_workbench_dirs) -> None:
    root, _ = crafted
    first = scan_dataset(open_folder(root))
    assert not first.from_cache
    assert list((isolated_workbench_dirs["cache"] / "scans").glob("*.json")), "the scan is cached"
    calls = []
    second = scan_dataset(open_folder(root), progress=lambda done, total: calls.append((done, total)))
    assert second.from_cache
    assert calls[-1] == (17, 17)
    strip = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "from_cache")}  # noqa: E731
    assert strip(second.summary()) == strip(first.summary())
    for label in first.class_names:
        np.testing.assert_array_equal(first.class_means[label], second.class_means[label])
    pd.testing.assert_frame_equal(first.files.reset_index(drop=True), second.files.reset_index(drop=True),
                                  check_dtype=False)  # fmt: skip


def test_cached_scan_regroups_for_a_new_threshold(crafted) -> None:
    root, _ = crafted
    scan_dataset(open_folder(root), threshold=20)
    strict = scan_dataset(open_folder(root), threshold=0)
    assert strict.from_cache and strict.threshold == 0
    loose = scan_dataset(open_folder(root), threshold=64)
    assert loose.from_cache and loose.threshold == 64
    # Tightening the threshold can only split groups, loosening only merge them.
    default = scan_dataset(open_folder(root)).groups("near_group")
    assert all(any(set(g) <= set(d) for d in default) for g in strict.groups("near_group"))
    assert all(any(set(g) <= set(big) for big in loose.groups("near_group")) for g in default)
    assert len(loose.groups("near_group")) < len(default) or sum(map(len, loose.groups("near_group"))) > sum(
        map(len, default))


def test_a_changed_file_invalidates_the_cache(crafted) -> None:
    root, _ = crafted
    scan_dataset(open_folder(root))
    Image.fromarray(_phantom("glioma", 99)).save(root / "Training" / "glioma" / "g2.png")
    again = scan_dataset(open_folder(root))
    assert not again.from_cache


def test_damaged_cache_is_rebuilt(crafted, isolated_workbench_dirs) -> None:
    root, _ = crafted
    first = scan_dataset(open_folder(root)).summary()
    for cached in (isolated_workbench_dirs["cache"] / "scans").glob("*.json"):
        cached.write_text("{ not json")
    again = scan_dataset(open_folder(root))
    assert not again.from_cache
    assert again.summary()["near_duplicate_groups"] == first["near_duplicate_groups"]


def test_progress_reaches_the_total_on_a_cold_scan(crafted) -> None:
    root, _ = crafted
    calls = []
    scan_dataset(open_folder(root), progress=lambda done, total: calls.append((done, total)), use_cache=False)
    assert calls[-1] == (17, 17)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cross_split_leaks_for_a_proposed_split(crafted) -> None:
    root, _ = crafted
    report = scan_dataset(open_folder(root))
    everything_train = pd.Series("train", index=report.readable.index)
    assert report.cross_split_leaks(everything_train) == []


def test_demo_planted_problems_are_found(demo_root: Path) -> None:
    summary = scan_dataset(open_folder(demo_root)).summary()
    assert len(summary["exact_duplicate_groups"]) == 3
    assert len(summary["cross_split_leaks"]) == 3
    assert len(summary["near_duplicate_groups"]) == 6  # 3 exact + 3 shifted copies
    assert summary["label_conflicts"] == [] and summary["unreadable"] == []


def test_two_pixel_shift_is_a_near_duplicate(tmp_path: Path) -> None:
    # As in real scans, the head sits on a black field with a margin; the copy is moved 2 px.
    n2 = np.zeros((SIDE + 16, SIDE + 16), np.uint8)
    n2[8 : 8 + SIDE, 8 : 8 + SIDE] = _phantom("notumor", 6)
    _save(tmp_path / "glioma" / "g.png", _phantom("glioma", 1))
    _save(tmp_path / "notumor" / "n2.png", n2)
    _save(tmp_path / "notumor" / "n2_shift2.png", np.roll(n2, 2, axis=1))
    report = scan_dataset(open_folder(tmp_path))
    assert report.groups("near_group") == [["notumor/n2.png", "notumor/n2_shift2.png"]]

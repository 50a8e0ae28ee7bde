"""core.data.shortcut: global image statistics alone, cross-validated, with an honest verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.shortcut import MIN_PER_CLASS, STATISTICS, image_statistics, shortcut_check


def _heads(n: int, brightness: float, fill: float, seed: int) -> np.ndarray:
    """``n`` 64-px slices: an ellipse 'head' of a given brightness filling ``fill`` of the side."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    out = np.zeros((n, 64, 64), np.uint8)
    for i in range(n):
        r = 32 * fill * rng.uniform(0.9, 1.1)
        head = ((yy - 32) / r) ** 2 + ((xx - 32) / (0.85 * r)) ** 2 < 1
        out[i][head] = np.clip(rng.normal(brightness, 25, head.sum()), 21, 255).astype(np.uint8)
    return out


def test_statistics_are_the_declared_columns_and_read_what_they_say():
    stats = image_statistics(_heads(4, 150, 0.9, 0))
    assert list(stats.columns) == list(STATISTICS) and len(stats) == 4
    small = image_statistics(_heads(4, 150, 0.4, 0))
    assert (stats["box_fill"] > small["box_fill"]).all() and (stats["background"] < small["background"]).all()
    assert (image_statistics(_heads(4, 60, 0.9, 0))["p50"] < stats["p50"]).all()
    blank = image_statistics(np.zeros((1, 32, 32), np.uint8))
    assert blank.loc[0, "background"] == 1.0 and np.isfinite(blank.to_numpy()).all()


def test_classes_that_differ_in_style_are_told_apart_from_style_alone():
    a, b = _heads(30, 80, 0.6, 1), _heads(30, 160, 0.9, 2)
    result = shortcut_check(np.concatenate([a, b]), ["glioma"] * 30 + ["notumor"] * 30)
    assert result.accuracy > 0.9 and result.chance == 0.5
    assert "differ strongly" in result.verdict
    assert set(result.per_class["label"]) == {"glioma", "notumor"}
    assert sum(sum(r.values()) for r in result.confusion.values()) == 60


def test_classes_of_one_style_stay_near_chance():
    images = _heads(60, 120, 0.8, 3)
    result = shortcut_check(images, ["glioma", "notumor"] * 30)
    assert result.accuracy < 0.7
    assert "differ strongly" not in result.verdict


def test_near_duplicate_groups_stay_in_one_fold():
    # Each style is one copied slice: with groups, no fold can learn a group it is tested on.
    a = np.repeat(_heads(5, 80, 0.6, 4), 6, axis=0)
    b = np.repeat(_heads(5, 160, 0.9, 5), 6, axis=0)
    groups = np.repeat(np.arange(10), 6)
    result = shortcut_check(np.concatenate([a, b]), ["glioma"] * 30 + ["notumor"] * 30, groups=groups)
    assert result.grouped and result.accuracy is not None


@pytest.mark.parametrize("labels, reason", [
    (["glioma"] * 12, "fewer than two classes"),
    (["glioma"] * 12 + ["notumor"] * (MIN_PER_CLASS - 1), "too few images"),
])
def test_too_little_data_gives_a_reason_not_a_number(labels, reason):
    result = shortcut_check(_heads(len(labels), 100, 0.7, 6), labels)
    assert result.accuracy is None and reason in result.verdict


def test_scan_json_has_the_shortcut_accuracy(demo_root, capsys):
    from core.cli import main

    assert main(["scan", str(demo_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["shortcut_accuracy"] <= 1 and 0 < out["shortcut_chance"] <= 1
    assert isinstance(out["shortcut_verdict"], str)


def test_file_level_signals_join_the_check_and_colour_mode_is_caught(tmp_path):
    """Issue 24: the same pixels stored as RGB for one class and grayscale for the other."""
    from PIL import Image

    from core.data.shortcut import FILE_STATISTICS, file_statistics, jpeg_quality, shortcut_check

    rng = np.random.default_rng(0)
    images, labels, paths, modes = [], [], [], []
    for i in range(100):  # enough for the boosting's leaves (20 images each) in every fold
        img = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        label, mode = ("notumor", "RGB") if i % 2 else ("glioma", "L")
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(img).convert(mode).save(path, quality=90 if mode == "RGB" else 70)
        images.append(img), labels.append(label), paths.append(path), modes.append(mode)
    files = file_statistics(paths, modes, [32] * 100, [32] * 100)
    assert list(files.columns) == list(FILE_STATISTICS)
    assert files["rgb"].tolist() == [float(m == "RGB") for m in modes]
    assert abs(jpeg_quality(paths[1]) - 90) <= 2 and abs(jpeg_quality(paths[0]) - 70) <= 2
    png = tmp_path / "x.png"
    Image.fromarray(images[0]).save(png)
    assert jpeg_quality(png) == 0.0
    result = shortcut_check(np.stack(images), labels, files=files)
    assert result.file_accuracy is not None and result.file_accuracy >= 0.95
    assert "colour mode" in result.verdict and "file-level signals" in result.verdict
    assert set(FILE_STATISTICS.values()) <= set(result.per_class["statistic"])

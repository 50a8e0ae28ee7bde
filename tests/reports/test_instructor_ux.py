"""Issue 24, instructor: one colour per class in every chart, splits in greys, duplicate groups that say
why they were grouped, the folder's own split folders in words, larger thumbnails."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.data.demo import DEMO_VERSION
from core.reports import charts, eval_charts
from core.reports.colours import CLASS_COLOURS, SPLIT_COLOURS, class_colour
from core.reports.conformal import coverage_chart

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def _scale_of(spec: dict) -> dict[str, str]:
    """label -> colour of every colour scale in a chart spec (any depth)."""
    found: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            scale = node.get("scale") if isinstance(node.get("scale"), dict) else None
            if scale and "domain" in scale and "range" in scale and isinstance(scale["range"], list):
                found.update(zip(scale["domain"], scale["range"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return found


def test_every_class_chart_uses_the_same_colour_per_class_and_splits_are_grey():
    shuffled = ["pituitary", "glioma", "notumor", "meningioma"]  # order of appearance must not matter
    hists = pd.DataFrame({"label": np.repeat(shuffled, 2), "intensity": [0, 1] * 4, "share": 0.5})
    per_class = pd.DataFrame({"label": shuffled, "statistic": "x", "key": "x", "mean": 1.0})
    table = pd.DataFrame({"coverage_target": 0.9, "class": ["all", *shuffled], "coverage": 0.9, "ci_low": 0.8,
                          "ci_high": 0.95, "mean_set_size": 1.0, "n_images": 10, "empty": 0.0})
    roc = pd.DataFrame({"class": np.repeat(shuffled, 2), "fpr": [0, 1] * 4, "tpr": [0, 1] * 4, "threshold": 0.5})
    specs = [charts.class_histogram_chart(hists), charts.shortcut_chart(per_class), coverage_chart(table),
             eval_charts.roc_chart(roc, {c: 0.9 for c in shuffled})]
    for chart in specs:
        scale = _scale_of(chart.to_dict())
        assert scale, chart
        for label, colour in scale.items():
            name = next(n for n in NAMES if label.startswith({"glioma": "Glioma", "meningioma": "Meningioma",
                                                               "notumor": "No tumour", "pituitary": "Pituitary"}[n]))
            assert colour == CLASS_COLOURS[name], (label, colour)
    balance = pd.DataFrame({"label": NAMES * 2, "split": ["train"] * 4 + ["test"] * 4, "count": 5, "share": 0.25})
    split_colours = _scale_of(charts.class_balance_chart(balance).to_dict())
    assert split_colours["test"] == SPLIT_COLOURS["test"]
    assert not set(SPLIT_COLOURS.values()) & set(CLASS_COLOURS.values())
    assert class_colour("No tumour") == class_colour("notumor")


def test_duplicate_groups_say_why_they_were_grouped():
    from core.data.explore import group_reason
    from core.data.hashing import hash_to_hex

    def fingerprint(k: int) -> str:  # k differing bits in both halves (full frame and head crop)
        words = np.zeros(8, np.uint64)
        words[0] = words[4] = np.uint64((1 << k) - 1)
        return hash_to_hex(words)

    readable = pd.DataFrame({"path": ["a", "b", "c"], "phash": [fingerprint(k) for k in (0, 15, 30)]})

    class Report:
        threshold = 20

    report = Report()
    report.readable = readable
    assert "byte-identical" in group_reason(report, ["a", "b"], "exact_group")
    assert group_reason(report, ["a", "b"], "near_group").startswith("the pictures differ in at most 15 of 256")
    chained = group_reason(report, ["a", "b", "c"], "near_group")
    assert "within 20 of 256" in chained and "differ by 30" in chained


@pytest.fixture
def explorer(isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    return AppTest.from_file(str(PROJECT_ROOT / "pages" / "1_Dataset_Explorer.py"), default_timeout=60).run()


def test_explorer_groups_are_numbered_and_explained_and_thumbnails_are_larger(explorer):
    at = explorer
    assert not at.exception
    assert any("folders Training/ and Testing/" in c.value for c in at.caption)  # not "splits: test, train"
    at.segmented_control(key="explorer_section").set_value("Data quality").run()
    assert not at.exception
    headers = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    assert headers and headers[0].startswith("**Group 1 of ")
    assert all("coarse features" in h for h in headers)
    assert any(s.value.endswith("listed files decode.") for s in at.success)
    at.segmented_control(key="explorer_section").set_value("Samples").run()
    # One element per image (each with its own fullscreen view), four a row: 6 per class × 4 classes.
    assert len(at.image) >= 24 and all(len(img.proto.imgs) == 1 for img in at.image)


def test_split_folder_words():
    from pages._shared import split_folders_words

    assert split_folders_words([]) == "class folders only (the app splits them)"
    assert "Training/ folder only" in split_folders_words(["train"])
    assert split_folders_words(["test", "train"]) == "folders Training/ and Testing/"

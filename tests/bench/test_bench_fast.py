"""bench.time_to_accuracy's preset rows and bench.coverage's named sections (no figure is judged)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import coverage
from bench.time_to_accuracy import markdown as tta_markdown

PRESET = {"preset": "fast", "registered_s": 636.0, "wall_s": 750.0, "reached_s": None, "reached_epoch": None,
          "best_val_accuracy": 0.95, "best_epoch": 20, "load_avg_start": [20.0, 0, 0], "load_avg_end": [14.5, 0, 0],
          "test": {"leakage_free": {"accuracy": 0.9534, "ece": 0.012, "n_images": 858}}, "epochs": []}


def _table() -> pd.DataFrame:
    rows = []
    for target in (0.9, 0.95):
        for c in ("all", "glioma", "notumor"):
            rows.append({"coverage_target": target, "class": c, "coverage": 0.9, "ci_low": 0.85, "ci_high": 0.94,
                         "mean_set_size": 1.0, "empty": 0.01})
    return pd.DataFrame(rows)


def test_preset_row_sits_beside_the_precision_runs():
    res = {"machine": {"date": "d", "cpu": "c", "cores": 2, "tensorflow": "t", "keras": "k"}, "load_avg_start": [1.0],
           "load_avg_end": [2.0], "epochs": 10, "cap_min": 20, "target": 0.97, "runs": {},
           "presets": {"fast": PRESET, "broken": {"error": "boom"}}, "preset_notes": ["a note"]}
    text = tta_markdown(res)
    assert "| fast | **10.6 min** | 12.5 min | not reached | 95.00% (20) | **95.34%** of 858 | 0.012 | — | 20.0 → 14.5 |" \
        in text
    assert "| broken | failed |" in text and "- a note" in text
    assert "Presets from a cold command line" not in tta_markdown({**res, "presets": {}})


def test_preset_row_shows_validation_and_test_localisation_side_by_side():
    located = {**PRESET, "val_localisation": {"pointing_game": 0.634, "heat_in_box_ratio": 2.195, "n_images": 213},
               "test": {**PRESET["test"], "localisation": {"pointing_game": 0.627, "heat_in_box_ratio": 2.2,
                                                           "n_images": 233}}}
    res = {"machine": {"date": "d", "cpu": "c", "cores": 2, "tensorflow": "t", "keras": "k"}, "load_avg_start": [1.0],
           "load_avg_end": [2.0], "epochs": 10, "cap_min": 20, "target": 0.97, "runs": {}, "presets": {"fast": located}}
    assert "| 63.4% / 62.7% (2.19× / 2.20×; 213 / 233 slices) |" in tta_markdown(res)
    only_val = {**located, "test": PRESET["test"]}  # a test run without --boxes: its side says so
    assert "| 63.4% / — (2.19× / —; 213 / 0 slices) |" in tta_markdown({**res, "presets": {"fast": only_val}})


def test_named_coverage_sections_are_written_apart_and_kept_by_the_full_benchmark(tmp_path: Path):
    from bench.run import write_markdown
    from bench.sections import write_section

    out = tmp_path / "RESULTS.md"
    write_section(coverage.markdown("RUN9", _table(), None), out, coverage.BEGIN, coverage.END)
    section = coverage.markdown("RUNX", _table(), None, "extra", "9x. Another model", "1,000 images")
    write_section(section, out, *coverage.markers("extra"))
    text = out.read_text()
    assert "## 9. Prediction sets" in text and "## 9x. Another model" in text and "calibrated on 1,000 images" in text
    assert text.count(coverage.BEGIN) == 1 and coverage.markers("extra")[0] != coverage.BEGIN
    recorded = json.loads((Path(__file__).resolve().parents[2] / "bench" / "results.json").read_text())
    write_markdown(recorded, out)  # rewrites sections 1-5; 9 and the named one stay
    text = out.read_text()
    assert "## 9. Prediction sets" in text and "## 9x. Another model" in text

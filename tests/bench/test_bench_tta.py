"""bench.time_to_accuracy without training: the recipe it reads and the RESULTS.md section it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.time_to_accuracy import BEGIN, DEFAULT_CARD, END, markdown, recipe, write_section
from core.training.config import TrainConfig


@pytest.mark.skipif(not DEFAULT_CARD.exists(), reason="the committed default model is absent")
def test_recipe_is_the_default_models_with_shorter_epochs_and_the_precision() -> None:
    cfg = recipe(DEFAULT_CARD, 10, "bfloat16")
    assert cfg["epochs"] == 10 and cfg["precision"] == "bfloat16"
    assert cfg["average_epochs"] == 2  # 10 of 45 epochs, scaled to 10
    assert cfg["width"] == 0.75 and cfg["mixup"] == 0.2
    TrainConfig.from_dict(cfg)  # a valid configuration


def _run(acc: float, reached: float | None) -> dict:
    epochs = [{"epoch": e, "t_s": 100.0 * e, "val_accuracy": 0.9 + e / 100, "val_loss": 0.3} for e in (1, 2, 3)]
    return {"reached_s": reached, "reached_epoch": 3 if reached else None, "best_val_accuracy": 0.93,
            "best_epoch": 3, "best_t_s": 300.0, "epochs_run": 3, "capped": reached is None, "fit_s": 300.0,
            "epochs": epochs, "test": {"accuracy": 0.0, "leakage_free": {"accuracy": acc, "ece": 0.02, "n_images": 858}}}


def test_section_reports_the_images_behind_an_accuracy_difference(tmp_path: Path) -> None:
    res = {"machine": {"date": "d", "cpu": "c", "cores": 2, "tensorflow": "t", "keras": "k"},
           "load_avg_start": [5.0], "load_avg_end": [6.0], "epochs": 3, "cap_min": 20, "target": 0.97,
           "runs": {"float32": _run(800 / 858, None), "bfloat16": _run(803 / 858, 280.0)},
           "notes": ["read by hand"]}
    text = markdown(res)
    assert text.startswith(BEGIN) and text.endswith(END)
    assert "+0.3 pt = +3 of 858 images" in text
    assert "not reached (capped)" in text and "**4.7 min** (epoch 3)" in text
    assert "93.24% of 858" in text
    assert "- read by hand" in text  # leakage-free figure, not the overall one (0.0 here)
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept\n")
    write_section(text, out)
    write_section(text, out)  # a second run replaces the section, never appends it twice
    assert out.read_text().count(BEGIN) == 1 and "kept" in out.read_text()

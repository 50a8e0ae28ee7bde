"""Issue 24, trainer: models compared only on the same images (McNemar in words), readable charts and
tables, the warning thresholds in words, and one line per augmentation preset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import AUGMENT_PRESETS
from core.errors import WorkbenchError
from core.evaluation.paired import COMPARISON_COLUMNS, mcnemar_p, paired_comparison
from core.evaluation.result import EvaluationResult
from core.inference.trust import describe_thresholds
from core.reports.train_charts import curve_frame, history_table, lr_chart, metric_chart
from core.training.preset_notes import DEFAULT_PRESET, PRESET_NOTES, preset_label

NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def _result(run_id: str, predicted: list[str], true: list[str], root: str = "/data", files=None) -> EvaluationResult:
    files = files or [f"f{i}.png" for i in range(len(true))]
    p = pd.DataFrame({"file": files, "true": true, "predicted": predicted, "overlap": False})
    return EvaluationResult(run_id, "sha", "folder", "d", root, "fp", NAMES, p, {}, {}, 0, 1.0)


def test_mcnemar_matches_the_exact_binomial_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 * 0.5 ** 10)  # 0.00195
    assert mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(12, 5) == pytest.approx(0.1435, abs=1e-4)


def test_two_models_are_paired_image_by_image():
    true = ["glioma"] * 20 + ["notumor"] * 20
    a_pred = list(true)
    b_pred = list(true)
    for i in range(12):  # B wrong where A is right on 12 images
        b_pred[i] = "meningioma"
    a_pred[30] = "pituitary"  # A wrong where B is right on one image
    a_pred[31] = b_pred[31] = "glioma"  # both wrong, the same way: not a disagreement
    pair = paired_comparison(_result("A", a_pred, true), _result("B", b_pred, true))
    assert (pair.n_images, pair.only_a_right, pair.only_b_right, pair.both_wrong) == (40, 12, 1, 1)
    assert pair.p_value == pytest.approx(mcnemar_p(12, 1))
    words = pair.sentence()
    assert "On the same 40 images" in words and "A is clearly better" in words and "McNemar" in words
    assert pair.confusion_difference.loc["Glioma", "Glioma"] == -12
    assert pair.confusion_difference.loc["Glioma", "Meningioma"] == 12
    assert int(pair.confusion_difference.to_numpy().sum()) == 0  # the same images on both sides
    assert len(pair.disagreements) == 13 and set(pair.disagreements["right"]) == {"A", "B"}


def test_a_small_difference_is_said_to_be_no_clear_winner():
    true = ["glioma"] * 10
    a_pred, b_pred = list(true), list(true)
    a_pred[0] = "notumor"
    b_pred[1] = b_pred[2] = "notumor"
    words = paired_comparison(_result("A", a_pred, true), _result("B", b_pred, true)).sentence()
    assert "no clear winner" in words


def test_models_scored_on_different_images_are_not_compared():
    true = ["glioma"] * 4
    with pytest.raises(WorkbenchError, match="different folders"):
        paired_comparison(_result("A", true, true, root="/x"), _result("B", true, true, root="/y"))
    with pytest.raises(WorkbenchError, match="different images"):
        paired_comparison(_result("A", true, true), _result("B", true, true, files=["g1", "g2", "g3", "g4"]))


def test_comparison_columns_are_words():
    assert all("_" not in v for v in COMPARISON_COLUMNS.values())
    assert COMPARISON_COLUMNS["leakage_free_macro_f1"] == "Macro-F1 (leakage-free test)"


def test_history_table_and_chart_axes_are_rounded():
    table = history_table([{"epoch": 1, "phase": "train", "loss": 1.234567, "accuracy": 0.3333333,
                            "val_loss": 1.3, "val_accuracy": 0.111111, "lr": 0.00123456, "seconds": 82.9703}])
    row = table.iloc[0]
    assert row["seconds"] == 83 and row["validation accuracy (%)"] == 11.1 and row["training loss"] == 1.235
    assert row["learning rate"] == 0.00123
    curves = curve_frame([{"step": s, "loss": 1.0 / s, "accuracy": 0.1 * s} for s in range(1, 10)],
                         [{"epoch": 1, "val_loss": 0.5, "val_accuracy": 0.111111}], 9)
    spec = str(metric_chart(curves, "accuracy").to_dict())
    assert "'format': '.1~f'" in spec and "'format': '%'" in spec
    assert "'format': '.1~f'" in str(lr_chart([{"step": 1, "lr": 1e-3}], 9).to_dict())


def test_warning_thresholds_are_said_in_words():
    text = describe_thresholds({"min_confidence": 0.0, "max_distance": 19.123, "flag_unstable": True})
    assert "no close-call warning" in text and "19.1" in text and "mirrored slice gets another answer" in text
    assert "True" not in text and "0.000" not in text
    assert "62.5 %" in describe_thresholds({"min_confidence": 0.625, "max_distance": None, "flag_unstable": False})


def test_every_preset_has_one_line_and_the_default_is_the_shipped_models():
    import json
    from pathlib import Path

    assert set(PRESET_NOTES) == set(AUGMENT_PRESETS)
    assert all("\n" not in t and len(t) < 130 for t in PRESET_NOTES.values())
    card = json.loads((Path(__file__).resolve().parents[2] / "models" / "20261201-135406-custom_cnn-a305"
                       / "card.json").read_text())
    shipped = [n for n, p in AUGMENT_PRESETS.items() if p.to_dict() == card["train_config"]["augment"]]
    assert shipped == [DEFAULT_PRESET]
    assert preset_label("none").startswith("none: ") and "custom" in preset_label("custom")
    np.testing.assert_equal(len(PRESET_NOTES), len(AUGMENT_PRESETS))

"""``python -m core evaluate``: JSON keys, text output and exit codes (run in-process)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.models.runs import CARD_FILE, resolve_run

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
METRIC_KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "accuracy_ci", "ece", "n_images"}


@pytest.fixture
def run_id(tiny_run, isolated_workbench_dirs) -> str:
    """A private copy of the tiny run (evaluating writes into its card)."""
    shutil.copytree(tiny_run.path, isolated_workbench_dirs["models"] / tiny_run.run_id)
    return tiny_run.run_id


def test_json_has_every_documented_key(run_id, capsys):
    assert main(["evaluate", "--model", run_id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert METRIC_KEYS | {"per_class", "confusion_matrix", "class_names", "leakage_free", "n_overlapping"} <= set(out)
    assert METRIC_KEYS <= set(out["leakage_free"])
    assert out["eval_set"] == "card_test"
    assert set(out["per_class"]) == set(out["class_names"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    for row in out["per_class"].values():
        assert {"precision", "recall", "specificity", "f1", "support", "recall_ci"} <= set(row)
    cm = out["confusion_matrix"]
    assert len(cm) == 4 and sum(map(sum, cm)) == out["n_images"]
    assert [sum(r) for r in cm] == [out["per_class"][c]["support"] for c in out["class_names"]]  # rows = true


def test_data_root_with_testing_folder_evaluates_its_test_split(run_id, demo_root, capsys):
    assert main(["evaluate", "--model", run_id, "--data", str(demo_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval_set"] == "dataset_test"
    assert out["n_images"] == sum(1 for _ in (demo_root / "Testing").rglob("*.png"))
    # The tiny run pooled Training and Testing before its own split, so Testing holds its training images.
    assert out["n_overlapping"] > 0
    assert out["leakage_free"]["n_images"] == out["n_images"] - out["n_overlapping"]


def test_text_output(run_id, capsys):
    assert main(["evaluate", "--model", run_id]) == 0
    text = capsys.readouterr().out
    assert "leakage-free" in text and "confusion matrix (rows = true" in text and "accuracy [95% CI]" in text


def test_robustness_table_in_text_and_json(run_id, capsys):
    from core.data.shifts import SHIFTS

    assert main(["evaluate", "--model", run_id, "--robustness"]) == 0
    text = capsys.readouterr().out
    assert "robustness to simulated acquisition and source shifts" in text and "not external validation" in text
    assert "ECE" in text
    assert all(shift.title in text for shift in SHIFTS.values())
    assert main(["evaluate", "--model", run_id, "--robustness", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["robustness"]
    assert [r["shift"] for r in rows] == list(SHIFTS)
    assert rows[0]["change"] == 0 and all(0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-such-run"], "no complete model run"),
    (["--model", "{run}", "--data", "/no/such/folder"], "does not exist"),
    (["--model", "{run}", "--set", "folder"], "--data is needed"),
    (["--model", "{run}", "--data", "{demo}", "--set", "card_test"], "leave out --data"),
])
def test_bad_input_exits_2_with_a_clear_message(run_id, demo_root, capsys, argv, message):
    argv = [a.format(run=run_id, demo=demo_root) for a in argv]
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_class_mismatch_exits_2(run_id, demo_root, capsys):
    run = resolve_run(run_id)
    card = json.loads((run.path / CARD_FILE).read_text())
    card["class_names"] = ["glioma", "meningioma", "notumor"]
    card.pop("class_order_sha256")  # as a card from before the class-order binding (which would refuse first)
    (run.path / CARD_FILE).write_text(json.dumps(card))
    assert main(["evaluate", "--model", run_id, "--data", str(demo_root), "--json"]) == 2
    captured = capsys.readouterr()
    assert "class names do not match" in captured.err and captured.out == ""


def test_module_entry_point_lists_evaluate():
    result = subprocess.run([sys.executable, "-m", "core", "evaluate", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout and "--data" in result.stdout

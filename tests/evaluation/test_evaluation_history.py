"""An evaluation never rewrites a card's held-out result nor changes the default model (issue 13, defect 2).

The card's ``evaluation`` holds the result on its own held-out test split, written once; results
on other folders go under ``evaluations``, keyed by what was evaluated. The comparison table and
best_run compare like with like.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_registry import fake_run

from core.evaluation import compare
from core.evaluation.eval_sets import EvalSet
from core.evaluation.evaluate import evaluate_run
from core.models.runs import CARD_FILE, best_run, list_runs, resolve_run


@pytest.fixture
def run_copy(tiny_run, isolated_workbench_dirs):
    dest = isolated_workbench_dirs["models"] / tiny_run.run_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_run.path, dest)
    return resolve_run(tiny_run.run_id)


def small_folder(demo_root: Path, dest: Path, per_class: int = 2) -> Path:
    for cls in ("glioma", "meningioma", "notumor", "pituitary"):
        (dest / cls).mkdir(parents=True)
        for f in sorted((demo_root / "Testing" / cls).glob("*.png"))[:per_class]:
            shutil.copy(f, dest / cls / f.name)
    return dest


def card_of(run) -> dict:
    return json.loads((run.path / CARD_FILE).read_text())


@pytest.mark.slow
def test_other_folder_never_rewrites_the_held_out_result(run_copy, demo_root, tmp_path):
    first = evaluate_run(run_copy, EvalSet("card_test"))
    held = card_of(run_copy)["evaluation"]
    assert held["eval_set"] == "card_test" and held["n_images"] == first.metrics["n_images"]

    other = evaluate_run(run_copy, EvalSet("folder", str(small_folder(demo_root, tmp_path / "other"))))
    card = card_of(run_copy)
    assert card["evaluation"] == held, "the held-out result is kept"
    stored = card["evaluations"][f"folder:{other.dataset_fingerprint}"]
    assert stored["n_images"] == 8 and stored["eval_set"] == "folder"
    assert card["evaluations"][f"card_test:{first.dataset_fingerprint}"]["n_images"] == held["n_images"]
    assert resolve_run(run_copy.run_id).leakage_free_macro_f1() == pytest.approx(held["leakage_free"]["macro_f1"])

    # A second held-out evaluation (here after a recalibration) is stored beside it, not over it.
    card["results"]["temperature"] = 3.0
    (run_copy.path / CARD_FILE).write_text(json.dumps(card))
    again = evaluate_run(resolve_run(run_copy.run_id), EvalSet("card_test"), use_cache=False)
    card = card_of(run_copy)
    assert card["evaluation"] == held
    assert card["evaluations"][f"card_test:{first.dataset_fingerprint}"]["ece"] == pytest.approx(again.metrics["ece"])


@pytest.mark.slow
def test_other_folder_first_leaves_the_held_out_slot_empty(run_copy, demo_root, tmp_path):
    evaluate_run(run_copy, EvalSet("folder", str(small_folder(demo_root, tmp_path / "other"))))
    run = resolve_run(run_copy.run_id)
    assert not run.card.evaluation and run.leakage_free_macro_f1() is None
    assert len(run.card.evaluations) == 1


@pytest.mark.slow
def test_a_card_written_before_the_rule_gets_its_held_out_slot_back(run_copy, demo_root, tmp_path):
    card = card_of(run_copy)
    card["evaluation"] = {"eval_set": "folder", "dataset_fingerprint": "abc", "leakage_free": {"macro_f1": 1.0}}
    (run_copy.path / CARD_FILE).write_text(json.dumps(card))
    run = resolve_run(run_copy.run_id)
    assert run.leakage_free_macro_f1() is None  # a foreign result in the slot does not count
    result = evaluate_run(run, EvalSet("card_test"))
    card = card_of(run_copy)
    assert card["evaluation"]["eval_set"] == "card_test"
    assert card["evaluation"]["leakage_free"]["macro_f1"] == pytest.approx(result.leakage_free["macro_f1"])
    assert card["evaluations"]["folder:abc"]["leakage_free"]["macro_f1"] == 1.0


# --- the comparison table (fake runs, no TensorFlow) ------------------------------------------------------

@pytest.fixture
def models(isolated_workbench_dirs: dict) -> Path:
    root = isolated_workbench_dirs["models"]
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_comparison_table_uses_held_out_figures_only(models):
    fake_run(models / "held-out", evaluation={"eval_set": "card_test", "leakage_free": {"macro_f1": 0.6}})
    fake_run(models / "phantom-folder", evaluation={"eval_set": "folder", "leakage_free": {"macro_f1": 1.0}})
    table = compare.comparison_table(list_runs()).set_index("run")
    assert table.loc["held-out", "best"] and not table.loc["phantom-folder", "best"]
    assert pd_isna(table.loc["phantom-folder", "leakage_free_macro_f1"])
    assert best_run(list_runs()).run_id == "held-out"


def test_comparison_table_prefers_real_data_runs(models):
    fake_run(models / "real", data={"synthetic": False},
             evaluation={"eval_set": "card_test", "leakage_free": {"macro_f1": 0.7}})
    fake_run(models / "phantoms", data={"synthetic": True},
             evaluation={"eval_set": "card_test", "leakage_free": {"macro_f1": 1.0}})
    table = compare.comparison_table(list_runs()).set_index("run")
    assert table.loc["real", "best"] and table["best"].sum() == 1
    only = compare.comparison_table([r for r in list_runs() if r.run_id == "phantoms"])
    assert only["best"].tolist() == [True]


def test_comparison_table_stars_the_ensemble_not_its_higher_scoring_sentinel(models):
    """The table's star and the default agree: a member or sentinel never outranks its ensemble."""
    sha = "0" * 64
    card_test = {"eval_set": "card_test"}
    fake_run(models / "watch", evaluation={**card_test, "leakage_free": {"macro_f1": 0.98}})
    fake_run(models / "m1", evaluation={**card_test, "leakage_free": {"macro_f1": 0.95}})
    fake_run(models / "ens", model=None, kind="ensemble", arch="ensemble", model_sha256=sha, model_file="",
             members=[{"run_id": "m1", "model_sha256": sha}, {"run_id": "m2", "model_sha256": sha}],
             sentinels=[{"run_id": "watch", "model_sha256": sha}],
             evaluation={**card_test, "leakage_free": {"macro_f1": 0.96}})
    table = compare.comparison_table(list_runs()).set_index("run")
    assert table.loc["ens", "best"] and table["best"].sum() == 1
    assert table.loc["watch", "leakage_free_macro_f1"] == 0.98  # its figure is still shown
    assert best_run(list_runs()).run_id == "ens"


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))

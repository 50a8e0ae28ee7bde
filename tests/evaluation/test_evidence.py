"""core.evaluation.evidence: the stress test's and the heat maps' headlines, kept beside the card's accuracy."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from core.evaluation.evidence import (
    LOCALISATION,
    STRESS,
    WARNINGS,
    evidence_lines,
    localisation_summary,
    store_evidence,
    stress_summary,
    warnings_summary,
)


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "shift": ["none", "darker", "noise", "blur"], "title": ["Unchanged", "Darker mid-tones", "Rician noise", "Blur"],
        "change": [0.0, -0.2, -3.1, -0.9], "n_images": [858] * 4, "wrong_warned": [0.62, 0.75, 0.68, float("nan")]})


def test_stress_summary_names_the_worst_shift_and_never_the_unchanged_row():
    s = stress_summary(_table())
    assert s["worst_shift"] == "Rician noise" and s["worst_change_pt"] == -3.1
    assert s["n_shifts"] == 3 and s["median_change_pt"] == -0.9 and s["n_images"] == 858
    assert s["wrong_warned_min"] == 0.62  # NaN (no mistake to warn) is not a rate
    better = _table().assign(change=[0.0, 0.5, 0.2, 0.1])  # every shift helps: the "worst" is the smallest gain
    assert stress_summary(better)["worst_change_pt"] == 0.1


def test_evidence_lines_only_for_what_was_measured():
    assert evidence_lines({}) == {}
    lines = evidence_lines({STRESS: stress_summary(_table()),
                            LOCALISATION: {"pointing_game": 0.88, "n_images": 233, "method": "LayerCAM"}})
    stress, heat = lines["Simulated scanner changes (held-out test)"], lines["Heat map on the tumour (held-out test)"]
    assert stress.startswith("worst case Rician noise: \u22123.1 points of accuracy, among 3 simulated changes")
    assert "not a test on another hospital's images" in stress
    assert heat == "its strongest point falls inside the tumour's box on 88% of 233 slices with a known box (LayerCAM)"
    # Damaged or empty entries say nothing rather than something wrong.
    assert evidence_lines({STRESS: {"worst_change_pt": math.nan}, LOCALISATION: {"pointing_game": 0.5,
                                                                                 "n_images": 0}}) == {}


def test_the_warning_line_says_how_many_answers_were_wrong_and_silent():
    per_slice = {"wrong_warned": 18 / 27, "correct_warned": 27 / 831, "n_wrong": 27, "silent_wrong": 9 / 858}
    line = evidence_lines({WARNINGS: warnings_summary(per_slice, 858)})["Mistakes without a warning (held-out test)"]
    # 9 of 858 is 1.049 %: stored finely enough that the line does not round it twice into 1.1 %
    assert line == ("1.0% of 858 answers were wrong without a warning; 67% of its 27 mistakes carried a warning, "
                    "and 3% of correct answers did (each slice on its own)")
    perfect = warnings_summary({"wrong_warned": None, "correct_warned": 0.02, "n_wrong": 0, "silent_wrong": 0.0}, 50)
    assert "it made no mistake" in evidence_lines({WARNINGS: perfect})["Mistakes without a warning (held-out test)"]
    assert evidence_lines({WARNINGS: {"silent_wrong": math.nan, "n_images": 5}}) == {}  # damaged: nothing said


def test_localisation_summary_keeps_the_headline_only():
    block = {"pointing_game": 0.7, "heat_in_box_ratio": 2.4, "n_images": 10, "method": "LayerCAM",
             "per_class": {"glioma": {}}}
    assert localisation_summary(block) == {"pointing_game": 0.7, "heat_in_box_ratio": 2.4, "n_images": 10,
                                           "method": "LayerCAM"}


@pytest.mark.slow
def test_stored_beside_the_evaluation_it_belongs_to(tiny_run, isolated_workbench_dirs):
    import shutil

    from core.evaluation.eval_sets import EvalSet, open_eval_dataset
    from core.evaluation.evaluate import evaluate_run
    from core.models.runs import resolve_run, update_card
    from core.reports.run_summary import model_facts

    shutil.copytree(tiny_run.path, isolated_workbench_dirs["models"] / tiny_run.run_id)
    run = resolve_run(tiny_run.run_id)
    fingerprint = open_eval_dataset(run, EvalSet("card_test")).fingerprint
    store_evidence(run, "card_test", fingerprint, STRESS, {"worst_change_pt": -1.0})
    assert resolve_run(run.run_id).card.evaluations == {}  # never evaluated: nothing to stand beside

    evaluate_run(run, EvalSet("card_test"))
    held = dict(resolve_run(run.run_id).card.evaluation)
    stress = stress_summary(_table())
    store_evidence(run, "card_test", fingerprint, STRESS, stress)
    store_evidence(run, "folder", fingerprint, LOCALISATION, {"pointing_game": 0.1})  # another set: not evaluated
    card = resolve_run(run.run_id).card
    assert card.evaluation[STRESS] == stress and LOCALISATION not in card.evaluation
    assert {k: v for k, v in card.evaluation.items() if k != STRESS} == held  # the held-out figures untouched
    assert card.evaluations[f"card_test:{fingerprint}"][STRESS] == stress
    written = (run.path / "card.json").stat().st_mtime_ns
    store_evidence(run, "card_test", fingerprint, STRESS, dict(stress))  # a cached stress test, read again
    assert (run.path / "card.json").stat().st_mtime_ns == written  # the card is not rewritten for nothing
    facts = model_facts(resolve_run(run.run_id))
    assert facts["Simulated scanner changes (held-out test)"].startswith("worst case Rician noise: \u22123.1 points")

    # The same test files listed on another machine (other file times, so another fingerprint): the card's
    # own test split is still the held-out slot's.
    again = {"pointing_game": 0.5, "heat_in_box_ratio": 2.0, "n_images": 3, "method": "LayerCAM"}
    evaluations = {**resolve_run(run.run_id).card.evaluations, "card_test:elsewhere": dict(held)}
    update_card(resolve_run(run.run_id), evaluations=evaluations)
    store_evidence(run, "card_test", "elsewhere", LOCALISATION, again)
    assert resolve_run(run.run_id).card.evaluation[LOCALISATION] == again

"""core.inference.trust: warning thresholds fitted so that ordinary correct answers are rarely warned."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.inference.trust import (
    FALSE_ALARM,
    TrustThresholds,
    card_thresholds,
    fit_thresholds,
    flags,
    unstable_views,
    warning_rates,
)


def _clean(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    conf = np.clip(rng.beta(20, 1, n), 0.3, 1.0)
    correct = rng.random(n) < conf  # confident answers are right more often
    distance = rng.gamma(4.0, 2.0, n)
    unstable = rng.random(n) < 0.01
    return conf, distance, unstable, correct


def test_fitted_thresholds_warn_at_most_the_budget_of_correct_answers():
    conf, distance, unstable, correct = _clean()
    t = fit_thresholds(conf, distance, unstable, correct)
    f = flags(np.stack([conf, 1 - conf], 1), distance, [np.zeros((len(conf), 2))], t)
    warned = (conf < t.min_confidence) | (distance > t.max_distance) | (unstable & t.flag_unstable)
    assert warned[correct].mean() <= FALSE_ALARM
    # The budget is spent: one more correct answer warned would exceed it, so nothing was left on the table.
    assert warned[correct].sum() >= int(FALSE_ALARM * correct.sum()) - 1
    assert 0 < t.min_confidence <= 1 and t.max_distance == pytest.approx(np.quantile(distance[correct], 0.99))
    assert f.low_confidence.sum() == (conf < t.min_confidence).sum()


def test_wrong_answers_are_caught_more_often_than_right_ones():
    conf, distance, unstable, correct = _clean(2000, 1)
    t = fit_thresholds(conf, distance, unstable, correct)
    warned = (conf < t.min_confidence) | (distance > t.max_distance)
    rates = warning_rates(warned, correct)
    assert rates["wrong_warned"] > 2 * rates["correct_warned"]
    assert rates["n_wrong"] == int((~correct).sum())
    assert rates["silent_wrong"] == pytest.approx(float((~correct & ~warned).mean()))


def test_views_that_disagree_are_flagged_only_when_rare_on_ordinary_images():
    conf, distance, _, correct = _clean()
    assert fit_thresholds(conf, distance, np.zeros(len(conf), bool), correct).flag_unstable
    often = np.random.default_rng(2).random(len(conf)) < 0.2
    assert not fit_thresholds(conf, distance, often, correct).flag_unstable


def test_warnings_shown_anyway_are_always_counted_against_the_budget():
    """Unlike the views' check, ``always`` is never dropped, even when it spends over half the budget."""
    conf, _, _, correct = _clean()
    always = np.zeros(len(conf), bool)
    always[np.flatnonzero(correct)[: int(0.03 * correct.sum())]] = True  # 3 % of correct answers
    t = fit_thresholds(conf, None, np.zeros(len(conf), bool), correct, always=always)
    warned = always | (conf < t.min_confidence)
    assert warned[correct].mean() <= FALSE_ALARM
    assert t.min_confidence < fit_thresholds(conf, None, np.zeros(len(conf), bool), correct).min_confidence
    assert fit_thresholds(conf, None, np.zeros(len(conf), bool), correct, always=~always).min_confidence == 0.0


def test_unstable_views():
    a = np.array([[2.0, 0.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [3.0, 0.0]])
    assert unstable_views([a, b]).tolist() == [False, True]
    assert unstable_views([a]).tolist() == [False, False]


def test_nothing_correct_gives_thresholds_that_warn_nothing():
    t = fit_thresholds(np.array([0.9, 0.8]), None, np.zeros(2, bool), np.zeros(2, bool))
    assert t == TrustThresholds()


def test_card_thresholds_prefer_the_fitted_ones_and_fall_back_to_older_fields():
    from core.models.card import ModelCard

    fitted = ModelCard(results={"trust": {"min_confidence": 0.7, "max_distance": 12.0, "flag_unstable": True},
                                "low_confidence_threshold": 0.5, "ood": {"mahalanobis_threshold": 20.0}})
    assert card_thresholds(fitted) == TrustThresholds(0.7, 12.0, True)
    old = ModelCard(results={"low_confidence_threshold": 0.5, "ood": {"mahalanobis_threshold": 20.0}})
    assert card_thresholds(old) == TrustThresholds(0.5, 20.0, False)
    broken = ModelCard(results={"trust": {"min_confidence": "high"}, "low_confidence_threshold": 0.4})
    assert card_thresholds(broken) == TrustThresholds(0.4, None, False)
    assert card_thresholds(ModelCard()) == TrustThresholds()


@pytest.mark.slow
def test_calibrate_cli_fits_the_warnings_of_an_older_run(tiny_run, isolated_workbench_dirs, capsys):
    from core.cli import main
    from core.models.runs import CARD_FILE, resolve_run

    target = isolated_workbench_dirs["models"] / tiny_run.run_id
    shutil.copytree(tiny_run.path, target)
    card = json.loads((target / CARD_FILE).read_text())
    card["results"].pop("trust", None)  # as written before the warnings were fitted
    (target / CARD_FILE).write_text(json.dumps(card))
    assert main(["calibrate", "--model", tiny_run.run_id, "--warnings-only", "--json"]) == 0
    trust = json.loads(capsys.readouterr().out)
    assert 0 <= trust["min_confidence"] <= 1 and "validation_rates" in trust
    assert set(trust["validation_rates"]) >= {"none", "reframe", "histogram", "noise"}
    run = resolve_run(tiny_run.run_id)
    assert run.card.results.trust["min_confidence"] == trust["min_confidence"]
    assert run.card.model_sha256 == tiny_run.card.model_sha256  # only the card changed


@pytest.mark.slow
def test_calibrate_cli_refits_temperature_for_another_test_time_augmentation(tiny_run, isolated_workbench_dirs, capsys):
    from core.cli import main
    from core.models.runs import resolve_run

    shutil.copytree(tiny_run.path, isolated_workbench_dirs["models"] / tiny_run.run_id)
    other = "none" if tiny_run.card.tta == "hflip" else "hflip"
    assert main(["calibrate", "--model", tiny_run.run_id, "--tta", other, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    run = resolve_run(tiny_run.run_id)
    assert results["tta"] == run.card.tta == other  # the card now says how its calibration was fitted
    assert run.card.temperature > 0 and results["n_val"] == len(tiny_run.card.data["val_files"])
    assert run.card.results.trust  # the warnings were refitted with the new calibration
    assert run.card.model_sha256 == tiny_run.card.model_sha256  # only the card changed

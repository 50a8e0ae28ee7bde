"""Prediction sets (core.inference.conformal): the coverage promise on exchangeable data, per class;
nested sets; singleton, empty and full sets in words; bad coverage values; storage; CLI; a tiny model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.cli import main
from core.cli.conformal import parse_coverage
from core.errors import WorkbenchError
from core.evaluation.conformal_eval import coverage_table, shift_columns, wide_table
from core.inference.conformal import (
    CONFORMAL_FILE,
    FIT_SETS_ACTION,
    REFIT_ADVICE,
    SCORES,
    ConformalCalibration,
    check_coverage,
    conformal_quantile,
    label_scores,
    run_conformal,
    try_run_conformal,
    with_refit_advice,
)
from core.inference.conformal_fit import choose_score, compare_scores
from core.reports.conformal import GUARANTEE_NOTE, coverage_display, describe_set

NAMES = ("glioma", "meningioma", "notumor", "pituitary")


def synthetic(n: int, rng: np.random.Generator, sharpness: tuple[float, ...] = (2.0, 1.0, 4.0, 3.0)):
    """(probs, labels): labels drawn *from* the probabilities, so the data are exchangeable and calibrated.

    ``sharpness`` differs per class, so the classes differ in difficulty (a pooled threshold would
    over-cover the easy ones and under-cover the hard one).
    """
    k = len(sharpness)
    centre = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), centre] += np.asarray(sharpness)[centre]
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.minimum((p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)  # one draw per row from p
    return p, labels


@pytest.mark.parametrize("score", list(SCORES))
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_every_class_keeps_its_coverage_on_exchangeable_data(score: str, coverage: float) -> None:
    """Mean coverage per class over 300 seeds: at least nominal (within 4 standard errors), and at most
    nominal + 1/(n_k + 1) + the same tolerance (split conformal is not needlessly conservative)."""
    per_seed = []
    n_cal_per_class = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        p_cal, y_cal = synthetic(400, rng)
        p_new, y_new = synthetic(400, rng)
        cal = ConformalCalibration.fit(p_cal, y_cal, NAMES, score)
        member = cal.sets(p_new, coverage)
        hit = member[np.arange(len(y_new)), y_new]
        per_seed.append([hit[y_new == k].mean() for k in range(4)])
        n_cal_per_class.append(list(cal.n_per_class.values()))
    per_seed = np.asarray(per_seed)
    mean, se = per_seed.mean(axis=0), per_seed.std(axis=0, ddof=1) / math.sqrt(len(per_seed))
    upper = coverage + 1 / (np.asarray(n_cal_per_class).min(axis=0) + 1)
    assert (mean >= coverage - 4 * se).all(), (score, coverage, mean)
    assert (mean <= upper + 4 * se).all(), (score, coverage, mean)


def test_mondrian_thresholds_protect_the_hard_class_that_a_pooled_threshold_fails() -> None:
    rng = np.random.default_rng(0)
    p_cal, y_cal = synthetic(4000, rng, sharpness=(0.3, 4.0, 4.0, 4.0))  # glioma is hard
    p_new, y_new = synthetic(4000, rng, sharpness=(0.3, 4.0, 4.0, 4.0))
    member = ConformalCalibration.fit(p_cal, y_cal, NAMES, "lac").sets(p_new, 0.9)
    glioma = member[y_new == 0, 0].mean()
    pooled_q = conformal_quantile(np.sort(1 - p_cal[np.arange(len(y_cal)), y_cal]), 0.9)
    pooled_glioma = ((1 - p_new[y_new == 0, 0]) <= pooled_q).mean()
    assert glioma >= 0.88 and pooled_glioma < 0.85


@pytest.mark.parametrize("score", list(SCORES))
def test_sets_are_nested_in_coverage_and_inputs_are_left_unmodified(score: str) -> None:
    rng = np.random.default_rng(1)
    p_cal, y_cal = synthetic(600, rng)
    p_new, _ = synthetic(300, rng)
    before = p_new.copy()
    cal = ConformalCalibration.fit(p_cal, y_cal, NAMES, score)
    levels = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
    sets = [cal.sets(p_new, c) for c in levels]
    for small, large in zip(sets, sets[1:]):
        assert (large | ~small).all()  # every class in the smaller set is in the larger one
    sizes = [s.sum(axis=1).mean() for s in sets]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    np.testing.assert_array_equal(p_new, before)


def test_scores_rank_labels_as_their_probabilities_do() -> None:
    p = np.array([[0.7, 0.2, 0.06, 0.04], [0.08, 0.12, 0.3, 0.5]])  # no ties: their order is arbitrary
    for key in SCORES:
        s = label_scores(p, key)
        assert (np.argsort(s, axis=1) == np.argsort(-p, axis=1)).all(), key
    np.testing.assert_allclose(label_scores(p, "aps")[0], [0.7, 0.9, 0.96, 1.0])
    np.testing.assert_allclose(label_scores(p, "lac"), 1 - p)
    with pytest.raises(WorkbenchError, match="unknown conformal score"):
        label_scores(p, "bogus")


def test_quantile_is_the_finite_sample_rank_and_infinite_when_too_few() -> None:
    scores = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.95) == 19.0
    assert conformal_quantile(scores, 0.99) == math.inf  # ceil(20 * 0.99) = 20 > n: always in the set
    assert conformal_quantile(np.array([]), 0.9) == math.inf


def _calibration(sorted_per_class, score="lac") -> ConformalCalibration:
    return ConformalCalibration(score, NAMES, tuple(np.asarray(s, float) for s in sorted_per_class), 1.0, "none")


def test_singleton_empty_and_full_sets_and_their_wording() -> None:
    cal = _calibration([np.linspace(0.0, 0.1, 19)] * 4)  # 90 %: q = 0.0944 for every class
    p = np.array([[0.97, 0.01, 0.01, 0.01], [0.4, 0.3, 0.2, 0.1]])
    assert cal.set_names(p[0], 0.9) == ["glioma"]
    assert cal.set_names(p[1], 0.9) == []
    assert cal.set_names(p[1], 0.99) == ["glioma", "meningioma", "notumor", "pituitary"]  # too few to certify
    single = describe_set(["glioma"], 0.9, 4)
    assert "90 %" in single and "Glioma alone" in single
    assert "empty" in describe_set([], 0.9, 4)
    assert "any of the 4 classes" in describe_set(list(NAMES), 0.99, 4)
    assert describe_set(["glioma", "meningioma"], 0.95, 4) == "At 95 % coverage the answer is in {Glioma, Meningioma}."
    assert "no prediction-set calibration" in describe_set(None, 0.95, 4)
    assert "dataset shift" in GUARANTEE_NOTE and "does not hold" in GUARANTEE_NOTE


@pytest.mark.parametrize("bad", [0, 0.49, 1, 1.5, -0.1, float("nan"), float("inf"), "0.9", None, True])
def test_bad_coverage_values_raise_a_plain_error(bad) -> None:
    with pytest.raises(WorkbenchError, match="coverage must be a share between 0.5 and 0.999"):
        check_coverage(bad)
    cal = _calibration([np.linspace(0, 1, 10)] * 4)
    with pytest.raises(WorkbenchError):
        cal.sets(np.full((1, 4), 0.25), bad)


def test_wrong_probability_shapes_are_refused() -> None:
    cal = _calibration([np.linspace(0, 1, 10)] * 4)
    with pytest.raises(WorkbenchError, match="expected"):
        cal.sets(np.full((2, 3), 1 / 3), 0.9)


def test_save_load_round_trip_and_damaged_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    p, y = synthetic(300, rng)
    cal = ConformalCalibration.fit(p, y, NAMES, "raps", temperature=0.7, tta="hflip")
    path = tmp_path / CONFORMAL_FILE
    cal.save(path)
    back = ConformalCalibration.load(path)
    assert (back.score, back.class_names, back.temperature, back.tta) == ("raps", NAMES, 0.7, "hflip")
    for a, b in zip(cal.sorted_scores, back.sorted_scores):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cal.sets(p, 0.9), back.sets(p, 0.9))
    path.write_bytes(b"not a zip")
    with pytest.raises(WorkbenchError, match="cannot be read"):
        ConformalCalibration.load(path)


def _unusable_sets(kind: str, folder: Path) -> SimpleNamespace:
    """A stand-in run (folder, id, card) whose prediction sets are ``kind``: missing, stale or damaged."""
    card = SimpleNamespace(class_names=NAMES, tta="none", temperature=1.0)
    if kind != "missing":
        p, y = synthetic(200, np.random.default_rng(0))
        ConformalCalibration.fit(p, y, NAMES, "lac", temperature=2.0 if kind == "stale" else 1.0).save(
            folder / CONFORMAL_FILE)
    if kind == "damaged":
        (folder / CONFORMAL_FILE).write_bytes((folder / CONFORMAL_FILE).read_bytes()[:40])
    return SimpleNamespace(path=folder, run_id="20260101-000000-custom_cnn-ab12", card=card)


@pytest.mark.parametrize("kind", ["missing", "stale", "damaged"])
def test_unusable_sets_say_what_is_wrong_and_each_reader_is_told_what_it_can_do(kind: str, tmp_path: Path) -> None:
    """The reason is neutral; the command line is told its command, a page the app's action (a
    clinician reading the Predict page cannot run a command)."""
    run = _unusable_sets(kind, tmp_path)
    cal, why = try_run_conformal(run)
    assert cal is None and why
    assert "python" not in why and "--" not in why and "`" not in why
    cli = with_refit_advice(why, run.run_id, "cli")
    assert cli.startswith(why.rstrip(".")) and f"python -m core calibrate --model {run.run_id} --conformal-only" in cli
    for where in ("app", "evaluate"):
        said = with_refit_advice(why, run.run_id, where)
        assert said.startswith(why.rstrip(".")) and FIT_SETS_ACTION in said
        assert not any(token in said for token in ("python", "--", "`", "calibrate"))
    with pytest.raises(WorkbenchError) as raised:
        run_conformal(run)
    assert raised.value.reason == why  # the same words, raised or returned


def test_refit_advice_is_known_for_every_place_and_refused_for_others() -> None:
    assert set(REFIT_ADVICE) == {"cli", "evaluate", "app"}
    with pytest.raises(ValueError, match="unknown place"):
        with_refit_advice("no sets", "r1", "email")


def test_score_choice_prefers_the_smallest_valid_sets() -> None:
    rng = np.random.default_rng(3)
    p, y = synthetic(1200, rng)
    comparison = compare_scores(p, y, 4, repeats=40)
    assert set(comparison) == set(SCORES)
    for row in comparison.values():
        assert row["min_class_coverage"] >= 0.93 and row["mean_set_size"] > 0
    chosen = choose_score(comparison)
    assert comparison[chosen]["mean_set_size"] == min(v["mean_set_size"] for v in comparison.values())
    assert compare_scores(p, y, 4, repeats=5, seed=9) == compare_scores(p, y, 4, repeats=5, seed=9)  # reproducible
    fake = {"lac": {"mean_set_size": 0.9, "min_class_coverage": 0.80},
            "aps": {"mean_set_size": 2.0, "min_class_coverage": 0.95}}
    assert choose_score(fake) == "aps"  # the smaller sets do not keep the promise


def test_score_choice_on_a_site_with_only_some_classes_is_finite_and_quiet() -> None:
    """An adapted model's sets are fitted on a site's validation part, which may hold two of four classes:
    the comparison printed "Mean of empty slice" and chose among NaN coverages."""
    import warnings

    rng = np.random.default_rng(4)
    p, y = synthetic(1200, rng)
    keep = np.isin(y, [1, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comparison = compare_scores(p[keep], y[keep], 4, repeats=20)
    assert all(np.isfinite(row["min_class_coverage"]) and row["min_class_coverage"] >= 0.9
               for row in comparison.values())


def test_coverage_table_counts_and_intervals() -> None:
    rng = np.random.default_rng(4)
    p_cal, y_cal = synthetic(800, rng)
    p_new, y_new = synthetic(500, rng)
    cal = ConformalCalibration.fit(p_cal, y_cal, NAMES, "lac")
    table = coverage_table(cal, p_new, y_new, [0.8, 0.95])
    assert len(table) == 2 * 5 and set(table["class"]) == {"all", *NAMES}
    every = table[table["class"] == "all"]
    assert (every["n_images"] == 500).all()
    assert (table["ci_low"] <= table["coverage"]).all() and (table["coverage"] <= table["ci_high"]).all()
    per_class = table[table["class"] != "all"].groupby("coverage_target")["covered"].sum()
    assert (per_class.to_numpy() == every["covered"].to_numpy()).all()
    wide = wide_table(table)
    assert list(wide.columns) == ["coverage_target", "coverage_all", *NAMES, "mean_set_size"]
    shown = coverage_display(table)
    assert list(shown.columns[:2]) == ["Promised coverage", "All images"] and "Glioma" in shown.columns
    cols = shift_columns(cal, {"none": p_new, "blur": p_new}, y_new)
    assert cols["set_coverage"][0] == pytest.approx(every["coverage"].iloc[1])
    assert all(math.isnan(v) for v in shift_columns(None, {"none": p_new}, y_new)["mean_set_size"])


@pytest.mark.parametrize("text,share", [("95", 0.95), ("0.95", 0.95), ("80", 0.8), ("99.9", 0.999)])
def test_cli_coverage_accepts_percent_or_share(text: str, share: float) -> None:
    assert parse_coverage(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["abc", "30", "100", "nan", "-5", "0.2"])
def test_cli_predict_refuses_a_bad_coverage_before_any_work(text: str, tmp_path: Path, capsys) -> None:
    code = main(["predict", str(tmp_path / "none.png"), "--coverage", text])
    err = capsys.readouterr().err
    assert code == 2 and "--coverage" in err and ("between 50 and 99.9" in err or "must be a number" in err)


# --- a tiny trained model (the real engine) ---------------------------------------------------


@pytest.mark.slow
def test_training_writes_prediction_sets_and_predict_uses_them(tiny_registry, tiny_predictor, demo_root, capsys):
    run = tiny_registry
    assert (run.path / CONFORMAL_FILE).is_file()
    summary = run.card.results.conformal
    assert summary["score"] in SCORES and summary["randomised"] is False
    assert sum(summary["n_per_class"].values()) == run.card.results.n_val
    assert run_conformal(run).temperature == pytest.approx(run.card.temperature)
    assert tiny_predictor.conformal is not None

    files = [str(p) for p in sorted((demo_root / "Testing" / "glioma").glob("*.png"))[:2]]
    assert main(["predict", *files, "--json", "--coverage", "90"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert row["coverage"] == pytest.approx(0.9)
        assert set(row["prediction_set"]) <= set(run.class_names)
        probs = row["probabilities"]
        assert row["prediction_set"] == sorted(row["prediction_set"], key=lambda c: -probs[c])


@pytest.mark.slow
def test_calibrate_conformal_only_keeps_the_temperature(tiny_run, tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    (models / tiny_run.run_id / CONFORMAL_FILE).unlink()
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(models))
    from core.models.runs import resolve_run

    with pytest.raises(WorkbenchError, match="no prediction-set calibration yet"):
        run_conformal(resolve_run(tiny_run.run_id))
    assert main(["calibrate", "--model", tiny_run.run_id, "--conformal-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = resolve_run(tiny_run.run_id)
    assert out["score"] == run.card.results.conformal["score"]
    assert run.card.temperature == tiny_run.card.temperature
    assert run_conformal(run).n_per_class == out["n_per_class"]
    assert main(["calibrate", "--model", tiny_run.run_id, "--conformal-only", "--warnings-only"]) == 2

    # A refit temperature makes the old sets stale: they are refused, never silently used.
    from core.models.runs import update_card

    results = run.card.results.to_json()
    results["temperature"] = run.card.temperature * 1.5
    stale = update_card(run, results=results)
    with pytest.raises(WorkbenchError, match="fitted before"):
        run_conformal(stale)

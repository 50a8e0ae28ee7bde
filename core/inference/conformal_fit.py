"""Fitting a run's prediction sets (:mod:`core.inference.conformal`) on its validation images.

Runs at the end of training (from :func:`core.inference.calibration_fit.fit_calibration`), after
every temperature refit, and on request for older runs (``python -m core calibrate --model RUN
--conformal-only``). The probabilities are the validation split's *calibrated* ones, computed
as inference computes them (the card's temperature and test-time augmentation).

Which score? Each candidate is tried on many random half splits of the validation images:
calibrate on one half, measure on the other. The score with the smallest mean set size whose
every class keeps its coverage wins; the comparison is recorded in the card. The test split is
never looked at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.inference.calibration import softmax
from core.inference.conformal import (
    CONFORMAL_FILE,
    DEFAULT_COVERAGE,
    SCORES,
    ConformalCalibration,
    conformal_quantile,
    label_scores,
)
from core.models.runs import Run, update_card

SELECTION_REPEATS = 200  # random half splits of the validation images per candidate score
COVERAGE_SLACK = 0.01  # a score is valid when every class's mean coverage is ≥ nominal − this (Monte Carlo noise)


def _halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask: a random half of every class's images (the calibration half)."""
    calib = np.zeros(len(labels), bool)
    for k in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == k)[0])
        calib[idx[: len(idx) // 2]] = True
    return calib


def compare_scores(probs: np.ndarray, labels: np.ndarray, n_classes: int, coverage: float = DEFAULT_COVERAGE,
                   repeats: int = SELECTION_REPEATS, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per score: mean set size, overall and worst per-class coverage over random half splits.

    Every score sees the same splits (one seed), so the comparison is paired.
    """
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    masks = [_halves(y, rng) for _ in range(repeats)]
    out = {}
    for key in SCORES:
        s = label_scores(probs, key)
        true = s[np.arange(len(y)), y]
        sizes, covered = [], []
        hits, counts = np.zeros(n_classes), np.zeros(n_classes)  # per class, pooled over the splits
        for calib in masks:
            q = np.array([conformal_quantile(np.sort(true[calib & (y == k)]), coverage) for k in range(n_classes)])
            test = ~calib
            member = s[test] <= q[None, :]
            hit = member[np.arange(test.sum()), y[test]]
            sizes.append(member.sum(axis=1).mean())
            covered.append(hit.mean())
            hits += np.bincount(y[test], weights=hit, minlength=n_classes)[:n_classes]
            counts += np.bincount(y[test], minlength=n_classes)[:n_classes]
        seen = counts > 0  # a site may hold only some of the classes: the others have no coverage to report
        out[key] = {"mean_set_size": float(np.mean(sizes)), "coverage": float(np.mean(covered)),
                    "min_class_coverage": float((hits[seen] / counts[seen]).min()) if seen.any() else float("nan")}
    return out


def choose_score(comparison: dict[str, dict[str, float]], coverage: float = DEFAULT_COVERAGE) -> str:
    """The valid score with the smallest mean set size (ties: the first listed); else the best-covering one."""
    valid = [k for k, v in comparison.items() if v["min_class_coverage"] >= coverage - COVERAGE_SLACK]
    if not valid:
        return max(comparison, key=lambda k: comparison[k]["min_class_coverage"])
    return min(valid, key=lambda k: comparison[k]["mean_set_size"])


#: How an ensemble's validation outputs are described (its card's test-time augmentation is "none":
#: each member applies its own, before the average).
ENSEMBLE_VALIDATION = "{n} validation images (the members' averaged calibrated probabilities)"


def write_conformal(folder: Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str], temperature: float,
                    tta: str, seed: int = 0, ensemble: bool = False) -> dict[str, Any]:
    """Choose the score, write ``conformal.npz`` into ``folder``, and return the card's ``results.conformal``
    (``ensemble``: ``probs`` are an ensemble's averaged member probabilities)."""
    y = np.asarray(labels, dtype=np.int64)
    comparison = compare_scores(probs, y, len(class_names), seed=seed)
    score = choose_score(comparison)
    cal = ConformalCalibration.fit(probs, y, class_names, score, temperature, tta)
    cal.save(Path(folder) / CONFORMAL_FILE)
    return {
        "file": CONFORMAL_FILE, "score": score, "score_title": SCORES[score][0], "randomised": False,
        "default_coverage": DEFAULT_COVERAGE, "n_per_class": cal.n_per_class,
        "fitted_on": ENSEMBLE_VALIDATION.format(n=len(y)) if ensemble else
        f"{len(y)} validation images (calibrated probabilities, test-time augmentation {tta})",
        "score_choice": comparison,
        "choice_rule": f"smallest mean set size at {DEFAULT_COVERAGE:.0%} coverage with every class's coverage "
                       f"at least {DEFAULT_COVERAGE - COVERAGE_SLACK:.0%}, over {SELECTION_REPEATS} random half "
                       "splits of the validation images",
    }


def _validation_logits(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(logits with the card's test-time augmentation, labels) of a run's validation images."""
    from core.data.preprocess import load_many
    from core.inference.runner import ModelRunner
    from core.inference.tta import tta_logits
    from core.models.runs import load_model

    paths, labels = run.validation_set()
    runner = ModelRunner(load_model(run), "none", batch_size=128)
    images = load_many(paths, run.image_size, preprocessing=run.preprocessing)
    return tta_logits(lambda b: runner.run(b).logits, images, run.card.tta), labels


def fit_run_conformal(run: Run, logits: np.ndarray | None = None, labels: np.ndarray | None = None) -> Run:
    """Fit and store a registered run's prediction sets (``conformal.npz`` and ``results.conformal``).

    Args:
        logits, labels: the run's validation logits (computed with the card's test-time
            augmentation) and labels, when the caller has them; read from disk otherwise.
    Raises:
        WorkbenchError: the validation images are not on this machine.
    """
    if logits is None or labels is None:
        logits, labels = _validation_logits(run)
    card = run.card
    probs = softmax(logits, card.temperature)
    summary = write_conformal(run.path, probs, labels, run.class_names, card.temperature, card.tta,
                              ensemble=card.is_ensemble)
    results = card.results.to_json()
    results["conformal"] = summary
    return update_card(run, results=results)


def fit_run_conformal_out_of_fold(run: Run, oof_probs: np.ndarray, oof_labels: np.ndarray,
                                  oof_summary: dict[str, Any], logits: np.ndarray | None = None,
                                  labels: np.ndarray | None = None) -> Run:
    """Fit a run's prediction sets on its validation images *and* its training images' out-of-fold
    probabilities (:mod:`core.training.out_of_fold`): five to six times the calibration images,
    from many more patients, so each class's threshold rests on many more of its hardest images.
    For an ensemble, ``oof_probs`` are its members' averaged ones (:mod:`core.training.ensemble_oof`)
    and ``logits``, ``labels`` its validation outputs
    (:func:`core.inference.ensemble_fit.ensemble_validation_logits`).

    Args:
        logits, labels: the run's validation logits and labels, as for :func:`fit_run_conformal`.
    Raises:
        WorkbenchError: the validation images are not on this machine.
    """
    if logits is None or labels is None:
        logits, labels = _validation_logits(run)
    card = run.card
    probs = np.vstack([softmax(logits, card.temperature), np.asarray(oof_probs, dtype=np.float64)])
    y = np.concatenate([np.asarray(labels, dtype=np.int64), np.asarray(oof_labels, dtype=np.int64)])
    summary = write_conformal(run.path, probs, y, run.class_names, card.temperature, card.tta)
    folds = oof_summary["folds"]
    if card.is_ensemble:
        summary["fitted_on"] = (ENSEMBLE_VALIDATION.format(n=len(labels))
                                + f" and {len(oof_labels)} training images scored out of fold by {folds} models per "
                                "member, each trained without them with that member's recipe, averaged as the "
                                "ensemble averages")
    else:
        summary["fitted_on"] = (f"{len(labels)} validation images (calibrated probabilities, test-time augmentation "
                                f"{card.tta}) and {len(oof_labels)} training images scored out of fold by {folds} "
                                "models trained without them with the run's recipe")
    changed = oof_summary.get("fold_settings_changed")
    if changed:
        summary["fitted_on"] += " (changed for the fold models: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in sorted(changed.items())) + ")"
    summary["out_of_fold"] = oof_summary
    results = card.results.to_json()
    results["conformal"] = summary
    return update_card(run, results=results)

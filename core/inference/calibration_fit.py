"""Fitting a model's calibration on its validation images: temperature, thresholds, OOD model.

Done once at the end of training (:func:`fit_calibration`) and again on request for a
registered run (:func:`recalibrate_run`, ``python -m core calibrate``). Validation logits are
computed exactly as inference computes them (same runner, same test-time augmentation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from core.data.preprocess import load_many
from core.data.tta import TTA
from core.inference.calibration import (
    expected_calibration_error,
    fit_temperature,
    low_confidence_threshold,
    softmax,
)
from core.inference.conformal_fit import fit_run_conformal, write_conformal
from core.inference.ood import OODModel, energy, fit_ood
from core.inference.runner import ModelRunner
from core.inference.tta import tta_logits
from core.models.runs import Run, load_model, update_card

OOD_TRAIN_SAMPLE = 3000  # training images the Mahalanobis model is fitted on (bounded: memory and time)


def calibration_results(val_logits: np.ndarray, y: np.ndarray, n_classes: int, split: str,
                        tta: str) -> dict[str, Any]:
    """Validation metrics, fitted temperature and low-confidence threshold from validation logits.

    ``val_logits`` must be computed the way inference will compute them (with ``tta``).
    """
    temperature = fit_temperature(val_logits, y)
    probs_raw, probs = softmax(val_logits), softmax(val_logits, temperature)
    pred = probs.argmax(axis=1)
    return {
        "validated_on": split,
        "tta": tta,
        "val_accuracy": float(accuracy_score(y, pred)),
        "val_macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
        "val_ece_raw": expected_calibration_error(probs_raw, y),
        "val_ece": expected_calibration_error(probs, y),
        "temperature": temperature,
        "low_confidence_threshold": low_confidence_threshold(probs, y),
        "n_val": int(len(y)),
    }


def fit_calibration(model: Any, x: dict[str, np.ndarray], y: dict[str, np.ndarray], split: str, tta: str,
                    seed: int, check=lambda: None, class_names: list[str] | None = None,
                    conformal_dir: Path | None = None) -> tuple[dict[str, Any], OODModel]:
    """Card ``results`` (validation metrics, temperature, thresholds) and the OOD model of a trained model.

    Args:
        x, y: images and labels per split ("train" and ``split`` are read).
        split: the split that validates (early stopping and calibration).
        check: called between passes; raises to cancel.
        class_names, conformal_dir: when both are given, the prediction sets are fitted on the
            same validation logits and ``conformal.npz`` is written there (``results.conformal``).
    """
    runner = ModelRunner(model, "none", batch_size=128)
    val_feat = runner.run(x[split]).features
    check()

    def logits(images: np.ndarray) -> np.ndarray:  # one call per test-time view: a cancel point each
        check()
        return runner.run(images).logits

    val_logits = tta_logits(logits, x[split], tta)
    check()
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(x["train"]), size=min(OOD_TRAIN_SAMPLE, len(x["train"])), replace=False)
    train_feat = runner.run(x["train"][sub]).features
    check()
    results = calibration_results(val_logits, y[split], int(val_logits.shape[1]), split, tta)
    ood = fit_ood(train_feat, y["train"][sub], val_feat, val_logits / results["temperature"])
    results["ood"] = {"mahalanobis_threshold": ood.maha_threshold, "energy_threshold": ood.energy_threshold}
    if conformal_dir is not None and class_names:
        results["conformal"] = write_conformal(conformal_dir, softmax(val_logits, results["temperature"]),
                                               y[split], list(class_names), results["temperature"], tta)
    return results, ood


def recalibrate_run(run: Run, tta: str) -> Run:
    """Refit a registered run's temperature, thresholds and validation metrics for ``tta``.

    Reads the run's own validation files (recorded in its card) from its training data folder;
    only the card changes, so the model file and its sha256 stay as they are.

    Raises:
        WorkbenchError: unknown mode, or the validation images are not on this machine.
    """
    TTA.check(tta, "tta")
    card = run.card
    paths, y = run.validation_set()
    runner = ModelRunner(load_model(run), "none", batch_size=128)
    images = load_many(paths, run.image_size, preprocessing=run.preprocessing)
    logits = tta_logits(lambda b: runner.run(b).logits, images, tta)
    results = card.results.to_json()
    results.update(calibration_results(logits, y, len(run.class_names), card.validated_on, tta))
    ood = dict(card.results.ood)
    ood["energy_threshold"] = float(np.quantile(energy(logits / results["temperature"]), 0.99))
    results["ood"] = ood
    # A new temperature needs new sets; the out-of-fold part is kept when the stored scores still fit.
    return refit_sets(update_card(run, results=results), logits, y, card.results.conformal)


def refit_sets(run: Run, logits: np.ndarray, labels: np.ndarray, previous: Any) -> Run:
    """A run's prediction sets after its temperature changed: on its validation ``logits`` and, when
    the ``previous`` sets also used out-of-fold training scores, on those again where its stored
    ``oof.npz`` still fits (they do not depend on the run's own temperature: each fold model has
    its own). Otherwise validation only, and ``results.conformal.out_of_fold_dropped`` says why.
    """
    from core.inference.conformal_fit import fit_run_conformal_out_of_fold
    from core.inference.oof_store import depends_on, load_oof

    before = dict(previous or {}).get("out_of_fold")
    if not before:
        return fit_run_conformal(run, logits, labels)
    why = None
    trained_tta = run.card.train_config.get("tta", "none")
    if run.card.tta != trained_tta:
        why = (f"the fold models scored with test-time augmentation '{trained_tta}' and the model now uses "
               f"'{run.card.tta}'")
    else:
        oof, why = load_oof(run, depends_on(run, int(before["folds"])))
        if oof is not None:
            return fit_run_conformal_out_of_fold(run, oof.probs, oof.labels, oof.summary(), logits, labels)
    why = why or "the stored out-of-fold scores (oof.npz) are missing"
    run = fit_run_conformal(run, logits, labels)
    results = run.card.results.to_json()
    # What happened, in neutral words; the command line and the Evaluate page each say how to add them
    # again (a command, or the page's "Fit the sets on more images"), from the folds kept beside it.
    results["conformal"]["out_of_fold_dropped"] = f"{why}; fitted on validation images only"
    results["conformal"]["out_of_fold_dropped_folds"] = int(before["folds"])
    return update_card(run, results=results)

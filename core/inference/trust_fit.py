"""Fit a run's warning thresholds (core.inference.trust) on its validation images and their shifted copies.

Runs at the end of training, and on demand for older runs (``python -m core calibrate
--warnings``). Only the card changes: the model file and its checksum stay as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.data.preprocess import WHOLE_FRAME_ID, load_many, prepare_batch
from core.data.shifts import RAW_SCALE, SHIFTS, shift_images
from core.inference.calibration import softmax
from core.inference.ood import OODModel
from core.inference.runner import ModelRunner
from core.inference.side_files import feature_width, load_ood
from core.inference.trust import fit_thresholds, flags, unstable_views, warning_rates
from core.jobs import Job
from core.models.runs import OOD_FILE, Run, load_model, update_card


def shifted_scores(runner: ModelRunner, ood: OODModel | None, raw: np.ndarray, labels: np.ndarray, size: int,
                   preprocessing: str, temperature: float, shifts: list[str] | None = None,
                   job: Job | None = None) -> dict[str, dict[str, Any]]:
    """Per shift: logits, calibrated probs, feature distance (or None) and the test-time views' logits.

    ``raw`` holds whole frames at RAW_SCALE × ``size``; each shifted copy is prepared with the
    run's own recipe, exactly as an upload would be.
    """
    out = {}
    keys = shifts or list(SHIFTS)
    for i, key in enumerate(keys):
        x = prepare_batch(shift_images(raw, key, seed=0, labels=labels, scale=RAW_SCALE), size, preprocessing)
        res = runner.run(x)
        out[key] = {"logits": res.logits, "probs": softmax(res.logits, temperature),
                    "distance": ood.mahalanobis(res.features) if (ood is not None and res.features is not None)
                    else None,
                    "views": res.view_logits}
        if job is not None:
            job.update(phase=f"Shifted images {i + 1}/{len(keys)}", progress=(i + 1) / len(keys))
            job.check_cancelled()
    return out


def fit_run_warnings(run: Run, model: Any = None, job: Job | None = None) -> Run:
    """Fit and store ``results.trust`` for a registered run from its validation files.

    Raises:
        WorkbenchError: the validation images are not on this machine.
    """
    results = run.card.results.to_json()
    paths, labels = run.validation_set()
    raw = load_many(paths, RAW_SCALE * run.image_size, preprocessing=WHOLE_FRAME_ID)
    model = model if model is not None else load_model(run)
    runner = ModelRunner(model, run.card.tta)
    # damaged or another model's (other feature width): the check is left out, as in Predict
    ood, _ = load_ood(run.path / OOD_FILE, len(run.class_names), feature_width(model))
    temperature = run.card.temperature
    scores = shifted_scores(runner, ood, raw, labels, run.image_size, run.preprocessing, temperature, job=job)
    clean = scores["none"]
    correct = clean["probs"].argmax(axis=1) == labels
    thresholds = fit_thresholds(clean["probs"].max(axis=1), clean["distance"], unstable_views(clean["views"]),
                                correct)
    rates = {}
    for key, s in scores.items():
        f = flags(s["probs"], s["distance"], s["views"], thresholds)
        rates[key] = warning_rates(f.any, s["probs"].argmax(axis=1) == labels)
    results["trust"] = {**thresholds.to_dict(), "fitted_on": f"{len(paths)} validation images and their "
                        f"{len(SHIFTS) - 1} shifted copies", "validation_rates": rates}
    return update_card(run, results=results)

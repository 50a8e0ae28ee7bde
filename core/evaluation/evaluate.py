"""Evaluate a registered model on a set of labelled images, with leakage-aware metrics.

Pipeline: list the evaluation images (:mod:`.sets`) → scan them (labels, pHashes; cached per
dataset) → decode at the card's image size with the card's preprocessing (cached arrays) →
logits from the one model runner → temperature-scale → flag images that are near-copies of a
training image → metrics on all images and on the leakage-free subset (:mod:`.metrics`).
Results are cached on disk (:mod:`.cache`) and a compact summary goes into the model card,
where :func:`core.models.runs.best_run` reads it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from core.data.datasets import Dataset
from core.data.image_cache import cached_images
from core.data.preprocess import get_recipe
from core.data.scan import scan_dataset
from core.errors import WorkbenchError
from core.evaluation import metrics
from core.evaluation.cache import cache_key, load_cached, save_result
from core.evaluation.eval_sets import (
    EvalSet,
    near_dup_threshold,
    open_eval_dataset,
    overlap_distances,
    select_images,
)
from core.evaluation.result import EvaluationResult
from core.inference.calibration import softmax
from core.inference.runner import ModelRunner
from core.jobs import Job, counter
from core.models.runs import Run, load_model, resolve_run, update_card

BATCH = 64  # images per forward pass during evaluation
MAX_STORED_EVALUATIONS = 20  # summaries kept under the card's evaluations; the oldest go first


def predict_logits(run: Run, images: Any, progress=None, batch_size: int = BATCH,
                   fingerprint: str | None = None) -> np.ndarray:
    """Logits (N, C) of a run's model on prepared ``images``, as inference computes them (the card's
    test-time augmentation), batch by batch. For an ensemble ``images`` are the image files (each
    member prepares its own input; cached per dataset ``fingerprint``) and the logits are the log
    of the members' averaged calibrated probabilities (its temperature is 1)."""
    if run.card.is_ensemble:
        from core.inference.ensemble_fit import ensemble_logits

        return ensemble_logits(run, images, fingerprint, progress)
    return ModelRunner(load_model(run), run.card.tta, features=False, batch_size=batch_size).logits(images, progress)


def check_preprocessing(run: Run) -> None:
    """Refuse a run whose preprocessing recipe this workbench does not know, with a clear message."""
    get_recipe(run.preprocessing)


def cached_evaluation(run: Run, eval_set: EvalSet) -> EvaluationResult | None:
    """The cached result for this run and set, if any (lists the folder; never predicts)."""
    try:
        return load_cached(cache_key(run, open_eval_dataset(run, eval_set), eval_set))
    except WorkbenchError:
        return None


def evaluate_run(run: Run, eval_set: EvalSet, job: Job | None = None, use_cache: bool = True,
                 store_in_card: bool = True) -> EvaluationResult:
    """Evaluate one run on one evaluation set (cached; the summary is stored in the card).

    Raises:
        WorkbenchError: missing data, class-name mismatch, or a model that cannot be loaded.
        JobCancelled: the job was cancelled (checked between batches).
    """
    t0 = time.perf_counter()
    check_preprocessing(run)
    ds = open_eval_dataset(run, eval_set)
    key = cache_key(run, ds, eval_set)
    if use_cache and (hit := load_cached(key)) is not None:
        counter(job, 0.0, 1.0, "Cached result")(1, 1)
        # The cache is keyed by the network, not the folder: a run re-registered with the same network
        # (an ensemble of the same members) finds its result there, and its card must still hold it.
        hit.run_id = run.run_id
        if store_in_card and not _in_card(run, hit):
            _store(run, hit)
        return hit
    rows, description, notes, images, t_scan = _load_images(run, eval_set, ds, job)
    t_load = time.perf_counter()
    logits = predict_logits(run, images, counter(job, 0.5, 0.95, "Predicting"), fingerprint=ds.fingerprint)
    t_pred = time.perf_counter()

    temperature = run.card.temperature
    probs = softmax(logits, temperature)
    names = run.class_names
    pred = probs.argmax(axis=1)
    dist = overlap_distances(run, rows["phash"].tolist())
    if dist is None:
        notes.append("The model card holds no training-image hashes, so overlap with training cannot be checked.")
    predictions = pd.DataFrame({"file": rows["path"], "true": rows["label"], "predicted": [names[i] for i in pred],
                                "confidence": probs.max(axis=1)})
    for i, c in enumerate(names):
        predictions[f"prob_{c}"] = probs[:, i]
    predictions["train_distance"] = dist if dist is not None else -1
    predictions["overlap"] = (dist <= near_dup_threshold(run)) if dist is not None else False
    predictions["correct"] = predictions["true"] == predictions["predicted"]

    index = {c: i for i, c in enumerate(names)}
    y = rows["label"].map(index).to_numpy(np.int64)
    keep = ~predictions["overlap"].to_numpy()
    result = EvaluationResult(
        run_id=run.run_id, model_sha256=run.card.model_sha256, eval_kind=eval_set.kind,
        description=description, root=str(ds.root), dataset_fingerprint=ds.fingerprint, class_names=names,
        predictions=predictions, metrics=metrics.summarize(y, pred, probs, names),
        leakage_free=metrics.summarize(y[keep], pred[keep], probs[keep], names),
        n_overlapping=int((~keep).sum()), temperature=temperature, notes=notes,
        timings={"scan_s": round(t_scan - t0, 3), "load_s": round(t_load - t_scan, 3),
                 "predict_s": round(t_pred - t_load, 3), "total_s": round(time.perf_counter() - t0, 3)},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    save_result(result, key)
    if store_in_card:
        _store(run, result)
    return result


def _in_card(run: Run, result: EvaluationResult) -> bool:
    """True when the card already holds this result (and, for its own test split, its held-out figure)."""
    key = f"{result.eval_kind}:{result.dataset_fingerprint}"
    held_out_missing = result.eval_kind == "card_test" and not run.card.evaluation
    return key in run.card.evaluations and not held_out_missing


def _store(run: Run, result: EvaluationResult) -> None:
    try:
        store_summary(run, result)
    except OSError as exc:  # a read-only models folder: the minutes of work are shown, not lost
        result.notes.append(f"This result was not stored in the model card: the models folder cannot be "
                            f"written ({exc.strerror or type(exc).__name__}).")


def _load_images(run: Run, eval_set: EvalSet, ds: Dataset, job: Job | None):
    """Scan, select and decode an evaluation set: (rows, description, notes, images, time scanned)."""
    report = scan_dataset(ds, near_dup_threshold(run), progress=counter(job, 0.0, 0.3, "Scanning images"))
    rows, description, notes = select_images(run, eval_set, ds, report)
    t_scan = time.perf_counter()
    paths = [ds.abspath(p) for p in rows["path"]]
    if run.card.is_ensemble:
        return rows, description, notes, paths, t_scan  # each member decodes its own input (predict_logits)
    images = cached_images(paths, run.image_size, ds.fingerprint, counter(job, 0.3, 0.5, "Loading images"),
                           preprocessing=run.preprocessing)
    return rows, description, notes, images, t_scan


def store_summary(run: Run, result: EvaluationResult) -> Run:
    """Store the result's summary in the run's card (re-read first: another job may have written).

    The card's own held-out result (``evaluation``) is written once, by the first evaluation of
    the card's test split, and never replaced. Every result is kept under ``evaluations``, keyed
    by what was evaluated (set kind and dataset fingerprint), so an evaluation on another folder
    can neither rewrite the held-out figure nor change which run is the default
    (:func:`core.models.runs.best_run` reads the held-out figure only).
    """
    fresh = resolve_run(str(run.path), root=run.path.parent)
    summary = result.card_summary()
    evaluations = dict(fresh.card.evaluations)
    fields: dict[str, Any] = {}
    held_out = fresh.card.evaluation or None
    if held_out and held_out.get("eval_set", "card_test") != "card_test":
        # Written before this rule: another set's result sits in the held-out slot. Move it.
        evaluations.setdefault(f"{held_out.get('eval_set')}:{held_out.get('dataset_fingerprint')}", held_out)
        held_out = fields["evaluation"] = None
    if result.eval_kind == "card_test" and not held_out:
        fields["evaluation"] = summary
    key = f"{result.eval_kind}:{result.dataset_fingerprint}"
    evaluations.pop(key, None)
    evaluations[key] = summary  # newest last
    for old in list(evaluations)[:-MAX_STORED_EVALUATIONS]:
        del evaluations[old]
    return update_card(fresh, evaluations=evaluations, **fields)


def evaluate_runs(runs: list[Run], eval_set: EvalSet, job: Job | None = None) -> dict[str, EvaluationResult]:
    """Evaluate several runs one after another (the page's background job)."""
    out = {}
    for i, run in enumerate(runs):
        if job is not None:
            job.add_log(f"evaluating {run.run_id}")
            sub = job.stage(i / len(runs), (i + 1) / len(runs), f"[{i + 1}/{len(runs)}] ")
        out[run.run_id] = evaluate_run(run, eval_set, sub if job is not None else None)
    return out

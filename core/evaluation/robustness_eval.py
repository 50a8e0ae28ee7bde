"""The robustness evaluation of a run: its leakage-free test images under stress and style shifts.

The shifts and the table live in :mod:`core.evaluation.robustness`; this module feeds them a
run's images, scores every shifted copy with the run's own preprocessing, calibration and
warning thresholds, and caches the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.cachefs import cache_write
from core.data.datasets import Dataset
from core.data.image_cache import cached_images
from core.data.preprocess import WHOLE_FRAME_ID
from core.data.scan import scan_dataset
from core.data.shifts import RAW_SCALE
from core.errors import WorkbenchError
from core.evaluation.cache import NO_CACHE_FOLDER, read_table, robustness_path
from core.evaluation.conformal_eval import shift_columns
from core.evaluation.ensemble_robustness import ensemble_shift_scores
from core.evaluation.eval_sets import (
    EvalSet,
    near_dup_threshold,
    open_eval_dataset,
    overlap_distances,
    select_images,
)
from core.evaluation.evaluate import check_preprocessing
from core.evaluation.evidence import STRESS, store_evidence, stress_summary
from core.evaluation.robustness import robustness_table
from core.inference.conformal import try_run_conformal
from core.inference.runner import ModelRunner
from core.inference.side_files import feature_width, load_ood
from core.inference.trust import card_thresholds, flags, warning_rates
from core.inference.trust_fit import shifted_scores
from core.jobs import Job, counter
from core.models.ensemble import is_ensemble, member_runs, sentinel_runs
from core.models.runs import OOD_FILE, Run, load_model

#: A column present only when part of the warnings could not be checked: one plain sentence why.
NOTE_COLUMN = "note"


def cached_robustness(run: Run, eval_set: EvalSet) -> pd.DataFrame | None:
    """The cached robustness table for this run and set, if any (never predicts)."""
    try:
        return read_table(robustness_path(run, open_eval_dataset(run, eval_set), eval_set))
    except WorkbenchError:
        return None


def _raw_images(run: Run, eval_set: EvalSet, ds: Dataset, job: Job | None):
    """Leakage-free rows of an evaluation set, their labels, and their whole frames at RAW_SCALE × size."""
    report = scan_dataset(ds, near_dup_threshold(run), progress=counter(job, 0.0, 0.2, "Scanning images"))
    rows, _, _ = select_images(run, eval_set, ds, report)
    dist = overlap_distances(run, rows["phash"].tolist())
    keep = np.ones(len(rows), bool) if dist is None else dist > near_dup_threshold(run)
    rows = rows[keep].reset_index(drop=True)
    labels = rows["label"].map({c: i for i, c in enumerate(run.class_names)}).to_numpy(np.int64)
    paths = [ds.abspath(p) for p in rows["path"]]
    raw = cached_images(paths, RAW_SCALE * run.image_size, ds.fingerprint, counter(job, 0.2, 0.4, "Loading images"),
                        preprocessing=WHOLE_FRAME_ID)
    return rows, labels, raw


def evaluate_robustness(run: Run, eval_set: EvalSet, job: Job | None = None, use_cache: bool = True) -> pd.DataFrame:
    """:func:`core.evaluation.robustness.robustness_table` for a run on an evaluation set (cached on disk).

    Images with a near-copy in the training set are left out, as in the leakage-free figures.
    Each shift acts on the whole frame as acquired (at twice the model's side); the run's own
    preprocessing then prepares the shifted image, exactly as for an upload.
    """
    ensemble = is_ensemble(run)
    if not ensemble:  # an ensemble's members were each checked when it was registered and are again at load
        check_preprocessing(run)
    ds = open_eval_dataset(run, eval_set)
    path = robustness_path(run, ds, eval_set)
    if use_cache and (hit := read_table(path)) is not None:
        store_evidence(run, eval_set.kind, ds.fingerprint, STRESS, stress_summary(hit))
        return hit
    _, labels, raw = _raw_images(run, eval_set, ds, job)
    stage = job.stage(0.4, 1.0) if job is not None else None
    if ensemble:
        scores, ood_problem = ensemble_shift_scores(run, member_runs(run), raw, labels, stage,
                                                    sentinel_runs(run))
        temperature, warned = 1.0, {k: s["warned"] for k, s in scores.items()}  # averaged probabilities: calibrated
    else:
        temperature = run.card.temperature
        model = load_model(run)
        runner = ModelRunner(model, run.card.tta)  # one model load for every shift
        # Predict's own check: a damaged ood.npz, or another model's (other feature width), is left out
        # with a note rather than crashing or scoring distances against the wrong features.
        ood, ood_problem = load_ood(run.path / OOD_FILE, len(run.class_names), feature_width(model))
        scores = shifted_scores(runner, ood, raw, labels, run.image_size, run.preprocessing, temperature, job=stage)
        # Would the Predict page have warned? The card's own thresholds, on every shifted copy.
        thresholds = card_thresholds(run.card)
        warned = {k: flags(s["probs"], s["distance"], s["views"], thresholds).any for k, s in scores.items()}
    if ood_problem and job is not None:
        job.add_log(ood_problem)
    table = robustness_table(None, raw, labels, len(run.class_names), temperature,
                             logits={k: s["logits"] for k, s in scores.items()})
    rates = [warning_rates(warned[k], s["probs"].argmax(axis=1) == labels) for k, s in scores.items()]
    for key in ("wrong_warned", "correct_warned", "silent_wrong"):
        table[key] = [r[key] for r in rates]
    table.insert(4, "n_images", len(labels))
    # Prediction sets at 95 %: does their coverage hold off the validation distribution? (It need not.)
    sets = shift_columns(try_run_conformal(run)[0], {k: s["probs"] for k, s in scores.items()}, labels)
    for key, column in sets.items():
        table[key] = column
    if ood_problem:  # the warning columns were computed without the unfamiliar-image check
        table[NOTE_COLUMN] = ood_problem
    if path.parent != NO_CACHE_FOLDER:
        cache_write(path, lambda fh: table.to_csv(fh, index=False), mode="w")
    store_evidence(run, eval_set.kind, ds.fingerprint, STRESS, stress_summary(table))  # beside the card's accuracy
    return table

"""Evaluate a registered model on a set of labelled images, with leakage-aware metrics.

Pipeline: list the evaluation images → scan them (labels, pHashes; cached per dataset) →
decode at the card's image size (threaded, cached arrays) → predict logits in batches →
temperature-scale → flag images that are near-copies of a training image → metrics on all
images and on the leakage-free subset. Results are cached on disk per (model, data, set)
and a compact summary goes into the model card, where :func:`core.models.registry.best_run` reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.datasets import Dataset, open_folder
from core.errors import WorkbenchError
from core.evaluation import metrics
from core.jobs import Job
from core.models.registry import HISTORY_FILE, Run, resolve_run, update_card, write_json_atomic

EVAL_VERSION = 2  # bump when the cached result format or the computation changes
ROBUSTNESS_VERSION = 3  # bump when a shift in core.evaluation.robustness changes
BATCH = 64

#: Evaluation-set registry: the page and the CLI list these keys.
EVAL_SETS: dict[str, str] = {
    "card_test": "Held-out test split recorded in the model card",
    "dataset_test": "Test split of a dataset (its Testing/ folder, else the leakage-free test part)",
    "folder": "Every image in a folder",
}

SUMMARY_KEYS = ("n_images", "accuracy", "accuracy_ci", "balanced_accuracy", "macro_f1", "weighted_f1", "ece",
                "macro_roc_auc")


@dataclass(frozen=True)
class EvalSet:
    """Which images to evaluate on."""

    kind: str  # a key of EVAL_SETS
    folder: str | None = None  # the dataset or folder (dataset_test, folder); unused for card_test

    def __post_init__(self) -> None:
        if self.kind not in EVAL_SETS:
            raise WorkbenchError(f"unknown evaluation set '{self.kind}' (choose one of {', '.join(EVAL_SETS)})",
                                 "evaluation set")
        if self.kind != "card_test" and not self.folder:
            raise WorkbenchError("this evaluation set needs a folder", self.kind)


@dataclass
class EvaluationResult:
    """Predictions and metrics of one model on one evaluation set."""

    run_id: str
    model_sha256: str
    eval_kind: str
    description: str  # which images, in words
    root: str  # the folder that prediction file paths are relative to
    dataset_fingerprint: str
    class_names: list[str]
    predictions: pd.DataFrame  # file, true, predicted, confidence, prob_<c>..., train_distance, overlap, correct
    metrics: dict[str, Any]  # metrics.summarize on all images
    leakage_free: dict[str, Any]  # the same on images that are not near-copies of training images
    n_overlapping: int
    temperature: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    from_cache: bool = False

    def subset(self, leakage_free: bool = False) -> pd.DataFrame:
        p = self.predictions
        return p[~p["overlap"]] if leakage_free else p

    def arrays(self, leakage_free: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y_true, y_pred, probs) as class indices and an (N, C) array."""
        p = self.subset(leakage_free)
        index = {c: i for i, c in enumerate(self.class_names)}
        probs = p[[f"prob_{c}" for c in self.class_names]].to_numpy(np.float64)
        return p["true"].map(index).to_numpy(np.int64), p["predicted"].map(index).to_numpy(np.int64), probs

    def summary(self) -> dict[str, Any]:
        """Everything machine-readable (the CLI's --json and the metrics download)."""
        return {
            "run_id": self.run_id, "model_sha256": self.model_sha256, "eval_set": self.eval_kind,
            "description": self.description, "root": self.root, "dataset_fingerprint": self.dataset_fingerprint,
            **self.metrics, "n_overlapping": self.n_overlapping, "leakage_free": self.leakage_free,
            "temperature": self.temperature, "notes": self.notes, "timings": self.timings, "created": self.created,
            "from_cache": self.from_cache,
        }

    def card_summary(self) -> dict[str, Any]:
        """The compact summary stored in the model card."""
        return {
            "eval_set": self.eval_kind, "description": self.description,
            "dataset_fingerprint": self.dataset_fingerprint, "evaluated": self.created,
            **{k: self.metrics.get(k) for k in SUMMARY_KEYS}, "n_overlapping": self.n_overlapping,
            "leakage_free": {k: self.leakage_free.get(k) for k in SUMMARY_KEYS},
        }


# --- which images --------------------------------------------------------------------------------

def _card_data(run: Run) -> dict[str, Any]:
    data = run.card.get("data")
    return data if isinstance(data, dict) else {}


def _threshold(run: Run) -> int:
    return int((_card_data(run).get("data_config") or {}).get("near_dup_threshold", DataConfig().near_dup_threshold))


def open_eval_dataset(run: Run, eval_set: EvalSet) -> Dataset:
    """List (not decode) the dataset behind an evaluation set; fast, used for the cache key.

    Raises:
        WorkbenchError: the folder is missing (e.g. the training data is not on this machine)
            or its class names do not fit the model.
    """
    if eval_set.kind == "card_test":
        data = _card_data(run)
        if not data.get("test_files"):
            raise WorkbenchError("the model card records no held-out test split; evaluate on a dataset or "
                                 "folder instead", run.run_id)
        root = run.data_root
        if not root.is_dir():
            raise WorkbenchError(f"the training data of this model ({root}) is not on this machine, so its "
                                 "held-out test split cannot be evaluated here; evaluate on a dataset or folder "
                                 "that is", run.run_id)
        ds = open_folder(root)
    else:
        ds = open_folder(str(eval_set.folder))
    unknown = sorted(set(ds.class_names) - set(run.class_names))
    if unknown:
        raise WorkbenchError(
            f"class names do not match: the model knows {', '.join(run.class_names)} but the data also has "
            f"{', '.join(unknown)}; a model can only be scored on the classes it was trained on", str(ds.root))
    return ds


def data_kind_warning(card: dict[str, Any], eval_synthetic: bool) -> str | None:
    """A caution when a model trained on real scans is scored on synthetic phantoms, or the reverse.

    Returns None when the kinds match or the card does not say what it trained on.
    """
    trained = (card.get("data") or {}).get("synthetic") if isinstance(card.get("data"), dict) else None
    if not isinstance(trained, bool) or trained == eval_synthetic:
        return None
    if eval_synthetic:
        return ("This model learned from real MRI scans, but this evaluation set is the synthetic demo (drawn "
                "phantoms). Its score here says little about how it does on patients' images; evaluate it on real "
                "data instead.")
    return ("This model learned from the synthetic demo (drawn phantoms), but this evaluation set holds real MRI "
            "scans. A low score is expected: it has never seen a real image.")


def select_images(run: Run, eval_set: EvalSet, ds: Dataset, report) -> tuple[pd.DataFrame, str, list[str]]:
    """The scan rows (path, label, phash) to evaluate, a description and notes for the reader."""
    readable = report.readable
    notes: list[str] = []
    if eval_set.kind == "card_test":
        data = _card_data(run)
        wanted = list(data["test_files"])
        present = readable.set_index("path")
        missing = [p for p in wanted if p not in present.index]
        if data.get("fingerprint") != ds.fingerprint:  # file times differ; did any image change?
            from core.data.data_changes import dataset_changes

            if missing:
                raise WorkbenchError(f"the dataset changed since training: {len(missing)} of the {len(wanted)} "
                                     f"held-out test images are missing or unreadable (e.g. {missing[0]})",
                                     str(ds.root))
            changes = dataset_changes(data, readable)
            if changes.changed:
                notes.append(f"The dataset changed since training ({changes.sentence()}), but every held-out "
                             "test image is still present.")
        rows = present.loc[[p for p in wanted if p in present.index]].reset_index()
        description = f"held-out test split of {data.get('name', ds.name)} recorded at training ({len(wanted)} images)"
    elif eval_set.kind == "dataset_test":
        if (readable["source_split"] == "test").any():
            rows = readable[readable["source_split"] == "test"]
            description = f"Testing/ folder of {ds.name}"
        else:
            from core.data.splits import make_split

            # The card's split settings: on the model's own dataset this is exactly its test part.
            data_cfg = DataConfig.from_dict(_card_data(run).get("data_config"))
            split = make_split(report, data_cfg, "leakage_free")
            rows = readable[split.reindex(readable.index) == "test"]
            description = f"leakage-free test part of {ds.name} (split seed {data_cfg.split_seed})"
    else:
        rows = readable
        description = f"all images in {ds.name}"
    bad = len(report.files) - len(readable)
    if bad:
        notes.append(f"{bad} unreadable file(s) in the folder were skipped.")
    absent = sorted(set(run.class_names) - set(rows["label"]))
    if absent:
        notes.append(f"No images of {', '.join(absent)} in this set: recall for those classes is undefined.")
    if rows.empty:
        raise WorkbenchError("the evaluation set holds no readable images", str(ds.root))
    return rows[["path", "label", "phash"]].reset_index(drop=True), description, notes


# --- cache ---------------------------------------------------------------------------------------

def cache_key(run: Run, ds: Dataset, eval_set: EvalSet) -> str:
    """Key per (model sha256, dataset fingerprint, eval-set kind), plus what else changes the result."""
    from core.data.scan import SCAN_VERSION  # a new scan version may hash differently: overlap flags change
    from core.inference.tta import tta_mode

    results = run.card.get("results") or {}
    parts = [EVAL_VERSION, SCAN_VERSION, run.card.get("model_sha256"), ds.fingerprint, eval_set.kind, _threshold(run),
             json.dumps(_card_data(run).get("data_config"), sort_keys=True), tta_mode(run.card),
             results.get("temperature")]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


#: Where cache paths point when the cache folder cannot be created: reads miss, writes are skipped.
_NO_CACHE_FOLDER = Path(os.devnull) / "evaluation-cache-unavailable"


def _cache_paths(key: str) -> tuple[Path, Path]:
    from core.cachefs import cache_folder

    folder = cache_folder("evaluations") or _NO_CACHE_FOLDER  # None after one warning: work goes on
    return folder / f"{key}.json", folder / f"{key}.csv"


def _save(result: EvaluationResult, key: str) -> None:
    """Cache a result; an unwritable cache costs one warning, never the result."""
    from core.cachefs import cache_write, warn_uncached

    json_path, csv_path = _cache_paths(key)
    if json_path.parent == _NO_CACHE_FOLDER:
        return
    # The CSV lands first: a JSON file means the pair is complete.
    if not cache_write(csv_path, lambda fh: result.predictions.to_csv(fh, index=False), mode="w"):
        return
    meta = {k: v for k, v in result.__dict__.items() if k not in ("predictions", "from_cache")}
    try:
        write_json_atomic(json_path, meta)
    except OSError as exc:
        warn_uncached(json_path.parent, exc)


def load_cached(key: str) -> EvaluationResult | None:
    """A cached result, or None (missing caches are recomputed; damaged ones discarded first)."""
    from core.cachefs import DAMAGED_ENTRY, discard

    json_path, csv_path = _cache_paths(key)
    try:
        meta = json.loads(json_path.read_text())
        predictions = pd.read_csv(csv_path, keep_default_na=False)
        result = EvaluationResult(predictions=predictions, from_cache=True, **meta)
        needed = ["file", "true", "predicted", "overlap", *(f"prob_{c}" for c in result.class_names)]
        if len(predictions) != result.metrics.get("n_images") or not set(needed) <= set(predictions.columns):
            raise ValueError("the cached predictions disagree with their metrics")
        predictions["overlap"] = predictions["overlap"].astype(str).str.lower().eq("true")
        predictions["correct"] = predictions["true"] == predictions["predicted"]
    except FileNotFoundError:
        return None  # not cached (yet): another session may be writing it right now
    except (*DAMAGED_ENTRY, AttributeError):
        discard(json_path, csv_path)
        return None
    return result


def cached_evaluation(run: Run, eval_set: EvalSet) -> EvaluationResult | None:
    """The cached result for this run and set, if any (lists the folder; never predicts)."""
    try:
        return load_cached(cache_key(run, open_eval_dataset(run, eval_set), eval_set))
    except WorkbenchError:
        return None


# --- prediction ----------------------------------------------------------------------------------

def _stage(job: Job | None, lo: float, hi: float, phase: str):
    """A progress(done, total) callback that maps onto [lo, hi] of the job's bar and can cancel."""
    def progress(done: int, total: int) -> None:
        if job is not None:
            job.update(phase=f"{phase} {done}/{total}", progress=lo + (hi - lo) * done / max(total, 1))
            job.check_cancelled()
    return progress


def logits_function(run: Run, batch_size: int = BATCH) -> Callable[..., np.ndarray]:
    """Load a run's model once and return ``f(images, progress=None) -> logits (N, C)``.

    Logits as inference computes them (:class:`core.inference.runner.ModelRunner` with the card's
    test-time augmentation), batch by batch.
    """
    from core.inference.runner import ModelRunner
    from core.inference.tta import tta_mode
    from core.models.registry import load_model

    return ModelRunner(load_model(run), tta_mode(run.card), features=False, batch_size=batch_size).logits


def predict_logits(run: Run, images: np.ndarray, progress=None, batch_size: int = BATCH) -> np.ndarray:
    """Logits (N, C) of a run's model on ``images`` (see :func:`logits_function`)."""
    return logits_function(run, batch_size)(images, progress)


def overlap_distances(run: Run, phashes: list[str]) -> np.ndarray | None:
    """Each image's smallest pHash distance to any training image (None if the card has no hashes).

    Cards written before the head-crop half was added hold only the full-frame half (64 hex
    digits); then both sides are compared on that half alone, which is the same hash.
    """
    from core.data.hashing import HALF_WORDS, hashes_from_hex, nearest_distance

    train = list(_card_data(run).get("train_hashes") or [])
    if not train:
        return None
    half = 16 * HALF_WORDS  # hex digits of one half
    if min(len(train[0]), *(len(p) for p in phashes)) <= half:
        # Duplicate the shared full-frame half: min(full, full) is the full-frame distance.
        phashes = [p[:half] * 2 for p in phashes]
        train = [t[:half] * 2 for t in train]
    return nearest_distance(hashes_from_hex(phashes), hashes_from_hex(train))


def evaluate_run(run: Run, eval_set: EvalSet, job: Job | None = None, use_cache: bool = True,
                 store_in_card: bool = True) -> EvaluationResult:
    """Evaluate one run on one evaluation set (cached; the summary is stored in the card).

    Raises:
        WorkbenchError: missing data, class-name mismatch, or a model that cannot be loaded.
        JobCancelled: the job was cancelled (checked between batches).
    """
    from core.inference.calibration import softmax

    t0 = time.perf_counter()
    _check_preprocessing(run)
    ds = open_eval_dataset(run, eval_set)
    key = cache_key(run, ds, eval_set)
    if use_cache and (hit := load_cached(key)) is not None:
        _stage(job, 0.0, 1.0, "Cached result")(1, 1)
        return hit
    rows, description, notes, images, t_scan = _load_images(run, eval_set, ds, job)
    t_load = time.perf_counter()
    logits = predict_logits(run, images, _stage(job, 0.5, 0.95, "Predicting"))
    t_pred = time.perf_counter()

    temperature = float((run.card.get("results") or {}).get("temperature") or 1.0)
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
    predictions["overlap"] = (dist <= _threshold(run)) if dist is not None else False
    predictions["correct"] = predictions["true"] == predictions["predicted"]

    index = {c: i for i, c in enumerate(names)}
    y = rows["label"].map(index).to_numpy(np.int64)
    keep = ~predictions["overlap"].to_numpy()
    result = EvaluationResult(
        run_id=run.run_id, model_sha256=str(run.card.get("model_sha256")), eval_kind=eval_set.kind,
        description=description, root=str(ds.root), dataset_fingerprint=ds.fingerprint, class_names=names,
        predictions=predictions, metrics=metrics.summarize(y, pred, probs, names),
        leakage_free=metrics.summarize(y[keep], pred[keep], probs[keep], names),
        n_overlapping=int((~keep).sum()), temperature=temperature, notes=notes,
        timings={"scan_s": round(t_scan - t0, 3), "load_s": round(t_load - t_scan, 3),
                 "predict_s": round(t_pred - t_load, 3), "total_s": round(time.perf_counter() - t0, 3)},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    _save(result, key)
    if store_in_card:
        store_summary(run, result)
    return result


def _check_preprocessing(run: Run) -> None:
    from core.data.preprocess import get_recipe

    get_recipe(run.preprocessing)  # a recipe this workbench does not know: refuse with a clear message


def _load_images(run: Run, eval_set: EvalSet, ds: Dataset, job: Job | None):
    """Scan, select and decode an evaluation set: (rows, description, notes, images, time scanned)."""
    from core.data.scan import scan_dataset
    from core.training.pipeline import cached_images

    report = scan_dataset(ds, _threshold(run), progress=_stage(job, 0.0, 0.3, "Scanning images"))
    rows, description, notes = select_images(run, eval_set, ds, report)
    t_scan = time.perf_counter()
    paths = [ds.abspath(p) for p in rows["path"]]
    images = cached_images(paths, run.image_size, ds.fingerprint, _stage(job, 0.3, 0.5, "Loading images"),
                           preprocessing=run.preprocessing)
    return rows, description, notes, images, t_scan


def _robustness_path(run: Run, ds: Dataset, eval_set: EvalSet) -> Path:
    return _cache_paths(f"{cache_key(run, ds, eval_set)}-robustness-{ROBUSTNESS_VERSION}")[1]


def _read_table(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None  # missing or damaged cache: recompute


def cached_robustness(run: Run, eval_set: EvalSet) -> pd.DataFrame | None:
    """The cached robustness table for this run and set, if any (never predicts)."""
    try:
        return _read_table(_robustness_path(run, open_eval_dataset(run, eval_set), eval_set))
    except WorkbenchError:
        return None




def _raw_images(run: Run, eval_set: EvalSet, ds: Dataset, job: Job | None):
    """Leakage-free rows of an evaluation set, their labels, and their whole frames at RAW_SCALE × size."""
    from core.data.preprocess import LEGACY_ID
    from core.data.scan import scan_dataset
    from core.evaluation.robustness import RAW_SCALE
    from core.training.pipeline import cached_images

    report = scan_dataset(ds, _threshold(run), progress=_stage(job, 0.0, 0.2, "Scanning images"))
    rows, _, _ = select_images(run, eval_set, ds, report)
    dist = overlap_distances(run, rows["phash"].tolist())
    keep = np.ones(len(rows), bool) if dist is None else dist > _threshold(run)
    rows = rows[keep].reset_index(drop=True)
    labels = rows["label"].map({c: i for i, c in enumerate(run.class_names)}).to_numpy(np.int64)
    paths = [ds.abspath(p) for p in rows["path"]]
    raw = cached_images(paths, RAW_SCALE * run.image_size, ds.fingerprint, _stage(job, 0.2, 0.4, "Loading images"),
                        preprocessing=LEGACY_ID)
    return rows, labels, raw


def evaluate_robustness(run: Run, eval_set: EvalSet, job: Job | None = None, use_cache: bool = True) -> pd.DataFrame:
    """:func:`core.evaluation.robustness.robustness_table` for a run on an evaluation set (cached on disk).

    Images with a near-copy in the training set are left out, as in the leakage-free figures.
    Each shift acts on the whole frame as acquired (at twice the model's side); the run's own
    preprocessing then prepares the shifted image, exactly as for an upload.
    """
    from core.evaluation.robustness import robustness_table

    _check_preprocessing(run)
    ds = open_eval_dataset(run, eval_set)
    path = _robustness_path(run, ds, eval_set)
    if use_cache and (hit := _read_table(path)) is not None:
        return hit
    _, labels, raw = _raw_images(run, eval_set, ds, job)
    from core.inference.ood import OODModel
    from core.inference.runner import ModelRunner
    from core.inference.trust import card_thresholds, flags, warning_rates
    from core.inference.trust_fit import shifted_scores
    from core.inference.tta import tta_mode
    from core.models.registry import OOD_FILE, load_model

    temperature = float((run.card.get("results") or {}).get("temperature") or 1.0)
    runner = ModelRunner(load_model(run), tta_mode(run.card))  # one model load for every shift
    ood = OODModel.load(run.path / OOD_FILE) if (run.path / OOD_FILE).is_file() else None
    scores = shifted_scores(runner, ood, raw, labels, run.image_size, run.preprocessing, temperature,
                            job=_SubJob(job, 0.4, 1.0, "") if job is not None else None)
    table = robustness_table(None, raw, labels, len(run.class_names), temperature,
                             logits={k: s["logits"] for k, s in scores.items()})
    # Would the Predict page have warned? The card's own thresholds, on every shifted copy.
    thresholds = card_thresholds(run.card)
    rates = [warning_rates(flags(s["probs"], s["distance"], s["views"], thresholds).any,
                           s["probs"].argmax(axis=1) == labels) for s in scores.values()]
    for key in ("wrong_warned", "correct_warned", "silent_wrong"):
        table[key] = [r[key] for r in rates]
    table.insert(4, "n_images", len(labels))
    if path.parent != _NO_CACHE_FOLDER:
        from core.cachefs import cache_write

        cache_write(path, lambda fh: table.to_csv(fh, index=False), mode="w")
    return table


MAX_STORED_EVALUATIONS = 20  # summaries kept under card["evaluations"]; the oldest go first


def store_summary(run: Run, result: EvaluationResult) -> Run:
    """Store the result's summary in the run's card (re-read first: another job may have written).

    The card's own held-out result (``evaluation``) is written once, by the first evaluation of
    the card's test split, and never replaced. Every result is kept under ``evaluations``, keyed
    by what was evaluated (set kind and dataset fingerprint), so an evaluation on another folder
    can neither rewrite the held-out figure nor change which run is the default
    (:func:`core.models.registry.best_run` reads the held-out figure only).
    """
    fresh = resolve_run(str(run.path), root=run.path.parent)
    summary = result.card_summary()
    stored = fresh.card.get("evaluations")
    evaluations = dict(stored) if isinstance(stored, dict) else {}
    fields: dict[str, Any] = {}
    held_out = fresh.card.get("evaluation")
    if isinstance(held_out, dict) and held_out.get("eval_set", "card_test") != "card_test":
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
            sub = _SubJob(job, i / len(runs), (i + 1) / len(runs), f"[{i + 1}/{len(runs)}] ")
        out[run.run_id] = evaluate_run(run, eval_set, sub if job is not None else None)
    return out


class _SubJob:
    """Maps one run's progress onto its share of a multi-run job."""

    def __init__(self, job: Job, lo: float, hi: float, prefix: str) -> None:
        self.job, self.lo, self.hi, self.prefix = job, lo, hi, prefix

    def update(self, phase: str = "", progress: float = 0.0, **changes: Any) -> None:
        self.job.update(phase=self.prefix + phase, progress=self.lo + (self.hi - self.lo) * progress, **changes)

    def check_cancelled(self) -> None:
        self.job.check_cancelled()


# --- reading results -----------------------------------------------------------------------------

def worst_mistakes(predictions: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The most confident wrong predictions, most confident first."""
    wrong = predictions[predictions["true"] != predictions["predicted"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(n)


def cell_images(predictions: pd.DataFrame, true: str, predicted: str) -> pd.DataFrame:
    """Images of one confusion-matrix cell, most confident first."""
    cell = predictions[(predictions["true"] == true) & (predictions["predicted"] == predicted)]
    return cell.sort_values("confidence", ascending=False, kind="stable")


def gallery_images(run: Run, model, root: str | Path, rows: pd.DataFrame, cam_method: str | None = "gradcam",
                   display_size: int = 160, alpha: float = 0.4) -> list[np.ndarray]:
    """RGB uint8 images for prediction rows, each overlaid with the CAM of its predicted class.

    The CAM is computed on the model's own input (the card's image size) and drawn on a larger
    copy of the same slice so small models still give a readable picture. A file that can no
    longer be read becomes a grey square rather than an error.
    """
    from core.data.imageio import decode_image
    from core.data.preprocess import prepare_framed, resize_square

    index = {c: i for i, c in enumerate(run.class_names)}
    out = []
    for row in rows.itertuples():
        try:
            image = decode_image(Path(root) / str(row.file))
        except WorkbenchError:
            out.append(np.full((display_size, display_size, 3), 128, np.uint8))
            continue
        prepared = prepare_framed(image, run.image_size, run.preprocessing)
        # Show the original intensities of the part the model saw, at a readable size.
        shown = resize_square(prepared.framing.crop(image.pixels), max(display_size, run.image_size))[..., 0]
        if cam_method is None:
            out.append(np.repeat(shown[..., None], 3, axis=-1))
            continue
        from core.inference.gradcam import compute_cam
        from core.inference.overlay import overlay

        heat = compute_cam(model, prepared.pixels, index[row.predicted], cam_method)
        out.append(overlay(shown, heat, alpha))
    return out


def training_history(run: Run) -> pd.DataFrame:
    """The run's per-epoch history (empty if the run has none)."""
    path = run.path / HISTORY_FILE
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return pd.DataFrame()


def comparison_table(runs: list[Run], results: dict[str, EvaluationResult] | None = None) -> pd.DataFrame:
    """One row per run: architecture, accuracies, leakage-free macro-F1, cost; ``best`` marks the top one.

    Like is compared with like. Test metrics come from ``results`` when given (one evaluation
    set for all runs; only those rows can be best), else from each card's own held-out result
    (evaluations on other folders are left out). Among card figures, as in
    :func:`core.models.registry.best_run`, a run trained on synthetic data is best only when no run
    trained on real images is in the table.
    """
    rows, eligible = [], []
    for run in runs:
        res = (results or {}).get(run.run_id)
        if res is not None:
            ev = res.card_summary()
        else:
            ev = run.card.get("evaluation")
            ev = ev if isinstance(ev, dict) and ev.get("eval_set", "card_test") == "card_test" else {}
        eligible.append(res is not None if results else not run.synthetic or all(r.synthetic for r in runs))
        rows.append({
            "run": run.run_id,
            "arch": run.card.get("arch_title") or run.card.get("arch", ""),
            "val_accuracy": (run.card.get("results") or {}).get("val_accuracy"),
            "test_accuracy": ev.get("accuracy"),
            "leakage_free_macro_f1": (ev.get("leakage_free") or {}).get("macro_f1"),
            "eval_set": ev.get("eval_set", ""),
            "train_seconds": (run.card.get("timings") or {}).get("train_seconds"),
            "size_mb": (run.card.get("model_bytes") or 0) / 1e6 or None,
            "params": run.card.get("params"),
        })
    table = pd.DataFrame(rows, columns=["run", "arch", "val_accuracy", "test_accuracy", "leakage_free_macro_f1",
                                        "eval_set", "train_seconds", "size_mb", "params"])
    scores = pd.to_numeric(table["leakage_free_macro_f1"], errors="coerce").where(pd.Series(eligible, dtype=bool))
    table["best"] = False
    if scores.notna().any():
        table.loc[scores.idxmax(), "best"] = True
    return table

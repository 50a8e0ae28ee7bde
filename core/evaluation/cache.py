"""The evaluation cache: results on disk per (model, data, evaluation set, settings that change them).

Writes go through :mod:`core.cachefs`: an unwritable or full cache costs one warning and the
work goes on; a damaged entry is discarded and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from core.cachefs import DAMAGED_ENTRY, cache_folder, cache_write, discard, warn_uncached
from core.data.datasets import Dataset
from core.data.scan import SCAN_VERSION
from core.evaluation.eval_sets import EvalSet, near_dup_threshold
from core.evaluation.result import EvaluationResult
from core.inference.conformal import conformal_fingerprint
from core.models.runs import Run, write_json_atomic

EVAL_VERSION = 2  # bump when the cached result format or the computation changes
# 5: "another class's intensities" restyles the head only (core.data.style_mix head-v1)
ROBUSTNESS_VERSION = 5  # bump when a shift in core.evaluation.robustness or the table's columns change


def cache_key(run: Run, ds: Dataset, eval_set: EvalSet) -> str:
    """Key per (model sha256, dataset fingerprint, eval-set kind), plus what else changes the result."""
    card = run.card
    # SCAN_VERSION: a new scan version may hash differently, so overlap flags change.
    parts = [EVAL_VERSION, SCAN_VERSION, card.model_sha256, ds.fingerprint, eval_set.kind, near_dup_threshold(run),
             json.dumps(card.data.get("data_config"), sort_keys=True), card.tta,
             # the temperature the card holds: None for cards without one, as the keys always had
             card.results.temperature if "temperature" in card.results.written else None]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


#: Where cache paths point when the cache folder cannot be created: reads miss, writes are skipped.
NO_CACHE_FOLDER = Path(os.devnull) / "evaluation-cache-unavailable"


def cache_paths(key: str) -> tuple[Path, Path]:
    """(metadata JSON, predictions CSV) of a cached result."""
    folder = cache_folder("evaluations") or NO_CACHE_FOLDER  # None after one warning: work goes on
    return folder / f"{key}.json", folder / f"{key}.csv"


def save_result(result: EvaluationResult, key: str) -> None:
    """Cache a result; an unwritable cache costs one warning, never the result."""
    json_path, csv_path = cache_paths(key)
    if json_path.parent == NO_CACHE_FOLDER:
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
    json_path, csv_path = cache_paths(key)
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


def robustness_path(run: Run, ds: Dataset, eval_set: EvalSet) -> Path:
    """Where the robustness table of (run, data, set) is cached."""
    # The table holds prediction-set coverage too, so a refit of conformal.npz is a new entry; and
    # which answers are warned, so do refitted warnings (an ensemble re-registered with another rule
    # has the same members, hence the same model sha256).
    return cache_paths(f"{cache_key(run, ds, eval_set)}-robustness-{ROBUSTNESS_VERSION}-{conformal_fingerprint(run)}"
                       f"-{warnings_fingerprint(run)}")[1]


def warnings_fingerprint(run: Run) -> str:
    """A short digest of everything on the card that decides which answers are warned."""
    r = run.card.results
    parts = [r.low_confidence_threshold, dict(r.trust), dict(r.ood), dict(r.disagreement)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_table(path: Path) -> pd.DataFrame | None:
    """A cached table, or None when it is missing or damaged (then it is recomputed)."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None  # missing or damaged cache: recompute

"""A run's out-of-fold scores, kept beside its model for reuse (``oof.npz`` in the run folder).

Training the fold models (:mod:`core.training.out_of_fold`) takes minutes each, so a run's result
is stored once and reused by every later calibration: of the run alone, or of any ensemble that
holds it. The file records what the scores depend on (the model file's sha256, the class order,
the fold count, the split the card records and the fold models' recipe); a file that was made
for anything else, or cannot be read, is never used: the scores are computed again and the
reason is logged (:func:`core.training.out_of_fold.stored_or_computed`). The file lies beside
``model.keras`` and is covered by no checksum (a member's checksum covers its model file only:
:func:`core.models.ensemble.verify_member_file`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError

OOF_FILE = "oof.npz"
_ROW_SUM_TOLERANCE = 1e-4  # stored probabilities are float64 rows that sum to 1


@dataclass(frozen=True)
class OutOfFold:
    """A run's training images scored out of fold: each by a fold model trained without it."""

    files: tuple[str, ...]  # training images, relative to the run's data folder
    labels: np.ndarray  # (N,) class indices in the run's class order
    probs: np.ndarray  # (N, K) calibrated probabilities (each fold model's own temperature)
    fold_temperatures: tuple[float, ...]  # one per fold model
    depends_on: dict[str, Any] = field(default_factory=dict)  # what they are valid for (:func:`depends_on`)

    @property
    def folds(self) -> int:
        return len(self.fold_temperatures)

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(axis=1) == self.labels).mean()) if len(self.labels) else 0.0

    def summary(self) -> dict[str, Any]:
        """The card's ``results.conformal.out_of_fold`` for a single run."""
        return {"folds": self.folds, "n_images": len(self.files), "fold_temperatures": list(self.fold_temperatures),
                "oof_accuracy": self.accuracy}


def _digest(value: Any) -> str:
    from core.models.results import plain  # card sections are read-only mappings

    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def depends_on(run: Any, folds: int, cfg_override: dict | None = None,
               sha256_of: Callable[[Path], str] | None = None) -> dict[str, Any]:
    """What a run's out-of-fold scores depend on: model file, class order, folds, split and recipe.

    ``sha256_of``: how the model file is hashed (default :func:`core.models.runs.file_sha256`).

    Raises:
        WorkbenchError: the model file is missing or differs from its card.
    """
    from core.models.runs import file_sha256

    if not Path(run.model_path).is_file():
        raise WorkbenchError("the model file is missing, so its out-of-fold scores cannot be made or checked",
                             run.run_id)
    sha = (sha256_of or file_sha256)(run.model_path)
    if sha != run.card.model_sha256:
        raise WorkbenchError("the model file does not match its model card (sha256 differs); it may have been "
                             "modified, so it is not calibrated", run.run_id)
    data = run.card.data
    split = {"val": sorted(data.get("val_files") or []), "test": sorted(data.get("test_files") or []),
             "train_hashes": sorted(data.get("train_hashes") or []), "mode": data.get("split_mode"),
             "config": data.get("data_config"), "content": data.get("content_digest")}
    recipe = {"train_config": run.card.train_config, "changes": dict(cfg_override or {})}
    return {"model_sha256": sha, "class_names": list(run.class_names), "folds": int(folds),
            "split": _digest(split), "recipe": _digest(recipe)}


_WHY_STALE = {  # field of depends_on -> why stored scores made for another value cannot be used
    "model_sha256": "the model file changed since they were computed",
    "class_names": "they were computed with another class order",
    "folds": "they were computed with another number of folds",
    "split": "the run's split (its validation, test or training images) differs from the one they were computed on",
    "recipe": "their fold models were trained with another recipe",
}


def save_oof(folder: Path, oof: OutOfFold) -> None:
    """Write ``oof.npz`` into a run folder atomically (plain arrays and strings, no pickles)."""
    from core.atomic import write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, files=np.array(oof.files, dtype=str), labels=np.asarray(oof.labels, np.int64),
                        probs=np.asarray(oof.probs, np.float64),
                        fold_temperatures=np.asarray(oof.fold_temperatures, np.float64),
                        depends_on=np.array(json.dumps(oof.depends_on, sort_keys=True)))
    write_bytes(Path(folder) / OOF_FILE, buf.getvalue())


def _read(path: Path) -> OutOfFold:
    """The stored file as it is (ValueError and friends when it cannot be read)."""
    with np.load(path, allow_pickle=False) as z:
        return OutOfFold(tuple(str(f) for f in z["files"]), np.asarray(z["labels"], np.int64),
                         np.asarray(z["probs"], np.float64),
                         tuple(float(t) for t in np.asarray(z["fold_temperatures"], np.float64).ravel()),
                         json.loads(str(z["depends_on"])))


def _content_problem(oof: OutOfFold, run: Any) -> str | None:
    """Why the stored arrays do not fit together or the run's card, or None."""
    from core.classes import canonical_class

    n, k = len(oof.files), len(run.class_names)
    if oof.probs.shape != (n, k) or oof.labels.shape != (n,) or not n:
        return "its arrays do not fit together"
    if len(set(oof.files)) != n:
        return "it lists a training image twice"
    if not np.isfinite(oof.probs).all() or (oof.probs < 0).any() \
            or not np.allclose(oof.probs.sum(axis=1), 1.0, atol=_ROW_SUM_TOLERANCE):
        return "its probabilities are not probabilities"
    if not all(np.isfinite(t) and t > 0 for t in oof.fold_temperatures):
        return "its fold temperatures are not positive numbers"
    folder_class = [canonical_class(Path(f).parent.name) for f in oof.files]
    if folder_class != [run.class_names[i] if 0 <= i < k else None for i in oof.labels]:
        return "its labels do not match the training images' class folders"
    counts = (run.card.data.get("counts") or {}).get("train")
    if counts and Counter(folder_class) != Counter({c: int(v) for c, v in counts.items() if int(v)}):
        return "its training images are not the ones the run's card counts"
    return None


def load_oof(run: Any, expected: dict[str, Any]) -> tuple[OutOfFold | None, str | None]:
    """(stored scores, None) when ``oof.npz`` exists, can be read and was made for ``expected``
    (:func:`depends_on`); else (None, why not in words; None when there is no file)."""
    from core.inference.side_files import DAMAGED_FILE_ERRORS

    path = Path(run.path) / OOF_FILE
    if path.is_symlink():
        return None, f"{OOF_FILE} is a link (links are not followed)"
    if not path.is_file():
        return None, None
    try:
        oof = _read(path)
    except DAMAGED_FILE_ERRORS as exc:
        return None, f"{OOF_FILE} is damaged and cannot be read ({type(exc).__name__})"
    if not isinstance(oof.depends_on, dict):
        return None, f"{OOF_FILE} does not say what it was computed for"
    for key, why in _WHY_STALE.items():
        if oof.depends_on.get(key) != expected[key]:
            return None, f"the stored scores in {OOF_FILE} are out of date: {why}"
    if len(oof.fold_temperatures) != expected["folds"]:
        return None, f"{OOF_FILE} is damaged: it holds {len(oof.fold_temperatures)} fold temperatures"
    problem = _content_problem(oof, run)
    return (None, f"{OOF_FILE} is damaged: {problem}") if problem else (oof, None)

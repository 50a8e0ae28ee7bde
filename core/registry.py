"""The model registry under ``models/``: one folder per run with model, card and history.

A run folder is assembled under a hidden temporary name and renamed into place in one step,
so a reader (or a crash) never sees a half-written model. Loading checks the file's sha256
against its card and uses Keras ``safe_mode`` (no Lambda layers, no arbitrary code).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import WorkbenchError
from core.paths import models_dir

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
OOD_FILE = "ood.npz"
CARD_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Run:
    """One registered model run."""

    run_id: str
    path: Path
    card: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def partial(self) -> bool:
        return self.card.get("status") != "complete"

    @property
    def class_names(self) -> list[str]:
        return list(self.card["class_names"])

    @property
    def image_size(self) -> int:
        return int(self.card["image_size"])

    @property
    def preprocessing(self) -> str:
        """The preprocessing recipe id the model was trained with (cards before v2: the legacy one)."""
        from core.preprocess import LEGACY_ID

        pre = self.card.get("preprocessing")
        return str(pre.get("id") or LEGACY_ID) if isinstance(pre, dict) else LEGACY_ID

    @property
    def created(self) -> str:
        return str(self.card.get("created", ""))

    @property
    def data_root(self) -> Path:
        """The training data folder recorded in the card.

        A relative path (as typed on the command line) is tried from the working directory, then
        from the project root, so the committed default model finds ``../shared/data`` from anywhere.
        """
        root = Path(str((self.card.get("data") or {}).get("root", "")))
        if root.is_absolute() or root.is_dir():
            return root
        from core.paths import PROJECT_ROOT

        beside_project = PROJECT_ROOT / root
        return beside_project if beside_project.is_dir() else root

    def leakage_free_macro_f1(self) -> float | None:
        ev = self.card.get("evaluation") or {}
        value = (ev.get("leakage_free") or {}).get("macro_f1")
        return float(value) if value is not None else None

    def label(self) -> str:
        arch = self.card.get("arch_title") or self.card.get("arch", "?")
        acc = (self.card.get("results") or {}).get("val_accuracy")
        extra = f", val acc {acc:.1%}" if isinstance(acc, float) else ""
        tag = " [PARTIAL]" if self.partial else ""
        return f"{self.run_id} · {arch}{extra}{tag}"


def new_run_id(arch: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{arch}-{secrets.token_hex(2)}"


def remove_stale_staging(root: Path | None = None, max_age_s: float = 6 * 3600) -> list[Path]:
    """Delete staging folders left by a killed process (older than ``max_age_s``).

    ``list_runs`` already ignores them; this only reclaims the disk space. Age-based, so a
    run being assembled right now by another process is never touched.
    """
    removed = []
    now = time.time()
    for folder in (root or models_dir()).glob(".tmp-*"):
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            continue
    return removed


def staging_dir(run_id: str, root: Path | None = None) -> Path:
    """A hidden folder where a run is assembled before :func:`publish` renames it."""
    remove_stale_staging(root)
    path = (root or models_dir()) / f".tmp-{run_id}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def publish(staging: Path, run_id: str) -> Run:
    """Rename a complete staging folder into the registry (atomic on one file system)."""
    for required in (MODEL_FILE, CARD_FILE):
        if not (staging / required).exists():
            raise WorkbenchError(f"cannot publish: {required} is missing", str(staging))
    final = staging.parent / run_id
    os.replace(staging, final)
    return _read_run(final)  # type: ignore[return-value]


def _read_run(folder: Path) -> Run | None:
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (folder / MODEL_FILE).is_file() or "class_names" not in card:
        return None
    return Run(folder.name, folder, card)


def list_runs(root: Path | None = None, include_partial: bool = False) -> list[Run]:
    """Complete runs, newest first. Hidden/temporary folders and incomplete runs are skipped."""
    root = root or models_dir()
    runs = []
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        run = _read_run(folder)
        if run is not None and (include_partial or not run.partial):
            runs.append(run)
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


def best_run(runs: list[Run]) -> Run | None:
    """The run with the best leakage-free macro-F1; if none is evaluated, the newest."""
    scored = [r for r in runs if r.leakage_free_macro_f1() is not None]
    if scored:
        return max(scored, key=lambda r: r.leakage_free_macro_f1() or 0.0)
    return runs[0] if runs else None


def resolve_run(run_id_or_path: str, root: Path | None = None) -> Run:
    """Find a run by id or by its folder path (which must lie inside the registry)."""
    root = (root or models_dir()).resolve()
    candidate = Path(run_id_or_path).expanduser()
    folder = candidate if candidate.is_dir() else root / run_id_or_path
    if folder.name == MODEL_FILE:
        folder = folder.parent
    folder = folder.resolve()
    if root not in folder.parents:
        raise WorkbenchError(f"models are only loaded from the registry folder {root}", run_id_or_path)
    run = _read_run(folder) if folder.is_dir() else None
    if run is None:
        raise WorkbenchError("no complete model run with this id (model.keras and card.json needed)", run_id_or_path)
    return run


def update_card(run: Run, **fields: Any) -> Run:
    """Merge fields into a run's card (atomic write); used to store evaluation results."""
    card = dict(run.card)
    card.update(fields)
    write_json_atomic(run.path / CARD_FILE, card)
    return Run(run.run_id, run.path, card)


def load_model(run: Run):
    """Load a run's Keras model safely (sha256 must match the card; safe_mode on).

    Raises:
        WorkbenchError: the file changed since it was registered, or cannot be loaded.
    """
    from core.tfrt import keras

    expected = run.card.get("model_sha256")
    actual = file_sha256(run.model_path)
    if not expected or expected != actual:
        raise WorkbenchError(
            "the model file does not match its model card (sha256 differs); it may have been "
            "modified or corrupted, so it is not loaded",
            str(run.model_path),
        )
    try:
        return keras().saving.load_model(run.model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
        raise WorkbenchError(f"the model could not be loaded safely ({type(exc).__name__}: {exc})",
                             str(run.model_path)) from None

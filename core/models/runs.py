"""The run folders under ``models/``: one folder per run with model, card and history.

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
from pathlib import Path
from typing import Any

from core.atomic import write_json
from core.errors import WorkbenchError
from core.models.card import CARD_VERSION, MODEL_FILE, ModelCard, card_from_json_lenient
from core.models.card_validation import check_card_against_model
from core.models.class_binding import class_order_problem
from core.models.group_journal import hidden_members, reclaim_groups
from core.models.run import Run
from core.paths import check_path_text, models_dir

CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
OOD_FILE = "ood.npz"
__all__ = ["CARD_FILE", "CARD_VERSION", "HISTORY_FILE", "MODEL_FILE", "OOD_FILE", "ModelCard", "Run"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_CACHE_MAX = 256  # entries; a model is 1-100 MB, so hashing dominates and a few hundred keys cost nothing


def cached_file_sha256(path: Path) -> str:
    """:func:`file_sha256`, remembered per (resolved path, size, mtime_ns) for checks a page repeats on every
    rerun (a widget move). A rewritten file gets a new time, so it is hashed again; what loads or trains
    from a model hashes it afresh with :func:`file_sha256` instead.
    """
    resolved = Path(path).resolve()
    before = resolved.stat()
    key = (str(resolved), before.st_size, before.st_mtime_ns)
    if key in _SHA_CACHE:
        return _SHA_CACHE[key]
    sha = file_sha256(resolved)
    after = resolved.stat()
    if (after.st_size, after.st_mtime_ns) == key[1:]:  # one written to while it was read is not remembered
        if len(_SHA_CACHE) >= _SHA_CACHE_MAX:
            _SHA_CACHE.clear()
        _SHA_CACHE[key] = sha
    return sha


def new_run_id(arch: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{arch}-{secrets.token_hex(2)}"


def remove_stale_staging(root: Path | None = None, max_age_s: float = 6 * 3600) -> list[Path]:
    """Delete staging folders left by a killed process (older than ``max_age_s``), and the hidden
    members of an ensemble whose publishing was interrupted (:func:`core.models.group_journal.reclaim_groups`).

    ``list_runs`` already ignores them; this only reclaims the disk space. Age-based, so a
    run being assembled right now by another process is never touched.
    """
    root = root or models_dir()
    removed = reclaim_groups(root, max_age_s) if root.is_dir() else []
    now = time.time()
    for folder in root.glob(".tmp-*"):
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


def write_card(path: Path, card: ModelCard) -> None:
    """Publish a model card as ``card.json`` (atomically)."""
    write_json_atomic(path, card.to_json())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Publish ``data`` as JSON through :mod:`core.atomic` (unique temporary, fsync, rename)."""
    write_json(path, data)


def publish(staging: Path, run_id: str) -> Run:
    """Rename a complete staging folder into the registry (atomic on one file system)."""
    for required in (MODEL_FILE, CARD_FILE):
        if not (staging / required).exists():
            raise WorkbenchError(f"cannot publish: {required} is missing", str(staging))
    final = staging.parent / run_id
    os.replace(staging, final)
    return _read_run(final)  # type: ignore[return-value]


LINKED_FOLDER = "the run folder is a link; models are only loaded from the registry folder itself, not through links"


def _read_run(folder: Path) -> Run | None:
    """The run in ``folder``: None when it is not a run, a Run with ``problems`` when it is unusable."""
    model, card_path = folder / MODEL_FILE, folder / CARD_FILE
    if not card_path.is_file() or not (model.is_file() or _names_ensemble(card_path)):
        return None  # an ensemble has no network of its own: its card lists its members
    if model.is_symlink() or card_path.is_symlink():
        return Run(folder.name, folder, ModelCard(), ["model.keras or card.json is a link; links are not followed"])
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        return Run(folder.name, folder, ModelCard(), [f"card.json cannot be read ({type(exc).__name__})"])
    card, problems = card_from_json_lenient(data)
    if not problems and (order := class_order_problem(folder, card)):
        problems = [order]  # a swapped class order makes the run unusable everywhere (predict, export, calibrate)
    return Run(folder.name, folder, card, problems)


def _names_ensemble(card_path: Path) -> bool:
    """True when a card file says it describes an ensemble (unreadable files: False)."""
    try:
        return json.loads(card_path.read_text(encoding="utf-8")).get("kind") == "ensemble"
    except (OSError, ValueError, AttributeError):
        return False


def _inside(folder: Path, real_root: Path) -> bool:
    """True for a real folder directly inside the registry (not a link, not resolving elsewhere)."""
    return not folder.is_symlink() and folder.resolve().parent == real_root


def list_runs(root: Path | None = None, include_partial: bool = False, include_broken: bool = False) -> list[Run]:
    """Complete, usable runs, newest first.

    Hidden/temporary folders, incomplete runs and the members of an ensemble still being published
    (:mod:`core.models.publish_group`) are skipped. A run folder that is a link (or
    resolves outside the registry) is never usable, so nothing outside the registry becomes the
    default model. Runs with a malformed card are left out unless ``include_broken``: then they
    come with their ``problems``, so a page can list them as unusable.
    """
    root = root or models_dir()
    if not root.is_dir():
        return []
    real_root, runs, hidden = root.resolve(), [], hidden_members(root)
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or folder.name in hidden or not folder.is_dir():
            continue
        run = _read_run(folder) if _inside(folder, real_root) else Run(folder.name, folder, ModelCard(), [LINKED_FOLDER])
        if run is None or (run.problems and not include_broken):
            continue
        if run.problems or include_partial or not run.partial:
            runs.append(run)
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


def serving_run_ids(runs: list[Run]) -> set[str]:
    """Run ids that serve (as member or sentinel) a usable ensemble among ``runs``: such a run never
    outranks its ensemble, which was chosen as a whole on validation."""
    return {str(m.get("run_id")) for r in runs if r.usable and r.card.is_ensemble
            for m in (*r.card.members, *r.card.sentinels)}


def best_run(runs: list[Run]) -> Run | None:
    """The default model: the best leakage-free macro-F1 on each card's own held-out test split.

    Like is compared with like: evaluations on other folders never count (see
    :meth:`Run.leakage_free_macro_f1`), unusable or linked runs are never chosen, and a run
    trained on synthetic data is never chosen while a run trained on real images exists. A run
    adapted to one site is never chosen: its held-out score is that site's, not comparable, and
    it is meant for that site's images only. A run that serves a listed ensemble (a member or a
    sentinel) is not offered on its own: the ensemble was chosen on validation as the whole, and a
    member that happens to score higher on the test split must not displace it (that would choose
    on the test). If no candidate has a held-out score, the first (newest) candidate is returned.
    """
    serving = serving_run_ids(runs)
    usable = [r for r in runs if r.usable and not r.path.is_symlink() and not r.adapted and r.run_id not in serving]
    pool = [r for r in usable if not r.synthetic] or usable
    scored = [r for r in pool if r.leakage_free_macro_f1() is not None]
    if scored:
        return max(scored, key=lambda r: r.leakage_free_macro_f1() or 0.0)
    return pool[0] if pool else None


def resolve_run(run_id_or_path: str, root: Path | None = None) -> Run:
    """Find a usable run by id or by its folder path (a real folder directly inside the registry).

    Raises:
        WorkbenchError: outside the registry, a link, no complete run, a member of an ensemble still
            being published, or a malformed card.
    """
    if "\0" in str(run_id_or_path):
        raise WorkbenchError("the model name contains a NUL character", repr(run_id_or_path))
    check_path_text(run_id_or_path, "model")  # a 300-character name: refused, not an OSError
    root = (root or models_dir()).resolve()
    candidate = Path(run_id_or_path).expanduser()
    folder = candidate if candidate.is_dir() else root / run_id_or_path
    if folder.name == MODEL_FILE:
        folder = folder.parent
    if folder.is_symlink():
        raise WorkbenchError(f"models are only loaded from the registry folder {root}, never through a link",
                             run_id_or_path)
    folder = folder.resolve()
    if folder.parent != root:
        raise WorkbenchError(f"models are only loaded from the registry folder {root}", run_id_or_path)
    if not root.is_dir():
        raise WorkbenchError(f"no model run with this id: the model registry folder {root} does not exist (check "
                             "WORKBENCH_MODELS_DIR; it is created when the first model is trained)", run_id_or_path)
    run = _read_run(folder) if folder.is_dir() and folder.name not in hidden_members(root) else None
    if run is None:
        raise WorkbenchError("no complete model run with this id (model.keras and card.json needed, or an "
                             "ensemble's card.json)", run_id_or_path)
    if run.problems:
        raise WorkbenchError("this model run cannot be used because its model card is damaged: "
                             + "; ".join(run.problems), run_id_or_path)
    return run


def update_card(run: Run, **fields: Any) -> Run:
    """Store fields of a run's card (atomic write); used to store calibration and evaluation results.

    ``run.card`` is the card the caller started from: only what the caller changed relative to
    it is applied, to the card on disk now, under a lock of the run folder
    (:mod:`core.models.card_update`), so a result another command stored meanwhile is kept. A
    section set to None is emptied. The new card is checked like one read from disk.

    Raises:
        WorkbenchError: the changed card would not be valid (nothing is written).
    """
    from core.models.card_update import merge_section, run_folder_lock

    with run_folder_lock(run.path):
        on_disk = _read_run(run.path)
        current = on_disk.card if on_disk is not None and not on_disk.problems else run.card
        base, changes = run.card.to_json(), {}
        now = current.to_json()
        for key, value in fields.items():
            ours = {} if value is None else value
            changes[key] = ours if value is None else merge_section(base.get(key), _plain_json(ours), now.get(key))
        card = current.replace(**changes)
        card = ModelCard.from_json(card.to_json())  # the same checks as a card read from disk
        write_card(run.path / CARD_FILE, card)
    return Run(run.run_id, run.path, card)


def _plain_json(value: Any) -> Any:
    """``value`` as JSON would store it (tuples as lists, frozen mappings as dicts)."""
    from core.models.results import plain

    return json.loads(json.dumps(plain(value)))


def load_model(run: Run):
    """Load a run's Keras model safely (sha256 must match the card; safe_mode on).

    The card must be well formed (:func:`core.models.card_validation.validate_card`: unique class
    names, finite temperature above 0, thresholds in range) and must fit the loaded network:
    as many class names as outputs, the image size and channels of its input.

    Raises:
        WorkbenchError: a damaged card, a file changed since it was registered, a model that
            cannot be loaded, or a card that does not fit the model.
    """
    from core.lazy_tensorflow import keras

    if run.problems:
        raise WorkbenchError("the model card is damaged, so the model is not loaded: " + "; ".join(run.problems),
                             str(run.path / CARD_FILE))
    if run.card.is_ensemble:
        raise WorkbenchError(f"this run is an ensemble of {len(run.card.members)} models, not one network; this "
                             "step works on single models only (choose one of its members)", run.run_id)
    expected = run.card.model_sha256
    actual = file_sha256(run.model_path)
    if not expected or expected != actual:
        raise WorkbenchError(
            "the model file does not match its model card (sha256 differs); it may have been "
            "modified or corrupted, so it is not loaded",
            str(run.model_path),
        )
    try:
        model = keras().saving.load_model(run.model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
        raise WorkbenchError(f"the model could not be loaded safely ({type(exc).__name__}: {exc})",
                             str(run.model_path)) from None
    mismatch = check_card_against_model(run.card.to_json(), model)
    if mismatch:
        raise WorkbenchError("the model card does not fit the model (it may have been edited), so its answers "
                             "could carry the wrong labels; the model is not used: " + "; ".join(mismatch),
                             str(run.path / CARD_FILE))
    return model

"""Ensembles as a kind of run: a run folder whose card lists member runs instead of holding a network.

An ensemble averages its members' calibrated probabilities (each member with its own
preprocessing, image size, temperature and test-time augmentation, as its card says). Its card
(kind ``"ensemble"``) records every member's run id and model sha256, so a member that was
deleted, retrained under the same id or edited is refused, at registration and at every load.

Nested ensembles are **flattened**: naming an ensemble as a member adds its members (an average
of averages would weight some models twice without saying so). The same model twice is refused.
This module holds no TensorFlow code: :mod:`core.inference.ensemble_fit` registers an ensemble
(fitting its warnings and prediction sets), :mod:`core.inference.ensemble_predict` runs it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.data.preprocess import WHOLE_FRAME_ID
from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.runs import (
    Run,
    file_sha256,
    resolve_run,
)
from core.paths import models_dir

ENSEMBLE_ARCH = "ensemble"
DISPLAY_PREPROCESSING = WHOLE_FRAME_ID  # the ensemble's own input, for display: the whole frame (members crop their own)


def is_ensemble(run: Run) -> bool:
    """True when ``run`` is an ensemble run (its card's kind)."""
    return run.card.is_ensemble


def _member_label(run: Run) -> str:
    return f"{run.run_id} ({run.card.title}, {run.card.preprocessing_id}, {run.image_size} px)"


def flatten(runs: Sequence[Run], root: Path) -> list[Run]:
    """The single-model runs behind ``runs``: an ensemble named among them is replaced by its members."""
    out: list[Run] = []
    for run in runs:
        out.extend(member_runs(run, root) if is_ensemble(run) else [run])
    return out


def check_members(runs: Sequence[Run]) -> None:
    """Refuse a member list that cannot make an ensemble (fewer than two models, duplicates,
    unfinished runs, or class lists that differ in names or order).

    Raises:
        WorkbenchError: with the reason in plain words (both class lists named when they differ).
    """
    if len(runs) < 2:
        raise WorkbenchError("an ensemble needs at least two different models; one model on its own is already "
                             "a run (use it directly)", "--models")
    seen: dict[str, str] = {}
    for run in runs:
        if run.partial:
            raise WorkbenchError("this run was stopped before it finished; only complete runs can join an "
                                 "ensemble", run.run_id)
        sha = run.card.model_sha256
        if sha in seen:
            raise WorkbenchError(f"the same model is listed twice ({seen[sha]} and {run.run_id}, after expanding "
                                 "any ensemble into its members); it would count double in the average", "--models")
        seen[sha] = run.run_id
    first = runs[0]
    for run in runs[1:]:
        if run.class_names != first.class_names:
            raise WorkbenchError(
                "the models do not know the same classes in the same order, so their probabilities cannot be "
                f"averaged: {first.run_id} has [{', '.join(first.class_names)}], {run.run_id} has "
                f"[{', '.join(run.class_names)}]", "--models")


def verify_member_file(run: Run, expected_sha: str | None = None,
                       sha256_of: Callable[[Path], str] | None = None) -> None:
    """Refuse a member whose model file is gone or differs from its card (or from ``expected_sha``).

    ``sha256_of``: how the file is hashed (default :func:`file_sha256`; a page's plan may pass a cached one).

    Raises:
        WorkbenchError: the file is missing, or was changed after it was registered.
    """
    if not run.model_path.is_file():
        raise WorkbenchError("the member's model file is missing, so the ensemble cannot be used", run.run_id)
    actual = (sha256_of or file_sha256)(run.model_path)
    if actual != run.card.model_sha256 or (expected_sha is not None and actual != expected_sha):
        raise WorkbenchError("the member's model file changed after the ensemble was registered (its checksum "
                             "differs), so the ensemble is not used; register the ensemble again from models "
                             "you trust", run.run_id)


def member_runs(run: Run, root: Path | None = None, verify: bool = True,
                sha256_of: Callable[[Path], str] | None = None) -> list[Run]:
    """An ensemble's member runs, each checked against the checksum its card recorded.

    Members are looked up in the ensemble's own registry folder (``root`` overrides); ``sha256_of``
    as for :func:`verify_member_file`.

    Raises:
        WorkbenchError: a member was deleted or moved, is damaged, or its model file changed.
    """
    if not is_ensemble(run):
        raise WorkbenchError("this run is a single model, not an ensemble", run.run_id)
    root = root or run.path.parent
    out = []
    for member in run.card.members:
        member_id = str(member.get("run_id"))
        try:
            m = resolve_run(member_id, root=root)
        except WorkbenchError as exc:
            raise WorkbenchError(f"member {member_id} of ensemble {run.run_id} cannot be used ({exc.reason}); it "
                                 "may have been deleted or moved, so the ensemble is refused", member_id) from None
        if m.card.is_ensemble:
            raise WorkbenchError(f"member {member_id} of ensemble {run.run_id} is itself an ensemble now; the "
                                 "ensemble is refused", member_id)
        if verify:
            try:
                verify_member_file(m, str(member.get("model_sha256")), sha256_of)
            except WorkbenchError as exc:
                raise WorkbenchError(f"member {member_id} of ensemble {run.run_id}: {exc.reason}", member_id) \
                    from None
        out.append(m)
    return out


def _common_files(runs: Sequence[Run], key: str) -> list[str]:
    """Files listed under ``data.<key>`` by every member (members trained on the same folder), in order."""
    roots = {str(r.data_root.resolve()) if str(r.data_root) else "" for r in runs}
    if len(roots) != 1:
        return []  # different data folders: relative names would not mean the same image
    common = set(runs[0].card.data.get(key) or [])
    for r in runs[1:]:
        common &= set(r.card.data.get(key) or [])
    return [f for f in runs[0].card.data.get(key) or [] if f in common]


def ensemble_sha256(runs: Sequence[Run]) -> str:
    """A checksum of the members' checksums, in order: the ensemble's identity for caches."""
    return hashlib.sha256("|".join(r.card.model_sha256 for r in runs).encode()).hexdigest()


def ensemble_card(runs: Sequence[Run], run_id: str, title: str | None = None) -> ModelCard:
    """The card of an ensemble of ``runs`` (checked members), before its warnings are fitted.

    Val and test files are those common to every member (an image in one member's test split and
    another's training split is in neither list), training hashes the union (a near-copy of any
    member's training image is flagged).
    """
    first = runs[0]
    data: dict[str, Any] = {k: first.card.data.get(k) for k in ("name", "root", "kind", "fingerprint", "split_mode",
                                                                  "data_config") if first.card.data.get(k) is not None}
    data["val_files"] = _common_files(runs, "val_files")
    data["test_files"] = _common_files(runs, "test_files")
    hashes: list[str] = []
    for r in runs:
        hashes.extend(h for h in r.card.data.get("train_hashes") or [] if h not in hashes)
    data["train_hashes"] = hashes
    data["synthetic"] = any(r.synthetic for r in runs)
    members = [{"run_id": r.run_id, "model_sha256": r.card.model_sha256, "arch": r.card.arch,
                "title": r.card.title, "image_size": r.image_size, "preprocessing": r.preprocessing,
                "temperature": r.card.temperature, "tta": r.card.tta} for r in runs]
    return ModelCard(
        run_id=run_id, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), arch=ENSEMBLE_ARCH,
        arch_title=title or f"Ensemble of {len(runs)} ({', '.join(sorted({r.card.title for r in runs}))})",
        class_names=tuple(first.class_names), image_size=max(r.image_size for r in runs),
        input_channels=first.card.input_channels, preprocessing_id=DISPLAY_PREPROCESSING,
        preprocessing_description="each member prepares its own input as its card says: "
                                  + "; ".join(_member_label(r) for r in runs),
        weights="the members' own", model_file="", model_sha256=ensemble_sha256(runs),
        params=sum(r.card.params for r in runs), data=data,
        timings={"train_seconds": sum(r.card.train_seconds or 0.0 for r in runs)},  # the members', one after another
        results={"temperature": 1.0, "tta": "none"},  # members' calibration and views are applied inside
        kind="ensemble", members=tuple(members))


def open_members(names: Sequence[str], root: Path | None = None) -> list[Run]:
    """Resolve, flatten and check the runs named for a new ensemble (files verified).

    Raises:
        WorkbenchError: unknown, damaged or tampered runs, or members that cannot be averaged.
    """
    root = (root or models_dir()).resolve()
    runs = flatten([resolve_run(str(n), root=root) for n in names], root)
    check_members(runs)
    for r in runs:
        verify_member_file(r)
    return runs

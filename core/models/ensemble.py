"""Ensembles as a kind of run: a run folder whose card lists member runs instead of holding a network.

An ensemble averages its members' calibrated probabilities (each member with its own
preprocessing, image size, temperature and test-time augmentation, as its card says). Its card
(kind ``"ensemble"``) records every member's run id and model sha256, so a member that was
deleted, retrained under the same id or edited is refused, at registration and at every load.

Nested ensembles are **flattened**: naming an ensemble as a member adds its members (an average
of averages would weight some models twice without saying so) and its sentinels. The same model
twice is refused.

An ensemble may also list **sentinels**: single models that never vote (the answer, the heat map
and the prediction sets are the members' alone) but raise a warning when their top class differs
from the ensemble's. A model that reads the image's style (brightness, framing) makes a good
sentinel: where the members have learned to ignore a change of style, it notices it.
This module holds no TensorFlow code: :mod:`core.inference.ensemble_fit` registers an ensemble
(fitting its warnings and prediction sets), :mod:`core.inference.ensemble_predict` runs it.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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


def check_members(runs: Sequence[Run], sentinels: Sequence[Run] = ()) -> None:
    """Refuse a member list that cannot make an ensemble (fewer than two models, duplicates,
    unfinished runs, or class lists that differ in names or order); ``sentinels`` are checked the
    same way (a model may not be both a member and a sentinel).

    Raises:
        WorkbenchError: with the reason in plain words (both class lists named when they differ).
    """
    if len(runs) < 2:
        raise WorkbenchError("an ensemble needs at least two different models; one model on its own is already "
                             "a run (use it directly)", "--models")
    seen: dict[str, str] = {}
    for run in (*runs, *sentinels):
        if run.partial:
            raise WorkbenchError("this run was stopped before it finished; only complete runs can join an "
                                 "ensemble", run.run_id)
        sha = run.card.model_sha256
        if sha in seen:
            raise WorkbenchError(f"the same model is listed twice ({seen[sha]} and {run.run_id}, after expanding "
                                 "any ensemble into its members and sentinels); a model either votes once or "
                                 "only warns", "--models")
        seen[sha] = run.run_id
    first = runs[0]
    for run in (*runs[1:], *sentinels):
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
        WorkbenchError: the file is missing, was changed after its model was trained (it differs
            from its own card), or after the ensemble was registered (it differs from ``expected_sha``).
    """
    if not run.model_path.is_file():
        raise WorkbenchError("the member's model file is missing, so the ensemble cannot be used", run.run_id)
    actual = (sha256_of or file_sha256)(run.model_path)
    if actual != run.card.model_sha256:
        # Checked first: at registration there is no ensemble record yet, and "changed after the ensemble
        # was registered" would send the reader looking for an ensemble that does not exist.
        raise WorkbenchError("this model's file was changed or damaged after the model was trained (its checksum "
                             "differs from the one its model card recorded), so it cannot join or serve in an "
                             "ensemble; train it again or restore the original file", run.run_id)
    if expected_sha is not None and actual != expected_sha:
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
    return _listed_runs(run, run.card.members, "member", root, verify, sha256_of)


def sentinel_runs(run: Run, root: Path | None = None, verify: bool = True,
                  sha256_of: Callable[[Path], str] | None = None) -> list[Run]:
    """An ensemble's sentinel runs (often none), checked as :func:`member_runs` checks members.

    Raises:
        WorkbenchError: a sentinel was deleted or moved, is damaged, or its model file changed.
    """
    return _listed_runs(run, run.card.sentinels, "sentinel", root, verify, sha256_of)


def _listed_runs(run: Run, entries: Sequence[Any], role: str, root: Path | None, verify: bool,
                 sha256_of: Callable[[Path], str] | None) -> list[Run]:
    if not is_ensemble(run):
        raise WorkbenchError("this run is a single model, not an ensemble", run.run_id)
    root = root or run.path.parent
    out = []
    for member in entries:
        member_id = str(member.get("run_id"))
        try:
            m = resolve_run(member_id, root=root)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{role} {member_id} of ensemble {run.run_id} cannot be used ({exc.reason}); it "
                                 "may have been deleted or moved, so the ensemble is refused", member_id) from None
        if m.card.is_ensemble:
            raise WorkbenchError(f"{role} {member_id} of ensemble {run.run_id} is itself an ensemble now; the "
                                 "ensemble is refused", member_id)
        if verify:
            try:
                verify_member_file(m, str(member.get("model_sha256")), sha256_of)
            except WorkbenchError as exc:
                raise WorkbenchError(f"{role} {member_id} of ensemble {run.run_id}: {exc.reason}", member_id) \
                    from None
        out.append(m)
    return out


def _root(run: Run) -> str:
    return str(run.data_root.resolve()) if str(run.data_root) else ""


def _common_files(runs: Sequence[Run], key: str) -> list[str]:
    """Files listed under ``data.<key>`` by every member (members trained on the same folder), in order."""
    roots = {_root(r) for r in runs}
    if len(roots) != 1:
        return []  # different data folders: relative names would not mean the same image
    common = set(runs[0].card.data.get(key) or [])
    for r in runs[1:]:
        common &= set(r.card.data.get(key) or [])
    return [f for f in runs[0].card.data.get(key) or [] if f in common]


def ensemble_sha256(runs: Sequence[Run], sentinels: Sequence[Run] = ()) -> str:
    """A checksum of the members' checksums, in order (then the sentinels', which change the warnings):
    the ensemble's identity for caches. Without sentinels it is what it was before they existed."""
    text = "|".join(r.card.model_sha256 for r in runs)
    if sentinels:
        text += "|sentinels|" + "|".join(r.card.model_sha256 for r in sentinels)
    return hashlib.sha256(text.encode()).hexdigest()


def _entry(r: Run) -> dict[str, Any]:
    """What an ensemble's card records of one of its runs."""
    return {"run_id": r.run_id, "model_sha256": r.card.model_sha256, "arch": r.card.arch, "title": r.card.title,
            "image_size": r.image_size, "preprocessing": r.preprocessing, "temperature": r.card.temperature,
            "tta": r.card.tta}


def union_of_hashes(lists: Iterable[Sequence[str]]) -> list[str]:
    """The union of the models' training hashes as a multiset: each hash as often as the model that
    lists it most often lists it, in first-seen order.

    Why not a set: a dataset's exact copies are listed once per copy in a model's card, and the
    "dataset changed since training" check counts hashes. With a set, the default ensemble's own
    untouched folder read as "187 images added" (its training split holds 187 extra copies).
    """
    union: Counter[str] = Counter()
    for hashes in lists:
        union |= Counter(hashes)  # the larger count of each hash
    return list(union.elements())


def ensemble_card(runs: Sequence[Run], run_id: str, title: str | None = None,
                  sentinels: Sequence[Run] = ()) -> ModelCard:
    """The card of an ensemble of ``runs`` (checked members) and ``sentinels``, before its warnings are fitted.

    Val and test files are those common to every member and sentinel (an image in one model's test
    split and another's training split is in neither list), training hashes the union (a near-copy of
    any model's training image is flagged).
    """
    first = runs[0]
    every = [*runs, *sentinels]
    data: dict[str, Any] = {k: first.card.data.get(k) for k in ("name", "root", "kind", "fingerprint", "split_mode",
                                                                  "data_config") if first.card.data.get(k) is not None}
    # A sentinel from another data folder (an adapted ensemble's, trained on the original images) did not
    # train on this folder's images, so it narrows nothing; one from the same folder keeps its own out.
    same = [r for r in sentinels if _root(r) == _root(first)]
    data["val_files"] = _common_files([*runs, *same], "val_files")
    data["test_files"] = _common_files([*runs, *same], "test_files")
    data["train_hashes"] = union_of_hashes(r.card.data.get("train_hashes") or [] for r in every)
    data["synthetic"] = any(r.synthetic for r in every)
    watch = ("; sentinels (warn only, never vote): " + "; ".join(_member_label(r) for r in sentinels)) \
        if sentinels else ""
    return ModelCard(
        run_id=run_id, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), arch=ENSEMBLE_ARCH,
        arch_title=title or f"Ensemble of {len(runs)} ({', '.join(sorted({r.card.title for r in runs}))})",
        class_names=tuple(first.class_names), image_size=max(r.image_size for r in every),
        input_channels=first.card.input_channels, preprocessing_id=DISPLAY_PREPROCESSING,
        preprocessing_description="each member prepares its own input as its card says: "
                                  + "; ".join(_member_label(r) for r in runs) + watch,
        weights="the members' own", model_file="", model_sha256=ensemble_sha256(runs, sentinels),
        params=sum(r.card.params for r in every), data=data,
        timings={"train_seconds": sum(r.card.train_seconds or 0.0 for r in every)},  # one after another
        results={"temperature": 1.0, "tta": "none"},  # members' calibration and views are applied inside
        kind="ensemble", members=tuple(_entry(r) for r in runs), sentinels=tuple(_entry(r) for r in sentinels))


def open_members(names: Sequence[str], root: Path | None = None,
                 sentinel_names: Sequence[str] = ()) -> tuple[list[Run], list[Run]]:
    """(members, sentinels): resolve, flatten and check the runs named for a new ensemble (files verified).

    An ensemble named among ``names`` brings its members and its sentinels; a sentinel must be one model.

    Raises:
        WorkbenchError: unknown, damaged or tampered runs, members that cannot be averaged, or a
            sentinel that is an ensemble.
    """
    root = (root or models_dir()).resolve()
    named = [resolve_run(str(n), root=root) for n in names]
    runs = flatten(named, root)
    sentinels = [s for r in named if is_ensemble(r) for s in sentinel_runs(r, root)]
    for name in sentinel_names:
        s = resolve_run(str(name), root=root)
        if is_ensemble(s):
            raise WorkbenchError("a sentinel must be one model, not an ensemble: it warns when its own answer "
                                 "differs from the ensemble's", s.run_id)
        sentinels.append(s)
    check_members(runs, sentinels)
    for r in (*runs, *sentinels):
        verify_member_file(r)
    return runs, sentinels

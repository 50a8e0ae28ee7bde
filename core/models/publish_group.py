"""Publishing an ensemble together with new member runs, as one step a reader can see.

One run is published by one rename (:func:`core.models.runs.publish`), but an ensemble of new
members takes several, and a process can die between them. A small journal in the registry,
written before the first rename and removed after the last, makes the group all or nothing:

- while the journal's ensemble is not in the registry, the members it names are hidden
  (:func:`hidden_members`, used by ``list_runs`` and ``resolve_run``), so the ensemble's own
  rename is the one moment at which the whole group appears;
- an error removes what this call renamed in, ensemble first, then the journal;
- after a crash the journal stays, its members stay hidden, and :func:`reclaim_groups` removes
  them once the journal is old (by age, so a publish in progress is never touched).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from core.atomic import write_json

JOURNAL_PREFIX = ".publishing-"
JOURNAL_SUFFIX = ".json"
STALE_AFTER_S = 6 * 3600  # as for staging folders: far longer than any publish takes


def journal_path(root: Path, ensemble_id: str) -> Path:
    """Where the journal of the group whose ensemble is ``ensemble_id`` lives (hidden: starts with a dot)."""
    return root / f"{JOURNAL_PREFIX}{ensemble_id}{JOURNAL_SUFFIX}"


def publish_group(members: Sequence[tuple[Path, str]], ensemble_stage: Path, ensemble_id: str):
    """Rename each member's staging folder, then the ensemble's, into the registry that holds them.

    Args:
        members: (staging folder, run id) of each new member; each must hold a model and a card.
        ensemble_stage: the ensemble's staging folder (its card names the members).
        ensemble_id: the ensemble's run id.
    Returns:
        The published ensemble run.
    Raises:
        WorkbenchError or OSError from a rename or from reading the ensemble back; whatever this
        call had renamed in is removed first.
    """
    from core.models.runs import publish, resolve_run

    root = ensemble_stage.parent
    journal = journal_path(root, ensemble_id)
    write_json(journal, {"ensemble": ensemble_id, "members": [run_id for _, run_id in members]})
    done: list[Path] = []
    try:
        for stage, run_id in members:
            done.append(publish(stage, run_id).path)
        final = root / ensemble_id
        os.replace(ensemble_stage, final)  # the group appears here; publish() wants a model file an ensemble lacks
        done.append(final)
        run = resolve_run(ensemble_id, root=root)
    except BaseException:
        for path in reversed(done):  # the ensemble first: members left by a crash here stay hidden
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            journal.unlink()
        raise
    with contextlib.suppress(OSError):  # the ensemble is in: a journal left behind hides nothing
        journal.unlink()
    return run


def _journals(root: Path) -> list[tuple[Path, dict]]:
    """Every readable journal in ``root`` with its content (an unreadable one names nothing)."""
    out = []
    for path in root.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("ensemble"), str) and isinstance(data.get("members"), list):
            out.append((path, data))
    return out


def _is_published(root: Path, run_id: str) -> bool:
    return _plain_name(run_id) and (root / run_id).is_dir()


def _plain_name(run_id: object) -> bool:
    """A run id that names a folder directly inside the registry (a journal never reaches elsewhere)."""
    return isinstance(run_id, str) and bool(run_id) and not run_id.startswith(".") and Path(run_id).name == run_id


def hidden_members(root: Path) -> set[str]:
    """Run ids of members whose ensemble is not published yet (being published, or interrupted)."""
    hidden: set[str] = set()
    for _, data in _journals(root):
        if not _is_published(root, data["ensemble"]):
            hidden.update(m for m in data["members"] if _plain_name(m))
    return hidden


def reclaim_groups(root: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove what interrupted group publishes left: the members of an old journal whose ensemble never
    arrived, and journals whose ensemble did. Errors are ignored (housekeeping, never a reason to fail)."""
    removed: list[Path] = []
    now = time.time()
    for path, data in _journals(root):
        try:
            if not _is_published(root, data["ensemble"]):
                if now - path.stat().st_mtime <= max_age_s:
                    continue  # maybe being published right now
                for folder in (root / m for m in data["members"] if _plain_name(m)):
                    if folder.is_dir() and not folder.is_symlink():
                        shutil.rmtree(folder)
                        removed.append(folder)
            path.unlink()
        except OSError:
            continue
    return removed

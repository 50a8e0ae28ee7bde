"""The journal of an ensemble published with new members (:mod:`core.models.publish_group`): what it hides
and what a crash leaves.

A journal in the registry names an ensemble and its new members. While the ensemble is not in the
registry, its members are hidden (:func:`hidden_members`, used by ``list_runs`` and ``resolve_run``);
:func:`reclaim_groups` removes the members of an old journal whose ensemble never arrived. Apart from
:mod:`core.models.runs` so that the registry can read journals without importing the publisher.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

JOURNAL_PREFIX = ".publishing-"
JOURNAL_SUFFIX = ".json"
STALE_AFTER_S = 6 * 3600  # as for staging folders: far longer than any publish takes


def journal_path(root: Path, ensemble_id: str) -> Path:
    """Where the journal of the group whose ensemble is ``ensemble_id`` lives (hidden: starts with a dot)."""
    return root / f"{JOURNAL_PREFIX}{ensemble_id}{JOURNAL_SUFFIX}"


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

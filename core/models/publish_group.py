"""Publishing an ensemble together with new member runs, as one step a reader can see.

One run is published by one rename (:func:`core.models.runs.publish`), but an ensemble of new
members takes several, and a process can die between them. A small journal in the registry
(:mod:`core.models.group_journal`), written before the first rename and removed after the last,
makes the group all or nothing:

- while the journal's ensemble is not in the registry, the members it names are hidden
  (``list_runs`` and ``resolve_run`` skip them), so the ensemble's own rename is the one moment at
  which the whole group appears;
- an error removes what this call renamed in, ensemble first, then the journal;
- after a crash the journal stays, its members stay hidden, and they are removed once the journal
  is old (:func:`core.models.group_journal.reclaim_groups`, by age, so a publish in progress is
  never touched).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from core.atomic import write_json
from core.models.group_journal import journal_path
from core.models.runs import Run, publish, resolve_run


def publish_group(members: Sequence[tuple[Path, str]], ensemble_stage: Path, ensemble_id: str) -> Run:
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

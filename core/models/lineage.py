"""What a run learned from: its training files, and for an adapted run its lineage root's too.

Used by the site check (the reference sample) and by adaptation (the replayed images). An
ensemble learned from what its members learned from.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import WorkbenchError


def training_files(run) -> list[Path]:
    """The run's training images: its data folder minus the validation and test files on its card.

    For an adapted run that is the site part it was adapted on; :func:`reference_files` adds the
    source images its lineage started from.

    Raises:
        WorkbenchError: the training folder is not on this machine.
    """
    from core.data.datasets import open_folder

    root = run.data_root
    if not root.is_dir():
        raise WorkbenchError("the model's training images are not on this machine, so there is nothing to "
                             "compare with", str(root))
    ds = open_folder(root)
    held = set(run.card.data.get("val_files") or []) | set(run.card.data.get("test_files") or [])
    return [ds.abspath(p) for p in ds.files["path"] if p not in held]


def reference_files(run) -> list[Path]:
    """What ``run`` learned from: its training files, and for an adapted run its lineage root's too.

    For an ensemble, every member's (each file once): an ensemble's own card lists only the
    held-out files its members share, so "its folder minus those" would count an image one member
    was tested on as learned.

    Raises:
        WorkbenchError: the training folder is not on this machine, or an ensemble member is unusable.
    """
    from core.models.runs import resolve_run

    if run.card.is_ensemble:
        from core.models.ensemble import member_runs

        return list(dict.fromkeys(f for m in member_runs(run) for f in reference_files(m)))
    files = training_files(run)
    chain = list((run.card.extra.get("lineage") or {}).get("chain") or [])
    if chain:
        try:
            files += training_files(resolve_run(chain[0]))
        except WorkbenchError:
            pass  # the source run is gone: compare with the site part alone
    return files

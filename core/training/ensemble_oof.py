"""An ensemble's out-of-fold scores: its members' own (stored in each member's ``oof.npz``, or
computed and stored there), matched image by image and averaged as the ensemble averages.

Members share one split, so every training image is a training image of every member and each
member's fold models never saw it. Members that were trained on other images are refused: an
image one member trained on would be scored by the others alone, and the average would not be
the ensemble's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.inference.oof_store import OutOfFold
from core.jobs import Job, JobStage
from core.training.out_of_fold import stored_or_computed


def check_same_training(members: Sequence[Any]) -> None:
    """Refuse, before any training, members whose cards record other training data.

    Raises:
        WorkbenchError: other data folders, or other training images (their perceptual hashes differ).
    """
    first = members[0]
    for m in members[1:]:
        if m.data_root.resolve() != first.data_root.resolve():
            raise WorkbenchError(f"the members were trained on different data folders ({first.run_id}: "
                                 f"{first.data_root}, {m.run_id}: {m.data_root}), so their training images cannot "
                                 "be scored out of fold as one ensemble", m.run_id)
        a, b = first.card.data.get("train_hashes"), m.card.data.get("train_hashes")
        if a and b and Counter(a) != Counter(b):
            raise WorkbenchError(f"the members were trained on different images ({first.run_id}: {len(a)} training "
                                 f"images, {m.run_id}: {len(b)}, not the same ones), so no image is out of fold for "
                                 "every member; out-of-fold calibration needs members that share one split", m.run_id)


def align(members: Sequence[Any], oofs: Sequence[OutOfFold]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(training files, labels, (M, N, K) member probabilities), rows matched by file path.

    Raises:
        WorkbenchError: the members' training files differ (one named), or their labels do.
    """
    files, labels = oofs[0].files, oofs[0].labels
    stacked = [oofs[0].probs]
    for m, oof in zip(members[1:], oofs[1:]):
        row = {f: i for i, f in enumerate(oof.files)}
        only_first = [f for f in files if f not in row]
        only_here = sorted(set(oof.files) - set(files))
        if only_first or only_here:
            example = (f"{only_first[0]} is a training image of {members[0].run_id} only" if only_first
                       else f"{only_here[0]} is a training image of {m.run_id} only")
            raise WorkbenchError(f"the members' training images differ ({len(only_first)} only in "
                                 f"{members[0].run_id}, {len(only_here)} only in {m.run_id}; e.g. {example}), so "
                                 "their out-of-fold scores cannot be averaged; out-of-fold calibration needs members "
                                 "that share one split", m.run_id)
        order = np.array([row[f] for f in files], dtype=np.int64)
        if not np.array_equal(oof.labels[order], labels):
            raise WorkbenchError(f"the members label the same training images differently ({members[0].run_id} and "
                                 f"{m.run_id})", m.run_id)
        stacked.append(oof.probs[order])
    return files, labels, np.stack(stacked)


def ensemble_out_of_fold(run: Any, folds: int, log: Callable[[str], None] = print,
                         cfg_override: dict | None = None,
                         job: Job | JobStage | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(averaged calibrated probabilities (N, K), labels (N,), summary) of an ensemble's training
    images, each member's scores reused from its ``oof.npz`` where they fit, else computed and stored.
    ``job``: progress (member i fills the i-th share of its bar) and cancel of the trainings.

    Raises:
        WorkbenchError: a member is missing or changed, the members do not share their training
            images, or a member's scores cannot be computed.
    """
    from core.inference.ensemble_warnings import average
    from core.models.ensemble import member_runs

    members = member_runs(run)
    check_same_training(members)
    n = len(members)
    results = [stored_or_computed(m, folds, log, cfg_override,
                                  None if job is None else job.stage(i / n, (i + 1) / n, f"{m.run_id}: "))
               for i, m in enumerate(members)]
    oofs = [oof for oof, _ in results]
    files, labels, member_probs = align(members, oofs)
    probs = average(member_probs)
    summary = {
        "folds": int(folds), "n_images": len(files),
        "oof_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "combination": "the mean of the members' calibrated out-of-fold probabilities (as the ensemble averages)",
        "members": [{"run_id": m.run_id, "oof_accuracy": oof.accuracy, "fold_temperatures": list(oof.fold_temperatures),
                     "reused": reused} for m, (oof, reused) in zip(members, results)],
    }
    return probs, labels, summary

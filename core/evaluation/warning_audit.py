"""How often the evaluated images' wrong answers carry a warning, as Predict & Explain would show them.

Accuracy says how often the model is right; a clinician also needs to know how often it is wrong *without
saying so*. This audit runs the evaluated images through the same prediction path as an upload
(:func:`core.inference.predict.predict_files`: every per-slice warning, ensembles' disagreement and
sentinels included), then, as for a batch of uploads, the site check of the whole set
(:func:`core.evaluation.site_check.check_results`), which puts a warning on every slice of a batch it
tells apart from the training images. Both readings are kept: a slice predicted alone never gets the
batch's warning.

"Warned" means the answer carries at least one warning; notes (a near-copy of a training image) are not
warnings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.inference.notices import MIN_IMAGES, SITE_SHIFT
from core.inference.trust import warning_rates

CHUNK = 128  # images predicted per step
NOT_WARNINGS = frozenset({"near_duplicate"})  # flags said as notes, not as warnings


@dataclass(frozen=True)
class WarningAudit:
    """Warning rates on evaluated images, per slice and with the batch's site check.

    ``per_slice`` / ``with_site_check``: :func:`core.inference.trust.warning_rates` (``wrong_warned``,
    ``correct_warned``, ``n_wrong``, ``silent_wrong`` = share of all answers wrong and unwarned);
    ``with_site_check`` is None when the check did not run (``site_problem`` says why).
    """

    n_images: int
    accuracy: float
    per_slice: dict[str, Any]
    with_site_check: dict[str, Any] | None
    site_check: dict[str, Any] | None  # shift_detected, domain_auc, auc_interval, n_images, advice, reference
    site_problem: str | None
    leakage_free: dict[str, Any] | None  # per-slice rates on the images with no near-copy among the training images
    flags_on_wrong: dict[str, int] = field(default_factory=dict)  # which warnings the wrong answers carried
    unreadable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _warned(result) -> bool:
    return bool(result.warnings)  # notes (a near-copy of a training image) live in ``notes``, not here


def audit_warnings(run, files: Sequence[Path], labels: Sequence[str], overlapping: Sequence[bool] | None = None,
                   progress: Callable[[float, str], None] | None = None) -> WarningAudit:
    """Predict ``files`` (true classes ``labels``) as uploads would be and count the warnings.

    ``overlapping``: per file, whether it is a near-copy of a training image (the leakage-free figures leave
    those out); None: no leakage-free figures. ``progress(fraction, text)`` is called between steps (a job's
    callback may raise JobCancelled there).

    Raises:
        WorkbenchError: the model cannot be loaded, or no file could be analysed.
    """
    from core.data.imageio import MAX_FILE_BYTES
    from core.data.safeio import read_regular_file
    from core.evaluation.site_check import check_results, mark_batch
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files

    note = progress or (lambda *_: None)
    if len(files) != len(labels) or (overlapping is not None and len(overlapping) != len(files)):
        raise WorkbenchError("every evaluated image needs its true class", "warning audit")
    items = []
    for f in files:
        try:
            items.append((str(f), read_regular_file(str(f), str(f), MAX_FILE_BYTES)))
        except WorkbenchError:
            items.append((str(f), b""))  # predict_files rejects an empty file with its own words
    predictor = load_predictor(str(run.path))
    results = []
    for start in range(0, len(items), CHUNK):  # in chunks, so progress shows and a cancel is heard between them
        note(0.05 + 0.75 * start / len(items), f"Predicting images {start + 1:,}-{min(start + CHUNK, len(items)):,} "
                                              f"of {len(items):,} as uploads")
        results += predict_files(predictor, items[start:start + CHUNK])
    ok = np.array([r.error is None for r in results])
    unreadable = [f"{r.file}: {r.error}" for r in results if r.error is not None]
    if not ok.any():
        raise WorkbenchError("none of the evaluated images could be analysed", "warning audit")
    truth = np.array(list(labels))[ok]
    kept = [r for r in results if r.error is None]
    correct = np.array([r.label == t for r, t in zip(kept, truth)])
    alone = np.array([_warned(r) for r in kept])
    flags = Counter(f for r, c in zip(kept, correct) if not c for f in set(r.flags) if f not in NOT_WARNINGS)
    free = None
    if overlapping is not None:
        mask = ~np.asarray(overlapping, bool)[ok]
        free = {**warning_rates(alone[mask], correct[mask]), "n_images": int(mask.sum())} if mask.any() else None
    note(0.8, "Checking the images against the training images")
    site, problem, after = None, None, None
    if len(kept) < MIN_IMAGES:
        problem = f"the site check needs at least {MIN_IMAGES} images (there are {len(kept)})"
    else:
        try:
            check = check_results(run, kept)
        except WorkbenchError as exc:
            problem = str(exc)
        else:
            mark_batch(kept, check)
            after = warning_rates(np.array([_warned(r) for r in kept]), correct)
            site = {"shift_detected": check.shift_detected, "domain_auc": check.domain_auc,
                    "auc_interval": list(check.auc_interval) if check.auc_interval else None,
                    "n_images": check.n_images, "advice": check.advice, "reference": check.reference}
            if check.shift_detected and (~correct).any():
                flags[SITE_SHIFT] = int((~correct).sum())
    note(1.0, "Done")
    return WarningAudit(len(files), float(correct.mean()), warning_rates(alone, correct), after, site, problem, free,
                        dict(flags.most_common()), unreadable)


def audit_evaluation(run, eval_set, result, progress: Callable[[float, str], None] | None = None) -> WarningAudit:
    """:func:`audit_warnings` on the images of an evaluation (``result``: :class:`EvaluationResult` of ``run`` on
    ``eval_set``), with leakage-free figures beside the others; the slice-by-slice headline is kept on the card
    beside that evaluation's accuracy (:func:`core.evaluation.evidence.store_evidence`).

    Raises:
        WorkbenchError: the evaluated images are no longer where they were, or none can be analysed.
    """
    from core.evaluation.eval_sets import open_eval_dataset
    from core.evaluation.evidence import WARNINGS, store_evidence, warnings_summary

    ds = open_eval_dataset(run, eval_set)
    table = result.predictions
    audit = audit_warnings(run, [ds.abspath(f) for f in table["file"]], table["true"].tolist(),
                           table["overlap"].astype(bool).tolist(), progress)
    # Beside the card's accuracy for this set, so the Predict page's model box and the case report say it too.
    store_evidence(run, result.eval_kind, result.dataset_fingerprint, WARNINGS,
                   warnings_summary(audit.per_slice, audit.n_images - len(audit.unreadable)))
    return audit

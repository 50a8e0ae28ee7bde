"""An ensemble's outputs on many images, the warnings and prediction sets fitted on them, and its registration.

Members' calibrated probabilities (each member's own preprocessing, image size, temperature and
test-time augmentation) are averaged. The "models disagree" warning fires when the members'
top classes differ, or when their probabilities for the ensemble's class spread more than a
threshold fitted on the common validation images: the largest spread still counted as ordinary
is chosen so that, with the low-confidence warning, at most :data:`core.inference.trust.FALSE_ALARM`
of correct validation answers carry a warning (the same budget the single-model warnings use).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.inference.calibration import softmax
from core.inference.trust import FALSE_ALARM, fit_thresholds
from core.models.runs import Run, load_model, update_card

DISAGREE_SHARE = 0.5  # share of the false-alarm budget the disagreement warning may spend on its own


def member_probabilities(members: Sequence[Run], paths: Sequence[Path], fingerprint: str | None = None,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(M, N, K) calibrated probabilities of every member on the image files ``paths``.

    Each member decodes the files with its own recipe and size (cached per dataset ``fingerprint``
    when given) and runs with its card's test-time augmentation and temperature.
    """
    from core.data.image_cache import cached_images
    from core.data.preprocess import load_many
    from core.inference.runner import ModelRunner

    out = []
    for j, m in enumerate(members):
        sub = (lambda d, t, j=j: progress(j * t + d, len(members) * t)) if progress else None
        if fingerprint:
            images = cached_images(list(paths), m.image_size, fingerprint, preprocessing=m.preprocessing)
        else:
            images = load_many(list(paths), m.image_size, preprocessing=m.preprocessing)
        logits = ModelRunner(load_model(m), m.card.tta, features=False).logits(images, sub)
        out.append(softmax(logits, m.card.temperature))
    return np.stack(out)


def ensemble_logits(run: Run, paths: Sequence[Path], fingerprint: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, K) log of an ensemble run's averaged member probabilities on image files (members checked)."""
    from core.models.ensemble import member_runs

    return as_logits(average(member_probabilities(member_runs(run), paths, fingerprint, progress)))


def average(member_probs: np.ndarray) -> np.ndarray:
    """(N, K) ensemble probabilities: the plain mean of the members' calibrated probabilities."""
    return np.asarray(member_probs, np.float64).mean(axis=0)


def as_logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: softmax(as_logits(p), 1) == p, so the ensemble's temperature is 1."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))


def disagreement(member_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top classes differ, spread) per image: whether some member's top class is not the ensemble's,
    and the largest minus smallest member probability of the ensemble's top class."""
    p = np.asarray(member_probs, np.float64)
    if p.shape[1] == 0:
        return np.zeros(0, bool), np.zeros(0)
    top = average(p).argmax(axis=1)
    differ = (p.argmax(axis=2) != top[None, :]).any(axis=0)
    on_top = p[:, np.arange(p.shape[1]), top]
    return differ, on_top.max(axis=0) - on_top.min(axis=0)


def fit_disagreement(differ: np.ndarray, spread: np.ndarray, correct: np.ndarray,
                     budget: float = FALSE_ALARM * DISAGREE_SHARE) -> float:
    """The spread threshold: the smallest one that, with differing top classes, warns at most
    ``budget`` of the correct answers (1.0, i.e. spread alone never warns, when differing tops
    already spend it)."""
    ok = np.asarray(correct, bool)
    if not ok.any():
        return 1.0
    d, s = np.asarray(differ, bool)[ok], np.asarray(spread, np.float64)[ok]
    allowed = int(np.floor(budget * len(s))) - int(d.sum())
    if allowed <= 0:
        return 1.0
    candidates = np.sort(s[~d])[::-1]  # flagging strictly above a value: the allowed-th largest
    return float(candidates[allowed]) if allowed < len(candidates) else 0.0


def disagree_flags(member_probs: np.ndarray, threshold: float) -> np.ndarray:
    """True where the ensemble's "the models disagree" warning fires."""
    differ, spread = disagreement(member_probs)
    return differ | (spread > threshold)


def fit_ensemble(run: Run, members: Sequence[Run]) -> Run:
    """Fit and store an ensemble's warnings, validation figures and prediction sets.

    Uses the validation images every member shares (none of them trained on those). Writes
    ``results`` (val accuracy, trust thresholds, the disagreement threshold) and ``conformal.npz``.

    Raises:
        WorkbenchError: the members share no validation images on this machine.
    """
    from sklearn.metrics import accuracy_score, f1_score

    from core.inference.calibration import expected_calibration_error
    from core.inference.conformal_fit import write_conformal

    paths, labels = run.validation_set()
    member_probs = member_probabilities(members, paths)
    probs = average(member_probs)
    pred = probs.argmax(axis=1)
    correct = pred == labels
    differ, spread = disagreement(member_probs)
    threshold = fit_disagreement(differ, spread, correct)
    disagree = differ | (spread > threshold)
    trust = fit_thresholds(probs.max(axis=1), None, disagree, correct)
    warned = disagree | (probs.max(axis=1) < trust.min_confidence)
    results: dict[str, Any] = run.card.results.to_json()
    results.update(
        val_accuracy=float(accuracy_score(labels, pred)), val_ece=float(expected_calibration_error(probs, labels)),
        val_macro_f1=float(f1_score(labels, pred, average="macro", labels=list(range(len(run.class_names))),
                                    zero_division=0)),
        n_val=int(len(labels)), validated_on="val",
        low_confidence_threshold=float(trust.min_confidence),
        trust={"min_confidence": float(trust.min_confidence), "max_distance": None, "flag_unstable": False},
        disagreement={
            "spread_threshold": threshold,
            "rule": "warn when a member's top class differs from the ensemble's, or when the members' "
                    "probabilities for the ensemble's class differ by more than the spread threshold",
            "fitted_on": f"{len(labels)} validation images common to the members",
            "correct_warned": float(warned[correct].mean()) if correct.any() else None,
            "wrong_warned": float(warned[~correct].mean()) if (~correct).any() else None,
            "members_accuracy": [float((p.argmax(axis=1) == labels).mean()) for p in member_probs],
        })
    results["conformal"] = write_conformal(run.path, probs, labels, run.class_names, 1.0, "none")
    return update_card(run, results=results)


def register_ensemble(names: Sequence[str], title: str | None = None, root: Path | None = None,
                      fit: bool = True) -> Run:
    """Register an ensemble of the named runs in the registry and return it.

    The folder is assembled under a hidden name, its warnings and prediction sets fitted on
    the members' common validation images (when ``fit``), then renamed into place in one step.

    Raises:
        WorkbenchError: see :func:`open_members`; or the validation images are missing.
    """
    from core.models.ensemble import ensemble_card, open_members
    from core.models.runs import CARD_FILE, resolve_run, staging_dir, write_card
    from core.paths import models_dir

    root = (root or models_dir()).resolve()
    runs = open_members(names, root)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-ensemble{len(runs)}-{secrets.token_hex(2)}"
    staging = staging_dir(run_id, root)
    card = ensemble_card(runs, run_id, title)
    write_card(staging / CARD_FILE, card)
    run = Run(run_id, staging, card)
    try:
        if fit:
            fit_ensemble(run, runs)
        os.replace(staging, root / run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-made stays behind
        raise
    return resolve_run(run_id, root=root)

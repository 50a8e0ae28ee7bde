"""An ensemble's robustness evaluation: its members under the same stress and style shifts, averaged.

Each shift acts once on the whole frames (at RAW_SCALE × the largest member's side); every member
then prepares the shifted copy with its own recipe, size, test-time augmentation and temperature,
as Predict does. The warnings counted are the ones Predict & Explain shows for an ensemble, by the
same rule (:func:`core.inference.ensemble_warnings.ensemble_flags`): its own low-confidence and
"the models disagree" warnings, and unfamiliar when a majority of members find the slice so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.data.shifts import SHIFTS
from core.inference.ensemble_fit import as_logits, average
from core.inference.ensemble_warnings import card_member_rule, ensemble_flags
from core.inference.runner import ModelRunner
from core.inference.side_files import feature_width, load_ood
from core.inference.trust import card_thresholds, flags
from core.inference.trust_fit import shifted_scores
from core.jobs import Job
from core.models.runs import OOD_FILE, Run, load_model


def ensemble_shift_scores(run: Run, members: Sequence[Run], raw: np.ndarray, labels: np.ndarray,
                          job: Job | None = None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(per shift: the ensemble's calibrated probabilities ``probs``, their logs ``logits`` and whether
    Predict would warn ``warned``; why a member's unfamiliar-image check was left out, or None).

    ``raw`` holds whole frames at RAW_SCALE × the largest member's image size.
    """
    keys = list(SHIFTS)
    member_probs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    unfamiliar: dict[str, list[np.ndarray]] = {k: [] for k in keys}  # each member's own checks
    unstable: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    problems: list[str] = []
    for j, member in enumerate(members):
        model = load_model(member)
        runner = ModelRunner(model, member.card.tta)
        ood, problem = load_ood(member.path / OOD_FILE, len(member.class_names), feature_width(model))
        if problem:  # that member's check is left out, as Predict leaves it out
            problems.append(f"{member.run_id}: {problem}")
        stage = job.stage(j / len(members), (j + 1) / len(members)) if job is not None else None
        scores = shifted_scores(runner, ood, raw, labels, member.image_size, member.preprocessing,
                                member.card.temperature, keys, job=stage)
        thresholds = card_thresholds(member.card)
        for key, s in scores.items():
            member_probs[key].append(s["probs"])
            f = flags(s["probs"], s["distance"], s["views"], thresholds)
            unfamiliar[key].append(f.unfamiliar)
            unstable[key].append(f.unstable)
    low = float(card_thresholds(run.card).min_confidence or 0.0)
    spread = float(run.card.results.disagreement.get("spread_threshold", 1.0))
    on_differ = bool(run.card.results.disagreement.get("warn_on_differ", True))  # older cards: on
    rule = card_member_rule(run.card.results.disagreement)
    out = {}
    for key in keys:
        stacked = np.stack(member_probs[key])
        probs = average(stacked)
        warned = ensemble_flags(stacked, np.stack(unfamiliar[key]), low, spread, on_differ,
                                np.stack(unstable[key]), rule).any
        out[key] = {"probs": probs, "logits": as_logits(probs), "warned": warned}
    return out, ("; ".join(problems) or None)


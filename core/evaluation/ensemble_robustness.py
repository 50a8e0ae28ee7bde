"""An ensemble's robustness evaluation: its members under the same stress and style shifts, averaged.

Each shift acts once on the whole frames (at RAW_SCALE × the largest member's side); every member
then prepares the shifted copy with its own recipe, size, test-time augmentation and temperature,
as Predict does. The warnings counted are the ones Predict & Explain shows for an ensemble, by the
same rule (:func:`core.inference.ensemble_warnings.ensemble_flags`): its own low-confidence and
"the models disagree" warnings, unfamiliar when enough members find the slice so (the card's rule),
and a sentinel's differing answer where the card's rule shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.data.shifts import SHIFTS
from core.inference.ensemble_fit import as_logits, average, member_shift_outputs
from core.inference.ensemble_warnings import card_member_rule, ensemble_flags
from core.inference.trust import card_thresholds
from core.jobs import Job
from core.models.runs import Run


def ensemble_shift_scores(run: Run, members: Sequence[Run], raw: np.ndarray, labels: np.ndarray,
                          job: Job | None = None, sentinels: Sequence[Run] = (),
                          ) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(per shift: the ensemble's calibrated probabilities ``probs``, their logs ``logits`` and whether
    Predict would warn ``warned``; why a member's unfamiliar-image check was left out, or None).

    ``raw`` holds whole frames at RAW_SCALE × the largest member's (or sentinel's) image size; the
    ``sentinels`` run on the same shifted copies, for their warning only.
    """
    keys = list(SHIFTS)
    share = len(members) / (len(members) + len(sentinels))
    outputs, problem = member_shift_outputs(members, raw, labels, keys,
                                            job.stage(0.0, share) if job is not None and sentinels else job)
    watch = member_shift_outputs(sentinels, raw, labels, keys, job.stage(share, 1.0) if job is not None else None)[0] \
        if sentinels else {}
    low = float(card_thresholds(run.card).min_confidence or 0.0)
    spread = float(run.card.results.disagreement.get("spread_threshold", 1.0))
    on_differ = bool(run.card.results.disagreement.get("warn_on_differ", True))  # older cards: on
    rule = card_member_rule(run.card.results.disagreement)
    out = {}
    for key in keys:
        o = outputs[key]
        probs = average(o.probs)
        warned = ensemble_flags(o.probs, o.unfamiliar, low, spread, on_differ, o.unstable, rule,
                                watch[key].probs if key in watch else None).any
        out[key] = {"probs": probs, "logits": as_logits(probs), "warned": warned}
    return out, problem


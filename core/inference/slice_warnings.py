"""The plain-words warnings one scored slice carries: close call, unfamiliar look, unstable when
mirrored, probably not a brain MRI, not MR, and the near-copy flag, with the figures behind them.

Kept apart from :mod:`core.inference.predict` (which re-exports these names) so the wording and the
checks can be read in one place; :meth:`core.inference.predict.Predictor.warnings_for` passes in its
card values.
"""

from __future__ import annotations

import numpy as np

from core.data.dicom import modality_warning
from core.data.hashing import nearest_distance, perceptual_hash
from core.data.imageio import DecodedImage
from core.data.preprocess import Framing
from core.inference.ood import image_checks
from core.inference.records import Scores
from core.inference.trust import TrustThresholds, unstable_views
from core.inference.trust import flags as trust_flags

NOT_MRI = "Probably not a brain MRI"
LOW_CONFIDENCE_MESSAGE = ("Close call: the model is not confident about this slice. Do not rely on this result; look "
                          "at the probabilities of the other classes too.")
UNFAMILIAR_MESSAGE = "This slice looks unlike the images the model learned from; treat the result with extra caution."
UNSTABLE_MESSAGE = ("The answer changes when the slice is mirrored left to right, so the model is unsure; treat the "
                    "result with extra caution.")
DISTANCE_DETAIL = "How unlike the training images this slice looks (distance of the model's features)"
MIRROR_DETAIL = "Same answer for the mirrored slice"
#: The warnings that are about the model's answer; an ensemble decides these by its own rule.
MODEL_MESSAGES = (LOW_CONFIDENCE_MESSAGE, UNFAMILIAR_MESSAGE, UNSTABLE_MESSAGE)


def format_probability(p: float) -> str:
    """A probability as people should read it: never "100.0 %", never "0.0 %" for a possible class."""
    if p > 0.999:
        return "> 99.9 %"
    if 0 < p < 0.001:
        return "< 0.1 %"
    return f"{100 * p:.1f} %"


def slice_warnings(image: DecodedImage, scores: Scores, i: int, framing: Framing | None,
                   thresholds: TrustThresholds, train_hashes: np.ndarray,
                   near_dup_threshold: int) -> tuple[list[str], list[str], dict[str, str]]:
    """(messages, flags, details) for image ``i`` of a scored batch.

    Messages say what a warning means for the reader, in plain words; the figures behind
    them go to ``details`` (shown on request).
    """
    messages: list[str] = []
    flags: list[str] = []
    details: dict[str, str] = {}
    distance = None if scores.mahalanobis is None else scores.mahalanobis[i:i + 1]
    f = trust_flags(scores.probs[i:i + 1], distance, [v[i:i + 1] for v in scores.view_logits], thresholds)
    conf = float(scores.probs[i].max())
    details["Model probability of the top class"] = f"{format_probability(conf)} (a close call below " \
                                                     f"{format_probability(thresholds.min_confidence)})"
    if f.low_confidence[0]:
        messages.append(LOW_CONFIDENCE_MESSAGE)
        flags.append("low_confidence")
    if distance is not None and thresholds.max_distance is not None:
        details[DISTANCE_DETAIL] = f"{float(distance[0]):.1f} (unfamiliar above {thresholds.max_distance:.1f})"
    if f.unfamiliar[0]:
        messages.append(UNFAMILIAR_MESSAGE)
        flags.append("unfamiliar")
    if len(scores.view_logits) > 1:
        agree = not unstable_views([v[i:i + 1] for v in scores.view_logits])[0]
        details[MIRROR_DETAIL] = "yes" if agree else "no"
    if f.unstable[0]:
        messages.append(UNSTABLE_MESSAGE)
        flags.append("unstable")
    reasons = [f"{NOT_MRI}: {text}" for text in image_checks(image)]
    if framing is not None and not framing.head_found:
        reasons.append(f"{NOT_MRI}: no head outline could be found in it, so the model looked at the "
                       "whole frame.")
        flags.append("no_head")
    if reasons:
        messages.extend(reasons)
        flags.append("ood")
    if (modality := modality_warning(image)) is not None:  # e.g. an ultrasound exported as DICOM
        messages.append(modality)
        flags.append("not_mr")
    if len(train_hashes):
        dist = int(nearest_distance(perceptual_hash(image.pixels)[None], train_hashes)[0])
        details["How different the nearest training image looks (of 256 coarse picture features, how many differ)"] = \
            f"{dist} (a near-copy at {near_dup_threshold} or fewer)"
        if dist <= near_dup_threshold:
            flags.append("near_duplicate")  # said as a note, not a warning: see near_copy_note
    return messages, flags, details

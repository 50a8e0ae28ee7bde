"""One answer per study: every slice scored by the single-slice path, usable slices aggregated.

Slices stream in one at a time (:meth:`core.data.study.Stack.slices`); each is prepared with the
model card's recipe (:meth:`Predictor.prepare_framed`), and only the small model input plus a
display copy (at most :data:`DISPLAY_SIDE` pixels) is kept, so memory grows by ~80 kB per slice
whatever the scanner's matrix. Heat maps are computed only for the slices shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.classes import display_name
from core.data.pixels import DecodedImage
from core.data.preprocess import HEAD_ID, Prepared, find_head
from core.data.study import Stack
from core.errors import WorkbenchError
from core.inference.conformal import DEFAULT_COVERAGE, check_coverage
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD
from core.inference.predict import Predictor, format_probability
from core.inference.records import PredictionResult
from core.inference.study_rules import DEFAULT_RULE, STUDY_RULES, aggregate

DISPLAY_SIDE = 256  # longest side of the copy kept per slice for the strip and the slider
MIN_HEAD_SHARE = 0.25  # a slice whose head section is below this share of the study's largest is an edge slice
MIN_USABLE = 5  # fewer usable slices than this: the study answer rests on too little
STRIP = 4  # slices shown (with heat maps) in the strip
SET_SLICES = 3  # the study's prediction set joins the sets of this many driving slices


@dataclass
class StudyResult:
    """Everything shown or exported for one study."""

    study: dict[str, Any]  # source, series key, kind, n_slices, orientation, order
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)  # study evidence per class (sums to 1)
    rule: str = DEFAULT_RULE
    prediction_set: list[str] | None = None
    coverage: float | None = None
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    used: list[int] = field(default_factory=list)  # slice numbers (1-based) that entered the answer
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"slice": n, "reason": text}
    slices: list[PredictionResult] = field(default_factory=list)  # one per slice, in stack order
    driving: list[int] = field(default_factory=list)  # slice numbers that support the label most, strongest first
    error: str | None = None
    #: slice number -> its prepared input (an ensemble's holds every member's own input, which scores and heat
    #: maps need); small, never exported
    prepared: dict[int, Prepared] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.label is not None

    @property
    def strip(self) -> list[int]:
        """The slice numbers shown with heat maps, in stack order."""
        return sorted(self.driving[:STRIP])

    def slice(self, number: int) -> PredictionResult:
        return self.slices[number - 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (no arrays): the CLI's --json object."""
        return {"study": dict(self.study), "label": self.label, "rule": self.rule,
                "probabilities": dict(self.probabilities), "prediction_set": self.prediction_set,
                "coverage": self.coverage, "warnings": list(self.warnings), "flags": list(self.flags),
                "used_slices": list(self.used), "skipped": [dict(s) for s in self.skipped],
                "driving_slices": list(self.driving[:STRIP]), "error": self.error,
                "slices": [{"slice": i + 1, **r.to_dict()} for i, r in enumerate(self.slices)]}


def _display_copy(image: DecodedImage) -> DecodedImage:
    h, w = image.pixels.shape
    scale = DISPLAY_SIDE / max(h, w)
    pixels = image.pixels if scale >= 1 else cv2.resize(
        image.pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return DecodedImage(np.ascontiguousarray(pixels), image.source_format, image.source_mode, image.colourfulness,
                        dict(image.meta))


def _head_share(image: DecodedImage, prepared: Prepared, recipe: str) -> float:
    """The share of the frame covered by the head.

    The head-crop recipe sets every pixel outside the head to 0 and every one inside to 1..255, so
    the share is read off its output (non-zero share of the crop × the crop's share of the frame)
    instead of finding the head a second time; other recipes run the head finder.
    """
    if recipe == HEAD_ID:
        if not prepared.framing.head_found:
            return 0.0
        f = prepared.framing
        inside = np.count_nonzero(prepared.pixels) / prepared.pixels[..., 0].size
        return float(inside * (f.x1 - f.x0) * (f.y1 - f.y0))
    found = find_head(image.pixels)
    return 0.0 if found is None else float(found[1].mean())


def predict_study(predictor: Predictor, stack: Stack, rule: str = DEFAULT_RULE,
                  coverage: float = DEFAULT_COVERAGE, gradcam: bool = True, method: str = DEFAULT_CAM_METHOD,
                  source: str = "", progress: Callable[[int, int], None] | None = None) -> StudyResult:
    """Score every slice of ``stack`` and aggregate the usable ones into one answer.

    Args:
        predictor: the loaded model and its card values.
        stack: the series or volume (from :func:`core.data.study.open_study` and ``Study.pick``).
        rule: a key of :data:`core.inference.study_rules.STUDY_RULES`.
        coverage: the prediction sets' coverage.
        gradcam: compute heat maps for the strip's slices (only those).
        method: a key of :data:`core.inference.gradcam.CAM_METHODS`.
        source: what was given (file or folder name), recorded in ``study``.
        progress: called with (slices read, total).
    Raises:
        WorkbenchError: a setting is invalid or the stack cannot be read at all.
    """
    STUDY_RULES.check(rule, "rule")
    coverage = check_coverage(coverage, "coverage")
    if gradcam and method not in CAM_METHODS:
        raise WorkbenchError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}", "method")
    result = StudyResult(study={"source": source, "series": stack.key, "kind": stack.kind,
                                "n_slices": stack.n_slices, "orientation": stack.orientation,
                                "order": stack.order, "rows": stack.shape[0], "columns": stack.shape[1]},
                         rule=rule, coverage=coverage, warnings=list(stack.warnings), flags=list(stack.flags))
    shares: list[float] = []
    for ref, image in stack.slices():
        r = PredictionResult(file=ref.source)
        if isinstance(image, WorkbenchError):
            r.error = image.reason
            shares.append(0.0)
        else:
            prepared = predictor.prepare_framed(image)
            shares.append(_head_share(image, prepared, predictor.run.preprocessing))
            r.model_input, r.framing = prepared.pixels, prepared.framing
            result.prepared[len(result.slices) + 1] = prepared
            r.image = _display_copy(image)
            r.meta = {k: v for k, v in image.meta.items() if k in ("window", "frames", "Modality")}
            if ref.position is not None:
                r.meta["position_mm"] = f"{ref.position:.2f}"
        result.slices.append(r)
        if progress:
            progress(len(result.slices), stack.n_slices)
    _select(result, shares)
    if len(result.used) == 0:
        result.error = "no slice shows enough of a head to be classified"
        result.warnings.append("No slice could be used: " + _skip_summary(result.skipped))
        result.flags.append("no_usable_slices")
        return result
    _score(predictor, result)
    _aggregate(predictor, result, coverage)
    if gradcam:
        for number in result.strip:
            explain_slice(predictor, result, number, method)
    return result


def _select(result: StudyResult, shares: list[float]) -> None:
    """Mark slices as used or skipped (with the reason): unreadable, no head, or an edge slice."""
    largest = max(shares, default=0.0)
    for i, (r, share) in enumerate(zip(result.slices, shares)):
        if r.error:
            reason = f"could not be read: {r.error}"
        elif share == 0.0:
            reason = "no head outline found (empty or background slice)"
        elif share < MIN_HEAD_SHARE * largest:
            reason = (f"almost no brain: the head section is {share / largest:.0%} of the study's largest "
                      f"(edge of the volume; below {MIN_HEAD_SHARE:.0%} is skipped)")
        else:
            result.used.append(i + 1)
            continue
        result.skipped.append({"slice": i + 1, "reason": reason})
        if not r.error:
            r.error = f"skipped: {reason}"


def _skip_summary(skipped: list[dict[str, Any]]) -> str:
    counts = Counter(s["reason"].split(":")[0].split(" (")[0] for s in skipped)
    return "; ".join(f"{n} × {why}" for why, n in counts.most_common())


def _score(predictor: Predictor, result: StudyResult) -> None:
    """Per-slice labels, calibrated probabilities, warnings and flags, exactly as for single slices."""
    used = [result.slice(n) for n in result.used]
    scores = predictor.predict_prepared([result.prepared[n] for n in result.used])  # an ensemble: members' own inputs
    for row, r in enumerate(used):
        probs = scores.probs[row]
        k = int(probs.argmax())
        r.label, r.confidence = predictor.class_names[k], float(probs[k])
        r.probabilities = {c: float(p) for c, p in zip(predictor.class_names, probs)}
        r.warnings, r.flags, r.details = predictor.warnings_for(r.image, scores, row, r.framing)
    predictor.add_prediction_sets(used, result.coverage or DEFAULT_COVERAGE)


def _aggregate(predictor: Predictor, result: StudyResult, coverage: float) -> None:
    """The study label, evidence, prediction set and study-level warnings."""
    classes = predictor.class_names
    used = [result.slice(n) for n in result.used]
    probs = np.array([[r.probabilities[c] for c in classes] for r in used])
    agg = aggregate(probs, classes, result.rule)
    result.label = agg.label
    result.probabilities = {c: float(p) for c, p in zip(classes, agg.scores)}
    result.driving = [result.used[i] for i in agg.driving]
    if predictor.conformal is not None:
        members = {agg.label}
        for n in result.driving[:SET_SLICES]:
            members.update(result.slice(n).prediction_set or [])
        result.prediction_set = sorted(members, key=lambda c: -result.probabilities[c])
    n_used, n_all = len(result.used), len(result.slices)
    if result.skipped:
        result.warnings.append(f"{n_used} of {n_all} slices were used; {len(result.skipped)} skipped "
                               f"({_skip_summary(result.skipped)}).")
    if n_used < MIN_USABLE:
        result.warnings.append(f"Only {n_used} slice(s) could be used; the study answer rests on too little.")
        result.flags.append("too_few_slices")
    votes = Counter(r.label for r in used)
    tumour_votes = {c: n for c, n in votes.items() if c != "notumor" and n >= 2}
    if len(tumour_votes) > 1:
        said = ", ".join(f"{n} say {display_name(c)}" for c, n in sorted(tumour_votes.items(), key=lambda kv: -kv[1]))
        result.warnings.append(f"The slices disagree about the tumour type ({said}); look at the slices behind the "
                               "answer before relying on it.")
        result.flags.append("slices_disagree")
    for flag, words in (("unfamiliar", "look unlike the training images"),
                        ("ood", "do not look like a brain MRI"),
                        ("low_confidence", "are close calls"),
                        ("sentinel", "are read differently by the ensemble's check model")):
        n = sum(flag in r.flags for r in used)
        if n > n_used / 2:
            result.warnings.append(f"{n} of the {n_used} used slices {words}; treat the study answer with caution.")
            result.flags.append(f"many_{flag}")
    top = result.probabilities[agg.label]
    result.study["rule_title"] = STUDY_RULES.title(result.rule)
    result.study["evidence"] = format_probability(top)


def explain_slice(predictor: Predictor, result: StudyResult, number: int,
                  method: str = DEFAULT_CAM_METHOD) -> PredictionResult:
    """Add a heat map (for the study's label) to slice ``number`` if it has none; return the slice."""
    r = result.slice(number)
    if r.heatmap is None and r.model_input is not None and r.probabilities and result.label:
        k = predictor.class_index(result.label)
        try:
            prepared = result.prepared.get(number)
            r.heatmap = predictor.explain(r.model_input, k, method) if prepared is None else \
                predictor.explain_for(r.image, prepared, k, method)  # an ensemble: its members' maps averaged
            r.heatmap_class, r.method = result.label, method
        except WorkbenchError as exc:
            r.warnings.append(f"No heatmap: {exc.reason}")
    return r

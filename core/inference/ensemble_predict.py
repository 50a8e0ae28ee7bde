"""Prediction with an ensemble run: the members' calibrated probabilities averaged, their heat
maps placed back into the original frame and averaged, and the ensemble's warnings (one rule,
:mod:`core.inference.ensemble_warnings`, the one its thresholds were fitted with).

:class:`EnsemblePredictor` answers the same calls as :class:`core.inference.predict.Predictor`
(``prepare_framed``, ``predict_prepared``, ``explain_prepared``, ``warnings_for``; class look-up
and prediction sets come from their shared :class:`core.inference.predictor_base.PredictorBase`), so :func:`core.inference.predict.predict_files`, the CLI and the
Predict page use either without knowing which. Each member is a full Predictor, loaded once
(sha256-checked against the checksum the ensemble's card recorded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.classes import display_name
from core.data.imageio import DecodedImage
from core.data.preprocess import Framing, Prepared, prepare_framed
from core.data.shared_work import shared_image_work
from core.errors import WorkbenchError
from core.inference.conformal import CONFORMAL_FILE, try_run_conformal
from core.inference.ensemble_fit import as_logits, average
from core.inference.ensemble_warnings import card_member_rule, disagreement, ensemble_flags
from core.inference.gradcam import DEFAULT_CAM_METHOD, normalise
from core.inference.predict import (
    LOW_CONFIDENCE_MESSAGE,
    Predictor,
    Scores,
    format_probability,
    no_model_error,
)
from core.inference.predictor_base import PredictorBase
from core.inference.side_files import PREDICTION_SETS, disabled_warning
from core.inference.slice_warnings import DISTANCE_DETAIL, MIRROR_DETAIL, MODEL_MESSAGES, UNSTABLE_MESSAGE
from core.models.ensemble import member_runs, sentinel_runs
from core.models.runs import Run, best_run, list_runs, resolve_run

DISAGREE = "disagree"
DISAGREE_MESSAGE = ("The models in this ensemble disagree about this slice, so the answer is uncertain; look at the "
                    "probabilities of the other classes and read the slice yourself.")
UNFAMILIAR_MESSAGE = ("This slice looks unlike the images most of the models in this ensemble learned from; treat "
                      "the result with extra caution.")
SENTINEL = "sentinel"
SENTINEL_MESSAGE = ("A check model that reacts to how an image looks (its brightness, contrast and framing) reads "
                    "this slice differently from the ensemble. The slice may not look like the training images; "
                    "treat the result with extra caution and read the slice yourself.")
#: Warnings decided by the ensemble's own rule (core.inference.ensemble_warnings); the members'
#: own versions of these are dropped.
ENSEMBLE_FLAGS = ("low_confidence", "unfamiliar", "unstable")
#: Member figures shown side by side, one per model, instead of only the first member's.
PER_MEMBER_DETAILS = (DISTANCE_DETAIL, MIRROR_DETAIL)


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ensemble-member")


def _members_at_once(work: Callable[[int], Any], n: int) -> list[Any]:
    """``work(j)`` for every member j, in threads, results in member order. TensorFlow releases the
    GIL while a member's graph runs, so one member's Python overhead overlaps another's maths:
    8 % off one slice's answer with heat map on 2 cores (bench section 10)."""
    return list(_POOL.map(work, range(n)))


@dataclass(frozen=True)
class EnsemblePrepared(Prepared):
    """The ensemble's display input (the whole frame) and every member's own prepared input."""

    parts: tuple[Prepared, ...] = ()
    sentinel_parts: tuple[Prepared, ...] = ()  # each sentinel's own input (warnings only)


@dataclass
class EnsembleScores(Scores):
    """Ensemble scores plus each member's, for the warnings."""

    members: list[Scores] = field(default_factory=list)
    member_probs: np.ndarray | None = None  # (M, N, K)
    member_framings: list[list[Framing]] = field(default_factory=list)  # [member][image]: where each input came from
    sentinel_probs: np.ndarray | None = None  # (S, N, K): the sentinels', which never enter the average
    sentinels: list[Scores] = field(default_factory=list)


class EnsemblePredictor(PredictorBase):
    """The loaded members of an ensemble run and the card values that turn their outputs into answers.

    Args:
        run: the ensemble run; members and sentinels are resolved in its registry folder and checked.
        members: already built member predictors (tests, caches), in the card's order.
        sentinels: already built sentinel predictors, in the card's order (None: from the card).
    Raises:
        WorkbenchError: a member or sentinel is missing, damaged or was changed after registration.
    """

    def __init__(self, run: Run, members: Sequence[Predictor] | None = None,
                 sentinels: Sequence[Predictor] | None = None) -> None:
        self.run = run
        self.members = list(members) if members is not None else [Predictor(m) for m in member_runs(run)]
        self.sentinels = list(sentinels) if sentinels is not None else [Predictor(m) for m in sentinel_runs(run)]
        self.class_names: list[str] = run.class_names
        self.image_size: int = run.image_size
        self.temperature, self.tta = 1.0, "none"
        self.low_confidence = run.card.trust.get("min_confidence", run.card.low_confidence_threshold) or 0.0
        self.spread_threshold = float(run.card.results.disagreement.get("spread_threshold", 1.0))
        self.warn_on_differ = bool(run.card.results.disagreement.get("warn_on_differ", True))  # older cards: on
        self.member_rule = card_member_rule(run.card.results.disagreement)
        # The ensemble's own sets, fitted on its averaged validation probabilities (not a member's).
        self.conformal, self.conformal_problem = try_run_conformal(run)
        #: Features a damaged side file switched off: the members' own, and the ensemble's prediction sets.
        self.disabled: list[str] = [text for m in self.members for text in m.disabled]
        if self.conformal is None and (run.path / CONFORMAL_FILE).is_file():
            self.disabled.append(disabled_warning(PREDICTION_SETS, str(self.conformal_problem).rstrip(".")))

    # --- preprocessing and scores -------------------------------------------------------------

    def prepare_framed(self, image: DecodedImage) -> EnsemblePrepared:
        """The whole frame at the card's size (display, heat map) plus each member's and sentinel's own input."""
        done: dict[tuple[str, int], Prepared] = {}  # models with the same recipe and size share one input
        with shared_image_work():  # the head is found once for every member that crops or standardises
            for m in (*self.members, *self.sentinels):
                key = (m.run.preprocessing, m.image_size)
                if key not in done:
                    done[key] = m.prepare_framed(image)
            shown = done.get((self.run.preprocessing, self.image_size)) or \
                prepare_framed(image, self.image_size, self.run.preprocessing)
        parts = tuple(done[(m.run.preprocessing, m.image_size)] for m in self.members)
        watch = tuple(done[(m.run.preprocessing, m.image_size)] for m in self.sentinels)
        return EnsemblePrepared(shown.pixels, shown.framing, parts, watch)

    def predict_prepared(self, prepared: Sequence[Prepared]) -> EnsembleScores:
        """Scores for prepared images (from :meth:`prepare_framed`)."""
        if not all(isinstance(p, EnsemblePrepared) and len(p.parts) == len(self.members)
                   and len(p.sentinel_parts) == len(self.sentinels) for p in prepared):
            raise WorkbenchError("an ensemble needs each member's own input; prepare images with the ensemble",
                                 "predict")
        m = len(self.members)
        models = [*self.members, *self.sentinels]
        every = list(_members_at_once(  # members and sentinels at once: the sentinels' answer is for the warnings
            lambda j: models[j].predict(np.stack([(p.parts[j] if j < m else p.sentinel_parts[j - m]).pixels
                                                  for p in prepared])), len(models)))
        member_scores = every[:m]
        member_probs = np.stack([s.probs for s in member_scores])
        probs = average(member_probs)
        logits = as_logits(probs)
        return EnsembleScores(logits, probs, None, None, -np.log(np.exp(logits).sum(axis=1)), [],
                              members=member_scores, member_probs=member_probs,
                              member_framings=[[p.parts[j].framing for p in prepared] for j in range(len(self.members))],
                              sentinel_probs=np.stack([s.probs for s in every[m:]]) if self.sentinels else None,
                              sentinels=every[m:])

    def network_features(self, scores: EnsembleScores) -> dict[str, np.ndarray | None]:
        """Every member's and sentinel's features, each from its own input (the site check reads them all)."""
        models = [*self.members, *self.sentinels]
        return {p.run.run_id: s.features for p, s in zip(models, [*scores.members, *scores.sentinels])}

    def predict(self, images: Any) -> Scores:
        raise WorkbenchError("an ensemble's members each prepare their own input; use predict_prepared",
                             "predict")

    def explain_prepared(self, prepared: EnsemblePrepared, class_index: int | None = None,
                         method: str = DEFAULT_CAM_METHOD, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The members' heat maps for one class, each placed back through its own crop, averaged.

        Every member's map is computed on its own prepared input, put into the original frame
        (``shape``, default: the display input's) by its framing, and the mean is brought to the
        display input's frame and scaled to [0, 1].
        """
        if class_index is None:
            class_index = int(self.predict_prepared([prepared]).probs[0].argmax())
        h, w = shape or prepared.pixels.shape[:2]
        maps = _members_at_once(lambda j: self.members[j].explain(prepared.parts[j].pixels, class_index, method),
                                len(self.members))
        placed = [part.framing.place(heat, (h, w)) for heat, part in zip(maps, prepared.parts)]
        mean = np.mean(placed, axis=0).astype(np.float32)
        win = prepared.framing.crop(mean) if shape else mean  # shape given: the frame the display came from
        s = prepared.pixels.shape[0]
        return normalise(cv2.resize(win, (s, s), interpolation=cv2.INTER_LINEAR)).astype(np.float32)

    def explain_for(self, image: DecodedImage, prepared: EnsemblePrepared, class_index: int | None = None,
                    method: str = DEFAULT_CAM_METHOD) -> np.ndarray:
        """:meth:`explain_prepared` with the maps averaged at the upload's own resolution."""
        return self.explain_prepared(prepared, class_index, method, shape=image.pixels.shape[:2])

    # --- warnings -----------------------------------------------------------------------------

    def warnings_for(self, image: DecodedImage, scores: EnsembleScores, i: int,
                     framing: Framing | None = None) -> tuple[list[str], list[str], dict[str, str]]:
        """(messages, flags, details) by the ensemble's fitted rule (:mod:`core.inference.ensemble_warnings`):
        its low-confidence and disagreement warnings, the members' unfamiliar and mirrored-copy
        warnings when as many members raise them as the card's rule needs; and every member's
        warnings about the image itself (not an MRI, not MR, near-copy, ...)."""
        messages: list[str] = []
        flags: list[str] = []
        details: dict[str, str] = {}
        member_msgs, member_flags, member_details = [], [], {}
        per_member: dict[str, list[str]] = {k: [] for k in PER_MEMBER_DETAILS}
        with shared_image_work():  # the image's hash is the same for every member: computed once
            for j, (m, s) in enumerate(zip(self.members, scores.members)):
                msgs, fl, det = m.warnings_for(image, s, i,
                                               scores.member_framings[j][i] if scores.member_framings else None)
                member_msgs.append(msgs)
                member_flags.append(fl)
                for k in PER_MEMBER_DETAILS:
                    if k in det:
                        per_member[k].append(f"model {j + 1}: {det.pop(k)}")
                member_details.update({k: v for k, v in det.items() if k not in member_details})
        member_probs = scores.member_probs[:, i:i + 1]
        unfamiliar = np.array([["unfamiliar" in fl] for fl in member_flags], bool)
        unstable = np.array([["unstable" in fl] for fl in member_flags], bool)
        watch = scores.sentinel_probs[:, i:i + 1] if scores.sentinel_probs is not None else None
        f = ensemble_flags(member_probs, unfamiliar, self.low_confidence, self.spread_threshold, self.warn_on_differ,
                           unstable, self.member_rule, watch)
        conf = float(scores.probs[i].max())
        details["Model probability of the top class"] = (f"{format_probability(conf)} (warning below "
                                                         f"{format_probability(self.low_confidence)})")
        if f.low_confidence[0]:
            messages.append(LOW_CONFIDENCE_MESSAGE)
            flags.append("low_confidence")
        _, spread = disagreement(member_probs)
        details["Each model's answer"] = ", ".join(display_name(self.class_names[int(p[0].argmax())])
                                                   for p in member_probs)
        details["Spread of the models' probabilities for the answer"] = \
            f"{100 * float(spread[0]):.1f} points (warning above {100 * self.spread_threshold:.1f})"
        if f.disagree[0]:
            messages.append(DISAGREE_MESSAGE)
            flags.append(DISAGREE)
        need_u = self.member_rule.need_unfamiliar(len(self.members))
        if per_member[DISTANCE_DETAIL]:  # some member could check
            details["Models that find this slice unfamiliar"] = \
                f"{int(unfamiliar.sum())} of {len(self.members)} ({_needed(need_u)})"
        if f.unfamiliar[0]:
            messages.append(UNFAMILIAR_MESSAGE)
            flags.append("unfamiliar")
        if f.unstable[0]:
            messages.append(UNSTABLE_MESSAGE)
            flags.append("unstable")
        if watch is not None:
            shown = "a warning when it differs from the answer" if self.member_rule.sentinel else \
                "not shown for this ensemble (its fit found it warned too many correct answers)"
            details["Check model's answer (it does not vote)"] = \
                f"{', '.join(display_name(self.class_names[int(p[0].argmax())]) for p in watch)} ({shown})"
            if f.sentinel[0]:
                messages.append(SENTINEL_MESSAGE)
                flags.append(SENTINEL)
        details.update({k: "; ".join(values) for k, values in per_member.items() if values})
        details.update({k: v for k, v in member_details.items() if k not in details})
        for msgs, fl in zip(member_msgs, member_flags):  # the rest is about the image, not the model
            messages.extend(x for x in msgs if x not in MODEL_MESSAGES and x not in messages)
            flags.extend(x for x in fl if x not in ENSEMBLE_FLAGS and x not in flags)
        return messages, flags, details


def predictor_for(run: Run) -> Predictor | EnsemblePredictor:
    """The predictor for a registered run: a :class:`Predictor`, or an :class:`EnsemblePredictor`
    for an ensemble run (they answer the same calls)."""
    return EnsemblePredictor(run) if run.card.is_ensemble else Predictor(run)


def load_predictor(run_id_or_path: str | None = None) -> Predictor | EnsemblePredictor:
    """:meth:`Predictor.load` for any run, ensembles included (None = the best registered run)."""
    if run_id_or_path:
        return predictor_for(resolve_run(run_id_or_path))
    run = best_run(list_runs())
    if run is None:
        raise no_model_error()
    return predictor_for(run)


def _needed(need: int) -> str:
    """The member rule in words, for the figures behind a warning."""
    return "never shown for this ensemble" if need <= 0 else f"a warning when {need} or more do"

"""An ensemble's outputs on many images, the warnings and prediction sets fitted on them, and its registration.

Members' calibrated probabilities (each member's own preprocessing, image size, temperature and
test-time augmentation) are averaged. The warnings follow one rule (:mod:`core.inference.ensemble_warnings`:
low confidence, "the models disagree", unfamiliar to a majority of members), fitted on the common
validation images with every part of it in view, so that at most :data:`core.inference.trust.FALSE_ALARM`
of correct validation answers carry a warning (the same budget the single-model warnings use), and as
many mistakes as possible are warned, counted on those images and on their shifted copies (the stress
and style shifts of the robustness test).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.inference.calibration import softmax
from core.inference.ensemble_warnings import (
    Evidence,
    average,
    ensemble_flags,
    fit_ensemble_warnings,
    sentinel_differs,
)
from core.inference.trust import warning_rates
from core.models.runs import Run, load_model, update_card


@dataclass(frozen=True)
class MemberOutputs:
    """What an ensemble's members say about N images: (M, N, K) calibrated probabilities and (M, N)
    flags of each member's own unfamiliar-slice and mirrored-copy warnings."""

    probs: np.ndarray
    unfamiliar: np.ndarray
    unstable: np.ndarray


def member_probabilities(members: Sequence[Run], paths: Sequence[Path], fingerprint: str | None = None,
                         progress: Callable[[int, int], None] | None = None, with_unfamiliar: bool = False,
                         models: Sequence[Any] | None = None,
                         ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, N, K) calibrated probabilities of every member on the image files ``paths``.

    Each member decodes the files with its own recipe and size (cached per dataset ``fingerprint``
    when given) and runs with its card's test-time augmentation and temperature. With
    ``with_unfamiliar``, also the (M, N) flags of each member's own unfamiliar-slice warning
    (its pooled features against its ``ood.npz`` and card threshold, from the same forward pass;
    all False for a member whose file is missing or does not fit, as Predict leaves it out) and
    the (M, N) flags of its mirrored-copy warning (where its card turns that warning on).
    ``models``: the members' networks already loaded (:func:`loaded_members`), so a caller that
    runs them more than once loads each file once; None loads each here.
    """
    from core.data.image_cache import cached_images
    from core.data.preprocess import load_many
    from core.inference.runner import ModelRunner
    from core.inference.side_files import feature_width, load_ood
    from core.inference.trust import card_thresholds, flags
    from core.models.runs import OOD_FILE

    out, unfamiliar, unstable = [], [], []
    for j, m in enumerate(members):
        sub = (lambda d, t, j=j: progress(j * t + d, len(members) * t)) if progress else None
        if fingerprint:
            images = cached_images(list(paths), m.image_size, fingerprint, preprocessing=m.preprocessing)
        else:
            images = load_many(list(paths), m.image_size, preprocessing=m.preprocessing)
        model = _model(members, models, j)
        res = ModelRunner(model, m.card.tta, features=with_unfamiliar).run(images, sub)
        probs = softmax(res.logits, m.card.temperature)
        out.append(probs)
        if with_unfamiliar:
            ood, _ = load_ood(m.path / OOD_FILE, len(m.class_names), feature_width(model))
            distance = ood.mahalanobis(res.features) if (ood is not None and res.features is not None
                                                         and len(res.features)) else None
            f = flags(probs, distance, res.view_logits, card_thresholds(m.card))
            unfamiliar.append(f.unfamiliar)
            unstable.append(f.unstable)
    if with_unfamiliar:
        return np.stack(out), np.stack(unfamiliar).astype(bool), np.stack(unstable).astype(bool)
    return np.stack(out)


def member_shift_outputs(members: Sequence[Run], raw: np.ndarray, labels: np.ndarray, keys: Sequence[str],
                         job: Any = None, models: Sequence[Any] | None = None,
                         ) -> tuple[dict[str, MemberOutputs], str | None]:
    """Per shift key: every member's (M, N, K) calibrated probabilities and its (M, N) unfamiliar and
    mirrored-copy flags (its own warnings, with its card's thresholds) on shifted copies of ``raw``
    (whole frames at RAW_SCALE × the largest member's side), each member preparing the copy with its
    own recipe, size, test-time augmentation and temperature, as Predict does. Also why a member's
    unfamiliar-image check was left out (None: every member could check). ``models`` as in
    :func:`member_probabilities`.
    """
    from core.inference.runner import ModelRunner
    from core.inference.side_files import feature_width, load_ood
    from core.inference.trust import card_thresholds, flags
    from core.inference.trust_fit import shifted_scores
    from core.models.runs import OOD_FILE

    parts: dict[str, list[list[np.ndarray]]] = {k: [[], [], []] for k in keys}
    problems: list[str] = []
    for j, member in enumerate(members):
        model = _model(members, models, j)
        ood, problem = load_ood(member.path / OOD_FILE, len(member.class_names), feature_width(model))
        if problem:  # that member's check is left out, as Predict leaves it out
            problems.append(f"{member.run_id}: {problem}")
        stage = job.stage(j / len(members), (j + 1) / len(members)) if job is not None else None
        scores = shifted_scores(ModelRunner(model, member.card.tta), ood, raw, labels, member.image_size,
                                member.preprocessing, member.card.temperature, list(keys), job=stage)
        thresholds = card_thresholds(member.card)
        for key, sc in scores.items():
            f = flags(sc["probs"], sc["distance"], sc["views"], thresholds)
            for part, value in zip(parts[key], (sc["probs"], f.unfamiliar, f.unstable)):
                part.append(value)
    out = {k: MemberOutputs(np.stack(v[0]), np.stack(v[1]).astype(bool), np.stack(v[2]).astype(bool))
           for k, v in parts.items()}
    return out, ("; ".join(problems) or None)


def loaded_members(members: Sequence[Run]) -> list[Any]:
    """Every member's network, loaded once (checksum and card checked by :func:`load_model`); the caller
    keeps the list only as long as it needs it, so nothing stays loaded after its call."""
    return [load_model(m) for m in members]


def _model(members: Sequence[Run], models: Sequence[Any] | None, j: int) -> Any:
    """Member ``j``'s network: the caller's loaded one, else loaded now."""
    if models is None:
        return load_model(members[j])
    if len(models) != len(members):  # a programming error, said plainly rather than a misaligned average
        raise ValueError(f"{len(models)} loaded models for {len(members)} members")
    return models[j]


def ensemble_logits(run: Run, paths: Sequence[Path], fingerprint: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, K) log of an ensemble run's averaged member probabilities on image files (members checked)."""
    from core.models.ensemble import member_runs

    return as_logits(average(member_probabilities(member_runs(run), paths, fingerprint, progress)))


def ensemble_validation_logits(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) logits and (N,) labels of an ensemble's validation images, as :func:`fit_ensemble` computes
    its prediction sets' inputs (softmax at temperature 1, the ensemble card's, gives the averaged
    probabilities back): for refitting the sets (:mod:`core.inference.conformal_fit`).

    Raises:
        WorkbenchError: a member is missing or changed, or the validation images are not on this machine.
    """
    paths, labels = run.validation_set()
    return ensemble_logits(run, paths), labels


def as_logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: softmax(as_logits(p), 1) == p, so the ensemble's temperature is 1."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))


def shifted_evidence(members: Sequence[Run], paths: Sequence[Path], labels: np.ndarray,
                     models: Sequence[Any] | None = None, sentinels: Sequence[Run] = (),
                     sentinel_models: Sequence[Any] | None = None) -> dict[str, Evidence]:
    """The members' (and sentinels') outputs on the images ``paths`` under every simulated shift but
    "none" (the robustness test's stress and style shifts), for fitting the warning rule. ``models``
    and ``sentinel_models`` as in :func:`member_probabilities`."""
    from core.data.preprocess import WHOLE_FRAME_ID, load_many
    from core.data.shifts import RAW_SCALE, SHIFTS

    raw = load_many(list(paths), RAW_SCALE * raw_side(members, sentinels), preprocessing=WHOLE_FRAME_ID)
    keys = [k for k in SHIFTS if k != "none"]
    outputs, _ = member_shift_outputs(members, raw, np.asarray(labels), keys, models=models)
    watch = member_shift_outputs(sentinels, raw, np.asarray(labels), keys, models=sentinel_models)[0] \
        if sentinels else {}
    return {k: Evidence(o.probs, o.unfamiliar, o.unstable, np.asarray(labels),
                        watch[k].probs if k in watch else None) for k, o in outputs.items()}


def raw_side(members: Sequence[Run], sentinels: Sequence[Run] = ()) -> int:
    """The largest image side among an ensemble's members and sentinels: shifts act on whole frames
    at a multiple of it, so that every model prepares its own input from the same shifted copy."""
    return max(m.image_size for m in (*members, *sentinels))


def fit_ensemble(run: Run, members: Sequence[Run], sentinels: Sequence[Run] = ()) -> Run:
    """Fit and store an ensemble's warnings, validation figures and prediction sets.

    Uses the validation images every member and sentinel shares (none of them trained on those).
    Writes ``results`` (val accuracy, trust thresholds, the disagreement threshold, whether the
    sentinels' differing answers warn) and ``conformal.npz``.

    Raises:
        WorkbenchError: the members share no validation images on this machine.
    """
    from sklearn.metrics import accuracy_score, f1_score

    from core.inference.calibration import expected_calibration_error
    from core.inference.conformal_fit import write_conformal

    paths, labels = run.validation_set()
    # the validation pass and the shifted copies run the same networks: each file is read and verified once
    models, watch_models = loaded_members(members), loaded_members(sentinels)
    member_probs, unfamiliar, unstable = member_probabilities(members, paths, with_unfamiliar=True, models=models)
    watch = member_probabilities(sentinels, paths, models=watch_models) if sentinels else None
    probs = average(member_probs)
    pred = probs.argmax(axis=1)
    correct = pred == labels
    shifted = shifted_evidence(members, paths, labels, models=models, sentinels=sentinels,
                               sentinel_models=watch_models)
    del models, watch_models  # not needed for the fit itself
    threshold, on_differ, rule, trust, fitted = fit_ensemble_warnings(member_probs, unfamiliar, correct,
                                                                      member_unstable=unstable,
                                                                      shifted=list(shifted.values()),
                                                                      sentinel_probs=watch)
    rates = warning_rates(fitted.any, correct)
    shifted_rates = {key: warning_rates(ensemble_flags(e.member_probs, e.unfamiliar, trust.min_confidence, threshold,
                                                       on_differ, e.unstable, rule, e.sentinel_probs).any,
                                        average(e.member_probs).argmax(axis=1) == labels)
                     for key, e in shifted.items()}
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
            "warn_on_differ": on_differ,
            "rule": ("warn when a member's top class differs from the ensemble's, or when the members' "
                     "probabilities for the ensemble's class differ by more than the spread threshold") if on_differ
            else ("warn when the members' probabilities for the ensemble's class differ by more than the spread "
                  "threshold (differing top classes alone do not: fitted jointly with the confidence threshold)"),
            "unfamiliar_members": rule.need_unfamiliar(len(members)),  # members needed (0: never shown)
            "unstable_members": rule.unstable,
            "unstable_share": float(fitted.unstable.mean()) if len(labels) else None,
            "fitted_on": f"{len(labels)} validation images common to the members (the mistakes warned also counted "
                         f"on their {len(shifted)} shifted copies)",
            "shifted_wrong_warned": {k: r["wrong_warned"] for k, r in shifted_rates.items()},
            # every warning the ensemble shows (low confidence, disagreement, majority unfamiliar)
            "correct_warned": rates["correct_warned"], "wrong_warned": rates["wrong_warned"],
            "unfamiliar_share": float(fitted.unfamiliar.mean()) if len(labels) else None,
            "members_accuracy": [float((p.argmax(axis=1) == labels).mean()) for p in member_probs],
        })
    if sentinels:
        results["disagreement"].update(
            sentinel_warns=rule.sentinel,  # fitted: kept only where it catches more mistakes within the budget
            sentinel_share=float(fitted.sentinel.mean()) if len(labels) else None,
            sentinel_differs_share=float(sentinel_differs(member_probs, watch).mean()) if len(labels) else None,
            sentinels_accuracy=[float((p.argmax(axis=1) == labels).mean()) for p in watch])
    results["conformal"] = write_conformal(run.path, probs, labels, run.class_names, 1.0, "none", ensemble=True)
    return update_card(run, results=results)


def register_ensemble(names: Sequence[str], title: str | None = None, root: Path | None = None,
                      fit: bool = True, sentinels: Sequence[str] = ()) -> Run:
    """Register an ensemble of the named runs (and the named ``sentinels``, which only warn) in the
    registry and return it.

    The folder is assembled under a hidden name, its warnings and prediction sets fitted on
    the members' common validation images (when ``fit``), then renamed into place in one step.

    Raises:
        WorkbenchError: see :func:`open_members`; or the validation images are missing.
    """
    from core.models.ensemble import ensemble_card, open_members
    from core.models.runs import CARD_FILE, resolve_run, staging_dir, write_card
    from core.paths import models_dir

    root = (root or models_dir()).resolve()
    runs, watch = open_members(names, root, sentinels)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-ensemble{len(runs)}-{secrets.token_hex(2)}"
    staging = staging_dir(run_id, root)
    card = ensemble_card(runs, run_id, title, watch)
    write_card(staging / CARD_FILE, card)
    run = Run(run_id, staging, card)
    try:
        if fit:
            fit_ensemble(run, runs, watch)
        os.replace(staging, root / run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-made stays behind
        raise
    return resolve_run(run_id, root=root)

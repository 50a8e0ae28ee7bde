"""Prediction for uploaded files: calibrated class probabilities, warnings, and Grad-CAM.

A :class:`Predictor` is built once per registered run. It reads everything that shaped the
model from its card (class order, image size, temperature, low-confidence threshold, OOD
thresholds, training-image hashes), so nothing is re-typed in a page, and it prepares every
upload with the same :func:`core.data.preprocess.prepare` used for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.config import DataConfig
from core.data.dicom import SAFE_FIELDS
from core.data.imageio import DecodedImage, decode_image
from core.data.preprocess import Framing, Prepared, prepare_framed
from core.errors import WorkbenchError
from core.inference.calibration import softmax
from core.inference.conformal import CONFORMAL_FILE, DEFAULT_COVERAGE, check_coverage, try_run_conformal
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD, compute_cam
from core.inference.notices import (  # noqa: F401 - re-exported: pages and reports import them from here
    EMPTY_SET,
    NEAR_COPY_NOTE,
    SYNTHETIC_MODEL,
    SYNTHETIC_WARNING,
    empty_set_warning,
)
from core.inference.ood import energy
from core.inference.predictor_base import PredictorBase
from core.inference.records import PredictionResult, Scores
from core.inference.runner import ModelRunner
from core.inference.side_files import (
    PREDICTION_SETS,
    disabled_warning,
    feature_width,
    load_ood,
    load_train_hashes,
)
from core.inference.slice_warnings import (  # noqa: F401 - re-exported: callers import them from here
    LOW_CONFIDENCE_MESSAGE,
    NOT_MRI,
    format_probability,
    slice_warnings,
)
from core.inference.trust import TrustThresholds, card_thresholds
from core.models.runs import OOD_FILE, Run, best_run, list_runs, load_model, resolve_run

SAFE_META = (*SAFE_FIELDS, "window", "frames")  # DICOM fields we show; never patient identifiers


def no_model_error() -> WorkbenchError:
    return WorkbenchError("no trained model yet: train one on the Train page or with "
                          "`python -m core train --data FOLDER`", "model registry")


class Predictor(PredictorBase):
    """A loaded model plus the card values that turn its outputs into safe answers.

    Class look-up and prediction sets come from :class:`core.inference.predictor_base.PredictorBase`.

    Thread-safe: nothing is mutated after construction; forward passes call the model
    directly (not ``model.predict``, which builds state on first use) and the Grad-CAM
    gradient model is built once under a lock in :mod:`core.inference.gradcam`.

    Args:
        run: the registered run; its model is loaded (sha256-checked, safe mode) unless given.
        model: an already loaded Keras model for ``run`` (tests, caches).
    Raises:
        WorkbenchError: the model file does not match its card or cannot be loaded.
    """

    def __init__(self, run: Run, model: Any = None) -> None:
        self.run = run
        self.model = model if model is not None else load_model(run)
        card = run.card
        self.class_names: list[str] = run.class_names
        self.image_size: int = run.image_size
        self.temperature = card.temperature
        self.tta = card.tta
        data = card.data
        #: One plain sentence per feature a damaged side file switched off (core.inference.side_files).
        self.disabled: list[str] = []
        self.train_hashes, problem = load_train_hashes(data.get("train_hashes"))
        self.disabled += [problem] if problem else []
        self.near_dup_threshold = DataConfig.from_dict(data.get("data_config")).near_dup_threshold
        self.runner = ModelRunner(self.model, self.tta)
        self.ood, problem = load_ood(run.path / OOD_FILE, len(self.class_names), feature_width(self.model))
        self.disabled += [problem] if problem else []
        card_ood = card.results.ood
        self.maha_threshold = card_ood.get("mahalanobis_threshold", self.ood.maha_threshold if self.ood else None)
        self.energy_threshold = card_ood.get("energy_threshold", self.ood.energy_threshold if self.ood else None)
        trust = card_thresholds(card)  # fitted on shifted validation images, or the older card fields
        self.low_confidence = trust.min_confidence  # fitted, or the card's older low-confidence threshold
        self.maha_threshold = trust.max_distance
        self.flag_unstable = trust.flag_unstable
        self.conformal, self.conformal_problem = try_run_conformal(run)  # prediction sets, or why there are none
        if self.conformal is None and (run.path / CONFORMAL_FILE).is_file():  # there is one, but it cannot be used
            # No advice here: the page and the command line each say what to do, in their own words.
            self.disabled.append(disabled_warning(PREDICTION_SETS, str(self.conformal_problem).rstrip(".")))

    @classmethod
    def load(cls, run_id_or_path: str | None = None) -> Predictor:
        """The predictor for a run id or folder; None = the best registered run.

        For a run that may be an ensemble use :func:`core.inference.ensemble_predict.load_predictor`.
        """
        if run_id_or_path:
            return cls(resolve_run(run_id_or_path))
        run = best_run(list_runs())
        if run is None:
            raise no_model_error()
        return cls(run)

    # --- preprocessing and scores -------------------------------------------------------------

    def prepare_framed(self, image: DecodedImage) -> Prepared:
        """The model input and where it came from in the image (the card's preprocessing recipe)."""
        return prepare_framed(image, self.image_size, self.run.preprocessing)

    def predict(self, images: np.ndarray) -> Scores:
        """Scores for (N, S, S, 1) prepared images (uint8 or float 0..255)."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, 1):
            raise WorkbenchError(f"expected (N, {self.image_size}, {self.image_size}, 1) images, got {x.shape}",
                                 "predict")
        out = self.runner.run(x)  # the card's temperature was fitted on logits computed this way
        lg, f = out.logits, out.features
        maha = self.ood.mahalanobis(f) if (self.ood is not None and f is not None and len(f)) else None
        return Scores(lg, softmax(lg, self.temperature) if len(lg) else lg, f, maha, energy(lg / self.temperature),
                      out.view_logits)

    def network_features(self, scores: Scores) -> dict[str, np.ndarray | None]:
        return {self.run.run_id: scores.features}

    def predict_prepared(self, prepared: Sequence[Prepared]) -> Scores:
        """Scores for images prepared by :meth:`prepare_framed` (an ensemble needs more than pixels)."""
        return self.predict(np.stack([p.pixels for p in prepared]))

    def explain_for(self, image: DecodedImage, prepared: Prepared, class_index: int | None = None,
                    method: str = DEFAULT_CAM_METHOD) -> np.ndarray:
        """Heat map over ``prepared.pixels`` for one image (an ensemble averages its members' maps)."""
        return self.explain(prepared.pixels, class_index, method)

    def explain(self, model_input: np.ndarray, class_index: int | None = None,
                method: str = DEFAULT_CAM_METHOD) -> np.ndarray:
        """Grad-CAM heatmap (S, S) in [0, 1] for one prepared image; None class = predicted."""
        return compute_cam(self.model, model_input, class_index=class_index, method=method)

    # --- warnings -----------------------------------------------------------------------------

    def warnings_for(self, image: DecodedImage, scores: Scores, i: int,
                     framing: Framing | None = None) -> tuple[list[str], list[str], dict[str, str]]:
        """(messages, flags, details) for image ``i`` of a scored batch (see
        :func:`core.inference.slice_warnings.slice_warnings`), with this model's card thresholds."""
        thresholds = TrustThresholds(self.low_confidence, self.maha_threshold, self.flag_unstable)
        return slice_warnings(image, scores, i, framing, thresholds, self.train_hashes, self.near_dup_threshold)


def _decode(name: str, data: bytes) -> DecodedImage:
    return decode_image(data, name)


def predict_files(predictor: Predictor, items: Sequence[tuple[str, bytes]], gradcam: bool = False,
                  method: str = DEFAULT_CAM_METHOD, target_class: str | int | None = None,
                  coverage: float = DEFAULT_COVERAGE) -> list[PredictionResult]:
    """Predict every file; a file that cannot be used gets ``error`` and the others carry on.

    Args:
        predictor: the loaded model and its card values.
        items: (file name, file bytes) pairs, e.g. uploads read in memory.
        gradcam: also compute a heatmap per image.
        method: a key of :data:`core.inference.gradcam.CAM_METHODS`.
        target_class: class name or index the heatmap explains; None = the predicted class.
        coverage: the prediction sets' coverage (core.inference.conformal).
    Returns:
        One :class:`PredictionResult` per item, in input order.
    Raises:
        WorkbenchError: an unknown method, target class or coverage (a setting, not a file problem).
    """
    check_coverage(coverage, "coverage")
    if gradcam and method not in CAM_METHODS:
        raise WorkbenchError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}", "method")
    target = predictor.class_index(target_class)
    results = [PredictionResult(file=str(name)) for name, _ in items]
    prepared_inputs: dict[int, Prepared] = {}
    good: list[int] = []
    for i, (name, data) in enumerate(items):
        try:
            image = _decode(str(name), bytes(data))
            results[i].image = image
            results[i].meta = {k: v for k, v in image.meta.items() if k in SAFE_META}
            prepared = predictor.prepare_framed(image)
            results[i].model_input, results[i].framing = prepared.pixels, prepared.framing
            prepared_inputs[i] = prepared
            good.append(i)
        except WorkbenchError as exc:
            results[i].error = exc.reason
        except Exception as exc:  # noqa: BLE001 - one hostile file must never stop the batch
            results[i].error = f"the file could not be processed ({type(exc).__name__})"
    if not good:
        return results
    scores = predictor.predict_prepared([prepared_inputs[i] for i in good])
    features = predictor.network_features(scores)
    for row, i in enumerate(good):
        r = results[i]
        r.features = {k: None if f is None else f[row].astype(np.float32) for k, f in features.items()}
        probs = scores.probs[row]
        k = int(probs.argmax())
        r.label, r.confidence = predictor.class_names[k], float(probs[k])
        r.probabilities = {c: float(p) for c, p in zip(predictor.class_names, probs)}
        r.warnings, r.flags, r.details = predictor.warnings_for(r.image, scores, row, r.framing)
        if "near_duplicate" in r.flags:
            r.notes.append(NEAR_COPY_NOTE)
        if predictor.run.synthetic:
            r.synthetic = True
            r.warnings.insert(0, SYNTHETIC_WARNING)
            r.flags.insert(0, SYNTHETIC_MODEL)
        if gradcam:
            try:
                idx = k if target is None else target
                r.heatmap = predictor.explain_for(r.image, prepared_inputs[i], idx, method)
                r.heatmap_class, r.method = predictor.class_names[idx], method
            except WorkbenchError as exc:
                r.warnings.append(f"No heatmap: {exc.reason}")
    predictor.add_prediction_sets(results, coverage)
    return results

"""What every predictor does the same way, once its probabilities exist: class look-up and prediction sets.

:class:`core.inference.predict.Predictor` (one model) and
:class:`core.inference.ensemble_predict.EnsemblePredictor` (averaged members) differ in how they
prepare and score an image, not in how a class name becomes an index or how a prediction set is
read from calibrated probabilities; those live here so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core.classes import display_name
from core.data.imageio import DecodedImage
from core.data.preprocess import Prepared
from core.errors import WorkbenchError
from core.inference.conformal import DEFAULT_COVERAGE, ConformalCalibration, check_coverage
from core.inference.notices import EMPTY_SET, NO_SET_FLAGS, NOT_MRI_SET_PROBLEM, empty_set_warning
from core.inference.records import PredictionResult


class PredictorBase:
    """Shared methods; a subclass sets ``class_names`` and ``conformal`` and defines ``prepare_framed``."""

    class_names: list[str]
    #: The run's prediction-set calibration, or None when it has none (or a damaged one).
    conformal: ConformalCalibration | None

    def prepare_framed(self, image: DecodedImage) -> Prepared:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def prepare(self, image: DecodedImage) -> np.ndarray:
        """(S, S, 1) uint8 model input, via the training pipeline's own function."""
        return self.prepare_framed(image).pixels

    def network_features(self, scores) -> dict[str, np.ndarray | None]:  # pragma: no cover - every subclass
        """Run id -> (N, D) pooled features of each network that read the batch (None: no 'features' layer)."""
        raise NotImplementedError

    def class_index(self, target: str | int | None) -> int | None:
        """A class name or index as an index (None stays None = the predicted class)."""
        if target is None or target == "":
            return None
        if isinstance(target, str):
            if target not in self.class_names:
                raise WorkbenchError(f"unknown class '{target}'; the model knows {', '.join(self.class_names)}",
                                     "target class")
            return self.class_names.index(target)
        if not 0 <= int(target) < len(self.class_names):
            raise WorkbenchError(f"class index {target} is out of range", "target class")
        return int(target)

    def add_prediction_sets(self, results: Sequence[PredictionResult], coverage: float = DEFAULT_COVERAGE) -> None:
        """Set every analysed result's prediction set at ``coverage`` (cheap: no forward pass).

        Raises:
            WorkbenchError: ``coverage`` outside the allowed range.
        """
        coverage = check_coverage(coverage)
        problem = self.set_problem(coverage)
        for r in results:
            if r.ok and r.probabilities:
                # A picture that is not a brain MRI is not exchangeable with the validation slices: a set
                # such as "this one class alone" would contradict its own warning.
                own = problem or (NOT_MRI_SET_PROBLEM if NO_SET_FLAGS.intersection(r.flags) else None)
                r.coverage, r.set_problem = coverage, own
                r.prediction_set = None if self.conformal is None or own else self.conformal.set_names(
                    [r.probabilities[c] for c in self.class_names], coverage)
                # the coverage can change without a new forward pass: the empty-set warning follows it
                r.warnings = [w for w in r.warnings if not w.startswith("None of the classes fits")]
                r.flags = [f for f in r.flags if f != EMPTY_SET]
                if r.prediction_set == []:
                    r.warnings.insert(0, empty_set_warning(coverage))
                    r.flags.insert(0, EMPTY_SET)

    def set_problem(self, coverage: float) -> str | None:
        """Why sets at ``coverage`` would say nothing (too few validation images of a class), else None.

        With n images of a class the ⌈(n + 1)·coverage⌉-th score exists only when n ≥ coverage/(1 − coverage);
        below that the class enters every set, whatever the slice (the demo's small validation split).
        """
        if self.conformal is None:
            return None
        small = {c: n for c, n in self.conformal.n_per_class.items() if math.ceil((n + 1) * coverage - 1e-9) > n}
        if not small:
            return None
        need = math.ceil(coverage / (1 - coverage) - 1e-9)
        listed = ", ".join(f"{display_name(c)} {n}" for c, n in small.items())
        return (f"No useful prediction set at {100 * coverage:.3g} %: the model's validation split is too small "
                f"(images per class: {listed}; at least {need} each are needed), so every set would hold those "
                "classes whatever the slice.")

"""Prediction sets with a coverage guarantee: class-conditional split conformal prediction.

Instead of one answer, a *set* of classes that holds the true class for at least a chosen
share (the coverage, e.g. 95 %) of new images. The set is built from a nonconformity score
S(x, y) (how unusual label y is for image x; low = plausible) and one threshold per class,
taken from validation images *of that class* (Mondrian conformal prediction, Vovk et al. 2005;
Sadinle et al. 2019): label y enters the set when S(x, y) ≤ q_y. Per-class thresholds keep every
class at its coverage; one pooled threshold would let a rare, hard class fall below it.

The guarantee (exchangeability): if the validation images and the new image are drawn from the
same source, then P(true class ∈ set | true class = k) ≥ coverage for every class k, on
average over images (not for one image), and only for images like the validation ones.

Scores (:data:`SCORES`): LAC 1 − p_y (Sadinle et al. 2019; smallest sets on average), APS
(Romano et al. 2020) and RAPS (Angelopoulos et al. 2021). APS and RAPS are used *without* their
randomisation term: sets are reproducible (the same image always gets the same set) and
coverage is at least the nominal level rather than exactly it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import WorkbenchError

MIN_COVERAGE, MAX_COVERAGE = 0.5, 0.999  # below 50 % a "set" says less than the top class alone
DEFAULT_COVERAGE = 0.95
COVERAGE_CHOICES = (0.80, 0.90, 0.95, 0.99)  # the levels pages offer and evaluation reports
RAPS_LAMBDA, RAPS_K_REG = 0.1, 1  # RAPS penalty per rank beyond the first (fixed, not tuned on test data)
CONFORMAL_FILE = "conformal.npz"
#: The Evaluate page's action that fits a run's prediction sets (its expander and button carry this label).
FIT_SETS_ACTION = "Fit the sets on more images"
#: What to do about missing or unusable sets, per place the advice is read: the command line names its
#: command; the pages name the app's action, because a clinician reading them cannot run a command.
REFIT_ADVICE: dict[str, str] = {
    "cli": "run `python -m core calibrate --model {run_id} --conformal-only`",
    "evaluate": f"fit them below with '{FIT_SETS_ACTION}'",
    "app": f"they can be fitted on the Evaluate page ('{FIT_SETS_ACTION}', under Prediction sets) where the "
           "model's training images are on this machine",
}


def _lac(probs: np.ndarray) -> np.ndarray:
    return 1.0 - probs


def _aps(probs: np.ndarray) -> np.ndarray:
    """Probability mass of the classes ranked at or above y (y's own mass included, no randomisation)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    out = np.empty_like(probs)
    np.put_along_axis(out, order, cum, axis=1)
    return out


def _raps(probs: np.ndarray) -> np.ndarray:
    rank = np.argsort(np.argsort(-probs, axis=1, kind="stable"), axis=1) + 1  # 1 = the top class
    return _aps(probs) + RAPS_LAMBDA * np.maximum(0, rank - RAPS_K_REG)


#: score key -> (title, function of (N, K) probabilities returning the (N, K) score of every label).
SCORES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "lac": ("1 − probability of the class (LAC)", _lac),
    "aps": ("adaptive prediction sets (APS, not randomised)", _aps),
    "raps": (f"regularised APS (RAPS, λ = {RAPS_LAMBDA}, k = {RAPS_K_REG}, not randomised)", _raps),
}


def check_coverage(value: object, source: str = "coverage") -> float:
    """``value`` as a coverage share, or a WorkbenchError saying the allowed range.

    Raises:
        WorkbenchError: not a number, NaN, or outside [MIN_COVERAGE, MAX_COVERAGE].
    """
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not ok or not MIN_COVERAGE <= float(value) <= MAX_COVERAGE:  # NaN fails the comparison
        raise WorkbenchError(f"the coverage must be a share between {MIN_COVERAGE:g} and {MAX_COVERAGE:g} "
                             f"({100 * MIN_COVERAGE:g} % to {100 * MAX_COVERAGE:g} %), got {value!r}", source)
    return float(value)


def label_scores(probs: np.ndarray, score: str) -> np.ndarray:
    """(N, K) nonconformity score of every label for every image (lower = more plausible)."""
    if score not in SCORES:
        raise WorkbenchError(f"unknown conformal score '{score}' (choose {', '.join(SCORES)})", "score")
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise WorkbenchError(f"expected (N, classes) probabilities, got shape {p.shape}", "probabilities")
    return SCORES[score][1](p)


def conformal_quantile(sorted_scores: np.ndarray, coverage: float) -> float:
    """The ⌈(n + 1)·coverage⌉-th smallest score; +inf when n is too small to certify ``coverage``."""
    n = len(sorted_scores)
    rank = math.ceil((n + 1) * coverage - 1e-9)  # the epsilon keeps (n+1)·0.9 = 90.000…01 at 90
    return float(sorted_scores[rank - 1]) if 1 <= rank <= n else math.inf


@dataclass(frozen=True)
class ConformalCalibration:
    """Per-class sorted validation scores of a run, and what they were computed with."""

    score: str  # a key of SCORES
    class_names: tuple[str, ...]
    sorted_scores: tuple[np.ndarray, ...]  # per class: scores of the true label on that class's images
    temperature: float  # the calibration the probabilities came from (a refit makes these stale)
    tta: str

    @classmethod
    def fit(cls, probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], score: str,
            temperature: float = 1.0, tta: str = "none") -> ConformalCalibration:
        """From calibrated probabilities (N, K) and true class indices (N,) of exchangeable images."""
        s = label_scores(probs, score)
        y = np.asarray(labels, dtype=np.int64)
        true = s[np.arange(len(y)), y]
        per_class = tuple(np.sort(true[y == k]) for k in range(len(class_names)))
        return cls(score, tuple(class_names), per_class, float(temperature), str(tta))

    @property
    def n_per_class(self) -> dict[str, int]:
        return {c: int(len(s)) for c, s in zip(self.class_names, self.sorted_scores)}

    def thresholds(self, coverage: float) -> np.ndarray:
        """(K,) per-class thresholds q_k for ``coverage`` (+inf: that class is always in the set)."""
        coverage = check_coverage(coverage)
        return np.array([conformal_quantile(s, coverage) for s in self.sorted_scores])

    def sets(self, probs: np.ndarray, coverage: float) -> np.ndarray:
        """(N, K) boolean membership of every class in every image's prediction set."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.class_names):
            raise WorkbenchError(f"expected (N, {len(self.class_names)}) probabilities, got shape {p.shape}",
                                 "probabilities")
        return label_scores(p, self.score) <= self.thresholds(coverage)[None, :]

    def set_names(self, probs: Sequence[float], coverage: float) -> list[str]:
        """One image's prediction set as class names, most probable first."""
        p = np.asarray(probs, dtype=np.float64)[None, :]
        member = self.sets(p, coverage)[0]
        return [self.class_names[k] for k in np.argsort(-p[0], kind="stable") if member[k]]

    # --- storage --------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write ``conformal.npz`` atomically (no pickled objects: plain arrays and strings)."""
        from core.atomic import write_bytes

        labels = np.concatenate([np.full(len(s), k) for k, s in enumerate(self.sorted_scores)]).astype(np.int64)
        buf = io.BytesIO()
        np.savez_compressed(buf, score=np.array(self.score), class_names=np.array(self.class_names),
                            scores=np.concatenate(self.sorted_scores).astype(np.float64), labels=labels,
                            temperature=np.float64(self.temperature), tta=np.array(self.tta))
        write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> ConformalCalibration:
        """Read a saved calibration; a damaged file is a WorkbenchError, never a crash."""
        import zipfile
        import zlib

        try:
            with np.load(path, allow_pickle=False) as z:
                names = tuple(str(c) for c in z["class_names"])
                scores, labels = np.asarray(z["scores"], np.float64), np.asarray(z["labels"], np.int64)
                if scores.shape != labels.shape or scores.ndim != 1 or not names or \
                        (len(labels) and not 0 <= labels.min() <= labels.max() < len(names)):
                    raise ValueError("scores and labels do not fit together")
                per_class = tuple(np.sort(scores[labels == k]) for k in range(len(names)))
                cal = cls(str(z["score"]), names, per_class, float(z["temperature"]), str(z["tta"]))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # A truncated or bit-flipped file fails in the zip or deflate layer beneath np.load.
            raise WorkbenchError(f"the prediction-set file (conformal.npz) is damaged and cannot be read "
                                 f"({type(exc).__name__})",
                                 path.name) from None
        if cal.score not in SCORES or not all(np.isfinite(s).all() for s in per_class):
            raise WorkbenchError("the prediction-set file (conformal.npz) is damaged (unknown score or non-finite "
                                 "values)", path.name)
        return cal


def run_conformal(run) -> ConformalCalibration:
    """A registered run's prediction-set calibration, checked against its card.

    The error says what is wrong, not what to do: the command line and the pages each add their
    own advice (:func:`with_refit_advice`).

    Raises:
        WorkbenchError: none fitted yet, a damaged file, or one fitted with another temperature,
            test-time augmentation or class order than the card's (then the sets would be wrong).
    """
    path = Path(run.path) / CONFORMAL_FILE
    if not path.is_file() or path.is_symlink():
        raise WorkbenchError("this model has no prediction-set calibration yet", run.run_id)
    cal = ConformalCalibration.load(path)
    card = run.card
    if (cal.class_names != tuple(card.class_names) or cal.tta != card.tta
            or not math.isclose(cal.temperature, card.temperature, rel_tol=1e-9)):
        raise WorkbenchError("the prediction-set calibration was fitted before the model's calibration changed, "
                             "so its sets would be wrong", run.run_id)
    return cal


def try_run_conformal(run) -> tuple[ConformalCalibration | None, str | None]:
    """(calibration, None), or (None, the reason in words) when the run has no usable one."""
    try:
        return run_conformal(run), None
    except WorkbenchError as exc:
        return None, exc.reason


def with_refit_advice(problem: str, run_id: str, where: str) -> str:
    """``problem`` (a reason from :func:`try_run_conformal`) and what to do about it, phrased for ``where``:
    a key of :data:`REFIT_ADVICE` ("cli", "evaluate" or "app")."""
    if where not in REFIT_ADVICE:
        raise ValueError(f"unknown place {where!r} (choose {', '.join(REFIT_ADVICE)})")
    return f"{problem.rstrip('.')}; {REFIT_ADVICE[where].format(run_id=run_id)}."


def conformal_fingerprint(run) -> str:
    """A short digest of a run's ``conformal.npz`` ("none" without one): caches keyed on it follow a refit."""
    import hashlib

    path = Path(run.path) / CONFORMAL_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "none"
    except OSError:
        return "none"

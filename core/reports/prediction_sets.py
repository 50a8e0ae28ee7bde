"""Prediction sets in plain words, for the Predict page, the PDF case report and the CLI.

The sets come from :mod:`core.inference.conformal`; here they only become sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.classes import display_name

#: Said once wherever sets are shown: what the coverage promises, and when it does not hold.
GUARANTEE_NOTE = (
    "Prediction set: over many new slices from the same source as the model's validation images, a set "
    "like this contains the true class at least the stated share of the time, for every class. It is a "
    "promise about many slices, not about this one. Under dataset shift (another scanner, hospital, "
    "sequence or patient group) the guarantee does not hold."
)


def coverage_words(coverage: float) -> str:
    """0.95 -> "95 %", 0.999 -> "99.9 %"."""
    return f"{100 * coverage:.3g} %"


def describe_set(names: Sequence[str] | None, coverage: float, n_classes: int) -> str:
    """One sentence: which classes the prediction set holds at ``coverage``, in display names.

    ``names`` None means the model has no prediction-set calibration.
    """
    level = f"At {coverage_words(coverage)} coverage"
    if names is None:
        return "No prediction set: this model has no prediction-set calibration yet."
    shown = [display_name(n) for n in names]
    if not shown:
        return (f"{level} the set is empty: no class is likely enough to be included, which is unusual for "
                "images like the validation ones. Treat this slice as out of the ordinary and do not rely on "
                "the top class.")
    if len(shown) == 1:
        return f"{level} the answer is {shown[0]} alone: the model can narrow it down to this one class."
    if len(shown) >= n_classes:
        return (f"{level} the answer could be any of the {n_classes} classes: at this level the model cannot "
                "rule any of them out, so it gives no useful narrowing for this slice.")
    return f"{level} the answer is in {{{', '.join(shown)}}}."

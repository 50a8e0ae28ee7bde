"""How to read one prediction: which signal wins when they disagree, what the heat map's colours mean.

Plain sentences for the Predict page, the PDF case report and the CLI; the figures stay in
``PredictionResult.details`` for those who open them.
"""

from __future__ import annotations

import numpy as np

from core.classes import display_name
from core.inference.gradcam import CAM_METHODS
from core.inference.notices import SITE_SHIFT
from core.inference.overlay import colorize
from core.inference.predict import EMPTY_SET, NOT_MRI, SYNTHETIC_MODEL, PredictionResult

HIGH = 0.9  # a model probability a reader takes as "sure"
NO_TUMOUR = "notumor"


def reading_note(result: PredictionResult) -> str | None:
    """One sentence naming the signal that wins when the probability says "sure" and another signal does not.

    The order is the order of trust: a model that never saw a real scan, then a picture that is not
    a brain MRI, then a batch unlike the training images (a sure answer only), then a prediction set
    that does not back the top class. None when nothing disagrees.
    """
    if not result.ok or result.confidence is None:
        return None
    sure = result.confidence >= HIGH
    sure_words = f"the high probability for {display_name(result.label)}" if sure else "the top class"
    if SYNTHETIC_MODEL in result.flags:
        return (f"Which signal wins: the synthetic-model warning. A model trained on synthetic pictures can be "
                f"sure of anything on a real scan, so {sure_words} means nothing here.")
    if any(w.startswith(NOT_MRI) for w in result.warnings):
        return (f"Which signal wins: the image check. The probability only ranks the four classes against each "
                f"other; it cannot tell that a picture is not a brain MRI, so {sure_words} means nothing here.")
    if SITE_SHIFT in result.flags and sure:
        return (f"Which signal wins: the site check. The probability was calibrated on images like the model's "
                f"training ones; this batch differs from them, so {sure_words} may be far too sure.")
    n_classes = len(result.probabilities)
    full = result.prediction_set is not None and n_classes > 1 and len(result.prediction_set) >= n_classes
    if EMPTY_SET in result.flags or (full and sure):
        what = "is empty" if EMPTY_SET in result.flags else f"holds all {n_classes} classes"
        return (f"Which signal wins: the prediction set. The set {what}: compared with the validation slices, "
                f"this slice cannot be placed, so {sure_words} should not be trusted.")
    return None


def heatmap_caption(result: PredictionResult) -> str:
    """What the map shows, in words: "Regions that pushed the score towards Glioma (LayerCAM)"."""
    method = CAM_METHODS[result.method].title if result.method in CAM_METHODS else "heat map"
    return f"Regions that pushed the score towards {display_name(result.heatmap_class)} ({method})"


#: colormap -> (strongest colours, weakest colours) in words, for the colour-scale sentence.
SCALE_WORDS: dict[str, tuple[str, str]] = {
    "jet": ("red", "dark blue"), "turbo": ("red", "dark blue"), "inferno": ("yellow and white", "black and purple"),
    "viridis": ("yellow", "dark purple"), "hot": ("white and yellow", "black"),
}


def colour_scale_note(result: PredictionResult, colormap: str = "jet") -> str:
    """The colour scale in words, plus what a map for "No tumour" shows."""
    name = display_name(result.heatmap_class)
    hot, cold = SCALE_WORDS.get(colormap, ("the right end of the scale", "the left end"))
    text = (f"Colour scale (left: least, right: most): {hot} marks the regions that pushed the score most towards "
            f"{name}; {cold} marks regions that mattered little. The map is scaled to its own strongest region: it shows where the "
            "model looked, not how sure it is, and it is not an outline of a lesion.")
    if result.heatmap_class == NO_TUMOUR:
        text += (f" For No tumour, the {hot} regions are those that argued against a tumour; they are not a finding "
                 "and do not mark anything abnormal.")
    return text


def colour_bar(colormap: str = "jet", width: int = 256, height: int = 12) -> np.ndarray:
    """(height, width, 3) uint8 strip from the lowest (left) to the highest (right) heat-map value."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return colorize(ramp, colormap)


#: flag -> the few words a table cell shows (the full sentences are in the detailed view).
FLAG_WORDS: dict[str, str] = {
    EMPTY_SET: "no class fits (empty set)",
    SYNTHETIC_MODEL: "synthetic model",
    "low_confidence": "close call",
    "unfamiliar": "unlike the training images",
    "unstable": "changes when mirrored",
    "disagree": "the models disagree",
    "sentinel": "check model reads it differently",
    "ood": "probably not a brain MRI",
    "not_mr": "not an MRI (DICOM header)",
    SITE_SHIFT: "batch unlike the training images",
}


def short_warnings(result: PredictionResult) -> str:
    """The warnings of one result in a few words each, for a table cell that must not be cut."""
    return "; ".join(FLAG_WORDS[f] for f in result.flags if f in FLAG_WORDS)


def set_cell(result: PredictionResult) -> str:
    """A prediction set for a table cell: "Glioma, Meningioma", "empty: no class fits", or ""."""
    if not result.ok or result.prediction_set is None:
        return "not available" if result.ok and result.set_problem else ""
    if not result.prediction_set:
        return "empty: no class fits"
    return ", ".join(display_name(c) for c in result.prediction_set)

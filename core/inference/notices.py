"""The notices a prediction carries beyond the trust checks (issue 24): an empty prediction set, a
synthetic-data model, and the near-copy note (about the score, not the patient)."""

from __future__ import annotations

EMPTY_SET = "empty_set"  # flag: no class entered the prediction set
SYNTHETIC_MODEL = "synthetic_model"  # flag: the model learned from synthetic pictures, not scans
SYNTHETIC_WARNING = ("This model learned from synthetic pictures, not real scans: its answer says nothing about a "
                     "real patient, however high the probability.")


def empty_set_warning(coverage: float) -> str:
    """The empty prediction set's warning in plain words (shown in the page box, table, CSV, PDF and CLI)."""
    return (f"None of the classes fits this slice well at {100 * coverage:.3g} %: the prediction set is empty, "
            "so do not rely on the top class, however high its probability.")


#: Flags of a slice that is not a brain MRI at all (image checks, another modality): no prediction set is
#: shown for it, because the set's promise rests on slices like the model's validation ones.
NO_SET_FLAGS = frozenset({"ood", "not_mr"})
NOT_MRI_SET_PROBLEM = ("No prediction set: this image does not look like a brain MRI slice (see the warning), and a "
                       "prediction set only keeps its promise for slices like the model's validation images.")


NEAR_COPY_NOTE = ("About the score, not the patient: this image or a near-copy of it was among the model's training "
                  "images. That is common with public datasets; it means this score does not show how well the "
                  "model does on slices it has never seen.")


MIN_IMAGES = 20  # the site check's smallest batch: with fewer images a cross-validated AUC means little
SITE_SHIFT = "site_shift"  # flag: the slice came in a batch the site check tells apart from the training images
SITE_SHIFT_DETAIL = "Site check of the batch"
_SITE_SHIFT_START = "This slice came in a batch of"


def site_shift_warning(n_images: int) -> str:
    """The per-slice words for a batch the site check flagged (the page box, table, CSV, PDF and CLI).

    Said on every slice of the batch, because a case report printed for one slice travels without the
    batch's banner; the words allow for a sub-collection of the training data (the check cannot tell).
    """
    return (f"{_SITE_SHIFT_START} {n_images} images that can be told apart from the model's training images: "
            "they may come from another scanner or site, or resemble only one part of the training collection. "
            "The accuracy on the model card may not hold for this slice; check the answer against labelled "
            "cases from this site, or adapt the model to them.")


def clear_site_shift(result) -> None:
    """Remove an earlier batch verdict from ``result`` (the batch changed, or was checked again)."""
    result.flags = [f for f in result.flags if f != SITE_SHIFT]
    result.warnings = [w for w in result.warnings if not w.startswith(_SITE_SHIFT_START)]
    result.details.pop(SITE_SHIFT_DETAIL, None)

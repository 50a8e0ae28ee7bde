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

"""Short, factual teaching notes per class, shown beside the images (not diagnostic criteria)."""

from __future__ import annotations

#: canonical class -> (one-line summary, typical MRI appearance bullet points)
CLASS_NOTES: dict[str, tuple[str, list[str]]] = {
    "glioma": (
        "A tumour arising from the brain's own glial cells (intra-axial).",
        [
            "Lies within the brain tissue itself, often in the white matter of the cerebral hemispheres.",
            "Infiltrative, with irregular, poorly defined margins.",
            "High-grade tumours often show surrounding oedema, mass effect, necrosis and ring enhancement.",
            "Low-grade tumours can be subtle: a slightly abnormal area without enhancement.",
        ],
    ),
    "meningioma": (
        "A usually benign tumour of the meninges, the membranes covering the brain (extra-axial).",
        [
            "Sits outside the brain, attached to the dura (dural-based), often along the skull or falx.",
            "Well circumscribed, round or lobulated, pushing the brain rather than infiltrating it.",
            "Enhances strongly and uniformly; a 'dural tail' of enhancing dura is common.",
        ],
    ),
    "pituitary": (
        "A pituitary adenoma: a tumour of the pituitary gland at the skull base.",
        [
            "A midline mass in the sella turcica, often extending upward (suprasellar).",
            "Best seen on sagittal and coronal slices; on axial slices it is small and low in the head.",
            "Large adenomas can compress the optic chiasm above the sella.",
        ],
    ),
    "notumor": (
        "No tumour visible on this slice.",
        [
            "Normal anatomy: symmetric ventricles, grey/white matter and midline structures.",
            "Remember: 'no tumour on this slice' is not 'no tumour in the patient'.",
        ],
    ),
}

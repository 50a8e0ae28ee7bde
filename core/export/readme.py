"""The README that travels in an export bundle: what the model expects, returns, and an example."""

from __future__ import annotations

from typing import Any

from core.data.preprocess import WHOLE_FRAME_ID
from core.export.formats import EXPORT_FORMATS

_PREPROCESSING_OUTSIDE = {
    WHOLE_FRAME_ID: (
        "Outside the workbench this recipe is easy to reproduce: decode to 8-bit grayscale, resize to "
        "{size}×{size} with OpenCV's INTER_AREA when shrinking (INTER_LINEAR when enlarging), and pass the "
        "0..255 values as float32. A different resize (another library, another interpolation) gives slightly "
        "different inputs."
    ),
}
_PREPROCESSING_OTHER = (
    "This recipe finds the head and equalises its intensities (the head-crop recipe also crops to it); a plain "
    "resize is **not** equivalent, and predictions on "
    "images prepared differently do not carry the accuracy measured in the workbench. Outside the workbench, "
    "either install the workbench and call `core.data.preprocess.load_for_model` as the example does (it "
    "needs numpy, OpenCV and Pillow, not TensorFlow), or re-implement the recipe above step by step and "
    "check it against the workbench on a few images before trusting it."
)


def bundle_readme(fmt: str, facts: dict[str, Any]) -> str:
    """Markdown README for a bundle; ``facts`` is the bundle's ``export.json`` content."""
    # Stays whole: it is the README's text in reading order (a template with a few facts filled in).
    spec = EXPORT_FORMATS[fmt]
    size, pre = facts["image_size"], facts["preprocessing"]
    classes = facts["class_names"]
    cal = facts["calibration"]
    ver = facts["verification"]
    tta = ("The model runs each image twice, as given and mirrored left-right, and averages the two logit "
           "vectors before the temperature, exactly as the workbench does for this run."
           if facts["tta"] == "hflip" else "Each image is run once (no test-time augmentation).")
    outside = _PREPROCESSING_OUTSIDE.get(pre["id"], _PREPROCESSING_OTHER).format(size=size)
    example = "\n".join([
        "import numpy as np",
        "from core.data.preprocess import load_for_model  # the workbench's own preprocessing (see above)",
        f"CLASSES = {classes!r}",
        "# Input MUST be preprocessed exactly as the card says: recipe "
        f"'{pre['id']}', {size}x{size}, one channel, 0..255 floats.",
        f'x = load_for_model("scan.jpg", {size}, preprocessing="{pre["id"]}")[None].astype(np.float32)',
        spec.example,
        "print(CLASSES[int(np.argmax(probs))], float(np.max(probs)))",
    ])
    return f"""# {facts['run_id']} — {spec.title}

Exported from the MRI Workbench on {facts['exported']}. Research and teaching tool: **not a diagnosis**.

## Files

- `{spec.artifact}`: the model ({spec.title}).
- `card.json`: the run's model card as the workbench registered it (training settings, data, evaluation).
- `export.json`: what this export expects and returns, and how it was verified.
- `README.md`: this file.

## Input and output

- Input `{facts['input']['name']}`: float32, shape (N, {size}, {size}, 1), values 0..255 after preprocessing.
  Scaling to the network's range happens inside the model.
- Output `{facts['output']['name']}`: float32, shape (N, {len(classes)}), one row per image summing to 1, in the
  class order {', '.join(classes)}.

## Calibration is baked in

The output is **calibrated** probabilities: softmax(logits / T) with the temperature T = {cal['temperature']:.4f}
({cal['source']}). {tta} The numbers therefore match the
"model probability" the workbench shows. To get logits back (up to a constant per image):
`np.log(probs) * {cal['temperature']:.4f}`.

## Preprocessing (required)

Recipe `{pre['id']}` ({pre['title']}): {pre['description']}.

{outside}

## Example ({spec.runtime})

```python
{example}
```

## Verification

When this bundle was made, the exported model was run with {spec.runtime.split('==')[0]} on {ver['n_images']}
held-out images ({ver['source']}); its probabilities matched the workbench's Keras model within
{ver['max_abs_diff']:.1e} (tolerance {ver['tolerance']:.0e}). A larger difference would have stopped the export.
"""

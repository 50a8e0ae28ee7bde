"""Export an ensemble run as one Keras file that runs all its members.

The file has one input per member (``image_0``, ``image_1``, ...), because members may differ
in image size and preprocessing: the head crop and intensity standardisation are OpenCV code,
not network layers, so each member's input is prepared outside the model exactly as its card
says (``export.json`` lists the recipe and size per input). Inside, each member's serving
network (:func:`core.export.bundle.serving_model`: test-time mirroring and temperature baked in)
gives calibrated probabilities and one ``Average`` layer returns their mean, the number the
workbench shows. Only the Keras format is offered: the other converters and loaders of
:mod:`core.export.formats` take a single input.

Verified like every export: the written file, loaded back in safe mode, must reproduce the
workbench's ensemble probabilities within :data:`core.export.bundle.TOLERANCE`.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.export.bundle import TOLERANCE, ExportResult, bundle_target, get_format
from core.export.formats import OUTPUT_NAME
from core.models.runs import Run, load_model

FORMATS = ("keras",)
ARTIFACT = "model.keras"


def input_name(j: int) -> str:
    """The exported model's input for member ``j``."""
    return f"image_{j}"


def ensemble_serving_model(models: list[Any], members: list[Run]) -> Any:
    """One Keras model: member inputs -> each member's calibrated probabilities -> their mean."""
    from core.export.bundle import serving_model
    from core.lazy_tensorflow import keras

    k = keras()
    inputs, outputs = [], []
    for j, (model, run) in enumerate(zip(models, members)):
        serving = serving_model(model, run.card.tta, run.card.temperature)
        member = k.Model(serving.inputs, serving.outputs[0] if isinstance(serving.outputs, list) else serving.output,
                         name=f"member_{j}")
        image = k.Input(tuple(model.inputs[0].shape[1:]), name=input_name(j))
        inputs.append(image)
        outputs.append(member(image))
    probs = k.layers.Average(name=OUTPUT_NAME, dtype="float32")(outputs)
    ensemble = k.Model(inputs, {OUTPUT_NAME: probs}, name="ensemble_serving")
    ensemble([np.zeros((1, *i.shape[1:]), np.float32) for i in inputs], training=False)
    return ensemble


def _verification_inputs(run: Run, members: list[Run], n: int) -> tuple[list[np.ndarray], str]:
    """Each member's prepared input for up to ``n`` held-out files common to the members."""
    from core.data.preprocess import load_many

    for key, words in (("test_files", "the ensemble's held-out test split"),
                       ("val_files", "the ensemble's validation split")):
        found = [p for p in (run.data_root / f for f in run.card.data.get(key) or []) if p.is_file()]
        if found:
            picks = [found[int(i)] for i in np.linspace(0, len(found) - 1, min(n, len(found)))]
            return [load_many(picks, m.image_size, preprocessing=m.preprocessing) for m in members], \
                f"{len(picks)} images of {words}"
    raise WorkbenchError("none of the ensemble's held-out or validation images is on this machine, so the export "
                         "cannot be verified; nothing was written", run.run_id)


def export_ensemble(run: Run, fmt: str, out: str | Path, overwrite: bool = False, n: int = 32) -> ExportResult:
    """Convert, verify and publish an ensemble run as one Keras file in a zip bundle.

    Raises:
        WorkbenchError: a format other than Keras, a missing or changed member, no images to
            verify on, or an export that does not reproduce the workbench's probabilities.
    """
    from core.atomic import atomic_open
    from core.inference.calibration import softmax
    from core.inference.runner import ModelRunner
    from core.lazy_tensorflow import keras
    from core.models.ensemble import member_runs

    start = time.perf_counter()
    get_format(fmt)
    if fmt not in FORMATS:
        raise WorkbenchError(f"an ensemble is exported as one Keras file with one input per member; the {fmt} "
                             "export takes a single input, so choose keras", "--format")
    target = bundle_target(out, run, fmt, overwrite)
    members = member_runs(run)
    models = [load_model(m) for m in members]
    inputs, source = _verification_inputs(run, members, n)
    expected = np.mean([softmax(ModelRunner(model, m.card.tta, features=False).logits(x), m.card.temperature)
                        for model, m, x in zip(models, members, inputs)], axis=0)
    with tempfile.TemporaryDirectory(prefix="workbench-export-") as tmp:
        artifact = Path(tmp) / ARTIFACT
        ensemble_serving_model(models, members).save(artifact)
        loaded = keras().saving.load_model(artifact, compile=False, safe_mode=True)
        got = np.asarray(loaded([x.astype(np.float32) for x in inputs], training=False)[OUTPUT_NAME], np.float64)
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not diff <= TOLERANCE:
            raise WorkbenchError(f"the exported ensemble does not reproduce the workbench's probabilities (they "
                                 f"differ by up to {diff:.2e}, allowed {TOLERANCE:.0e}); nothing was written", fmt)
        facts = _facts(run, members, diff, len(inputs[0]), source)
        with atomic_open(target, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(artifact, ARTIFACT)
            zf.writestr("card.json", json.dumps(run.card.to_json(), indent=2))
            for j, m in enumerate(members):
                zf.writestr(f"members/{j}-{m.run_id}/card.json", json.dumps(m.card.to_json(), indent=2))
            zf.writestr("export.json", json.dumps(facts, indent=2))
            zf.writestr("README.md", _readme(facts))
    return ExportResult(target, fmt, diff, len(inputs[0]), source, time.perf_counter() - start)


def _facts(run: Run, members: list[Run], diff: float, n: int, source: str) -> dict[str, Any]:
    from core.data.preprocess import get_recipe

    out = {
        "run_id": run.run_id, "kind": "ensemble", "format": "keras", "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "class_names": run.class_names,
        "inputs": [{"name": input_name(j), "member": m.run_id, "shape": [None, m.image_size, m.image_size, 1],
                    "dtype": "float32", "range": [0, 255], "preprocessing": {
                        "id": m.preprocessing, "title": get_recipe(m.preprocessing).title,
                        "description": get_recipe(m.preprocessing).help, "baked_in": False},
                    "temperature": m.card.temperature, "tta": m.card.tta} for j, m in enumerate(members)],
        "output": {"name": OUTPUT_NAME, "shape": [None, len(run.class_names)], "dtype": "float32",
                   "meaning": "the mean of the members' calibrated class probabilities, in class_names order"},
        "verification": {"n_images": n, "source": source, "max_abs_diff": diff, "tolerance": TOLERANCE,
                         "reference": "each member's Keras model through the workbench's ModelRunner, averaged"},
    }
    if run.card.sentinels:  # they never change the probabilities: left out, and said so
        out["not_included"] = (
            "the ensemble's check models (sentinels: " + ", ".join(str(m.get("run_id")) for m in run.card.sentinels)
            + "), which only raise a warning in the workbench when their answer differs; this file returns the "
              "members' probabilities only, without the workbench's warnings")
    return out


def _readme(facts: dict[str, Any]) -> str:
    lines = [f"# Ensemble {facts['run_id']}", "",
             "One Keras file that runs every member and returns the mean of their calibrated probabilities.",
             "Research and teaching tool: not a diagnosis.", "",
             "Each member needs its own input, prepared outside the model (the preprocessing is OpenCV code):", ""]
    for i in facts["inputs"]:
        lines.append(f"- `{i['name']}`: {i['shape'][1]}×{i['shape'][2]} grayscale, {i['preprocessing']['title']} "
                     f"(`{i['preprocessing']['id']}`: {i['preprocessing']['description']})")
    lines += ["", "```python", "import keras", 'model = keras.saving.load_model("model.keras", safe_mode=True, '
              'compile=False)', "probs = model([x0, x1, ...])[\"probabilities\"]  # xj: (N, S_j, S_j, 1) float32 0..255",
              "```", "", f"Classes, in output order: {', '.join(facts['class_names'])}.", "",
              f"Verified on {facts['verification']['source']}: within {facts['verification']['max_abs_diff']:.1e} of "
              "the workbench."]
    if facts.get("not_included"):
        lines += ["", f"Not included: {facts['not_included']}."]
    return "\n".join(lines) + "\n"


def export_any(run: Run, fmt: str, out: str | Path, overwrite: bool = False) -> ExportResult:
    """:func:`core.export.bundle.export_run` for any run: an ensemble goes through :func:`export_ensemble`."""
    from core.export.bundle import export_run

    return export_ensemble(run, fmt, out, overwrite) if run.card.is_ensemble else export_run(run, fmt, out, overwrite)


def export_any_bytes(run: Run, fmt: str) -> tuple[bytes, ExportResult]:
    """:func:`core.export.bundle.export_bytes` for any run (a download button's bytes)."""
    with tempfile.TemporaryDirectory(prefix="workbench-bundle-") as tmp:
        result = export_any(run, fmt, Path(tmp) / f"{run.run_id}-{fmt}.zip")
        return result.path.read_bytes(), result

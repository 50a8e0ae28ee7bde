"""Export a registered run as a self-describing, verified bundle (a zip) in one of four formats.

The exported network is a *serving model* built around the run's classifier: the image in
(N, S, S, 1), 0..255), the run's test-time augmentation (mirror averaging, when its card says
so) and its temperature baked in, calibrated probabilities out. So every format returns the
number the workbench shows as "model probability", and no one outside has to re-apply the
temperature. The preprocessing (decoding, head crop, equalisation) cannot be baked in: it is
OpenCV code, not a network, so the bundle's card and README describe it.

Every export is verified before anything is written: the exported file is opened with the
runtime a user would use and run on held-out images; its probabilities must equal the
workbench's (the Keras model through :class:`core.inference.runner.ModelRunner`) within
:data:`TOLERANCE`. A mismatch or a converter failure raises :class:`WorkbenchError` and leaves
no file; a verified bundle is published atomically (:mod:`core.atomic`).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import check_writable
from core.errors import WorkbenchError
from core.export.formats import EXPORT_FORMATS, INPUT_NAME, OUTPUT_NAME
from core.models.runs import Run, load_model
from core.paths import check_path_text

TOLERANCE = 1e-4  # largest allowed |exported − Keras| probability on any image and class
N_VERIFY = 32  # held-out images each export is checked on


@dataclass(frozen=True)
class ExportResult:
    """A published bundle and how it was verified."""

    path: Path
    format: str
    max_abs_diff: float  # largest |exported − Keras| probability over the verification images
    n_images: int
    image_source: str  # where the verification images came from, in words
    seconds: float


def get_format(fmt: str) -> str:
    """``fmt`` when it is a registered export format; a clear error otherwise."""
    if fmt not in EXPORT_FORMATS:
        raise WorkbenchError(f"unknown export format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}",
                             "--format")
    return fmt


def bundle_target(out: str | Path, run: Run, fmt: str, overwrite: bool = False) -> Path:
    """The zip file a bundle goes to: ``out`` itself (``.zip``), or a default name inside a folder.

    Raises:
        WorkbenchError: a missing parent folder, a name not ending in .zip, or an existing file
            without ``overwrite``; checked before any conversion work.
    """
    check_path_text(out, "--out")
    target = Path(out).expanduser()
    if target.is_dir():
        target = target / f"{run.run_id}-{fmt}.zip"
    elif target.suffix.lower() != ".zip":
        raise WorkbenchError("an export is a zip file: give a path ending in .zip, or an existing folder",
                             f"--out {out}")
    if not target.parent.is_dir():
        raise WorkbenchError(f"the folder {target.parent} does not exist; create it first", f"--out {out}")
    if target.is_dir() or target.is_symlink() or (target.exists() and not target.is_file()):
        raise WorkbenchError("this name is taken by a folder, a link or a special file; choose another name",
                             f"--out {out}")
    if target.exists() and not overwrite:
        raise WorkbenchError("the file already exists; choose another name or allow overwriting (--overwrite)",
                             f"--out {target}")
    check_writable(target, f"--out {out}", is_file=True)  # before minutes of conversion, not after
    return target


def serving_model(model: Any, tta: str, temp: float) -> Any:
    """The exported network: image -> [mirror-averaged] logits -> softmax(logits / T), named output."""
    from core.lazy_tensorflow import keras

    k = keras()
    names = {layer.name for layer in model.layers}
    if "logits" not in names:
        raise WorkbenchError("the model has no 'logits' layer, so its temperature cannot be baked into an "
                             "export; models trained by this workbench always have one", model.name)
    classifier = k.Model(model.inputs, model.get_layer("logits").output, name="classifier")
    image = k.Input(tuple(model.inputs[0].shape[1:]), name=INPUT_NAME)
    logits = classifier(image)
    if tta == "hflip":  # the card's temperature was fitted on logits averaged this way
        logits = k.layers.Average(name="mirror_average")([logits, classifier(k.ops.flip(image, axis=2))])
    scaled = k.layers.Rescaling(1.0 / temp, name="temperature")(logits)
    probs = k.layers.Softmax(name=OUTPUT_NAME, dtype="float32")(scaled)
    serving = k.Model(image, {OUTPUT_NAME: probs}, name=f"{model.name}_serving")
    serving(np.zeros((1, *image.shape[1:]), np.float32), training=False)  # the ONNX exporter wants a called model
    return serving


def reference_probabilities(model: Any, images: np.ndarray, tta: str, temp: float) -> np.ndarray:
    """The workbench's own probabilities: ModelRunner logits (with TTA), then softmax(·/T)."""
    from core.inference.calibration import softmax
    from core.inference.runner import ModelRunner

    return softmax(ModelRunner(model, tta, features=False).logits(images), temp)


def verification_images(run: Run, n: int = N_VERIFY) -> tuple[np.ndarray, str]:
    """Up to ``n`` prepared held-out images for ``run`` and where they came from.

    The run's own test split (files listed in its card) first, then its validation split; when
    neither is on disk, synthetic phantom slices (core.data.demo) prepared with the run's recipe.
    """
    from core.data.preprocess import load_many, prepare_batch

    data = run.card.data
    for key, words in (("test_files", "the run's held-out test split"), ("val_files", "the run's validation split")):
        listed = [run.data_root / f for f in data.get(key) or []]
        found = [p for p in listed if p.is_file()]
        if found:
            picks = [found[int(i)] for i in np.linspace(0, len(found) - 1, min(n, len(found)))]
            try:
                return load_many(picks, run.image_size, preprocessing=run.preprocessing), f"{len(picks)} images of {words}"
            except WorkbenchError:
                continue  # an unreadable file: try the next source rather than fail the export
    from core.data.demo import DEMO_SIZE, phantom

    rng = np.random.default_rng(0)
    labels = run.class_names
    raw = np.stack([phantom(_phantom_label(labels[i % len(labels)]), rng, DEMO_SIZE) for i in range(n)])[..., None]
    return prepare_batch(raw, run.image_size, run.preprocessing), f"{n} synthetic phantom slices (no held-out files found)"


def _phantom_label(name: str) -> str:
    from core.classes import CANONICAL_CLASSES

    return name if name in CANONICAL_CLASSES else CANONICAL_CLASSES[0]


def _layer_named_in(message: str, model: Any) -> str | None:
    """The first of the model's layer names that a converter's error message mentions."""
    for name in sorted((layer.name for layer in model.layers), key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message):
            return name
    return None


def _convert(fmt: str, serving: Any, model: Any, artifact: Path, arch: str) -> None:
    """Write the artifact; a converter failure becomes a WorkbenchError naming the architecture and layer."""
    spec = EXPORT_FORMATS[fmt]
    try:
        spec.write(serving, artifact)
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise anything from ValueError to ConverterError
        text = f"{type(exc).__name__}: {exc}"
        layer = _layer_named_in(text, model)
        where = f" at layer '{layer}'" if layer else ""
        raise WorkbenchError(f"the {spec.title} converter could not convert this {arch} model{where} "
                             f"({text.splitlines()[0][:300]}); try another format", f"export {fmt}") from None


def _verify(fmt: str, artifact: Path, images: np.ndarray, expected: np.ndarray) -> float:
    """Max |exported − expected| on ``images``; raises WorkbenchError beyond :data:`TOLERANCE`."""
    spec = EXPORT_FORMATS[fmt]
    try:
        got = np.asarray(spec.load(artifact)(images.astype(np.float32)), np.float64)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot open what was written
        raise WorkbenchError(f"the exported {spec.title} model could not be run back for verification "
                             f"({type(exc).__name__}: {str(exc)[:300]}); nothing was written", fmt) from None
    if got.shape != expected.shape or not np.isfinite(got).all():
        raise WorkbenchError(f"the exported {spec.title} model returned {got.shape} values (finite: "
                             f"{bool(np.isfinite(got).all())}) where {expected.shape} were expected; nothing "
                             "was written", fmt)
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        raise WorkbenchError(f"the exported {spec.title} model does not reproduce the workbench's probabilities: "
                             f"they differ by up to {diff:.2e} on {len(images)} held-out images (allowed "
                             f"{TOLERANCE:.0e}); nothing was written", fmt)
    return diff


def export_facts(run: Run, fmt: str, diff: float, n: int, source: str) -> dict[str, Any]:
    """The bundle's ``export.json``: what the model expects, returns, and how it was verified."""
    import importlib.metadata as md

    from core.data.preprocess import get_recipe

    recipe = get_recipe(run.preprocessing)
    card, s = run.card, run.image_size
    temp = card.temperature

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "run_id": run.run_id, "arch": card.arch, "format": fmt,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "class_names": run.class_names, "image_size": s,
        "input": {"name": INPUT_NAME, "shape": [None, s, s, 1], "dtype": "float32", "range": [0, 255]},
        "output": {"name": OUTPUT_NAME, "shape": [None, len(run.class_names)], "dtype": "float32",
                   "meaning": "calibrated class probabilities, in class_names order"},
        "preprocessing": {"id": recipe.key, "title": recipe.title, "description": recipe.help,
                          "baked_in": False},
        "calibration": {"baked_in": True, "temperature": temp,
                        "source": "fitted on the run's validation images; card field results.temperature"
                        if "temperature" in card.results.written else "none was fitted for this run: T = 1"},
        "tta": card.tta,
        "verification": {"n_images": n, "source": source, "max_abs_diff": diff, "tolerance": TOLERANCE,
                         "reference": "the run's Keras model through the workbench's ModelRunner"},
        "versions": {p: version(p) for p in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime",
                                             "ai-edge-litert")},
    }


def _write_zip(target: Path, artifact: Path, fmt: str, run: Run, facts: dict[str, Any]) -> None:
    from core.atomic import atomic_open
    from core.export.readme import bundle_readme

    name = EXPORT_FORMATS[fmt].artifact
    with atomic_open(target, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        if artifact.is_dir():
            for f in sorted(p for p in artifact.rglob("*") if p.is_file()):
                zf.write(f, f"{name}/{f.relative_to(artifact).as_posix()}")
        else:
            zf.write(artifact, name)
        zf.writestr("card.json", json.dumps(run.card.to_json(), indent=2))
        zf.writestr("export.json", json.dumps(facts, indent=2))
        zf.writestr("README.md", bundle_readme(fmt, facts))


def export_run(run: Run, fmt: str, out: str | Path, overwrite: bool = False,
               images: np.ndarray | None = None, image_source: str = "images given by the caller") -> ExportResult:
    """Convert, verify and publish ``run`` as a ``fmt`` bundle (zip) at ``out``.

    Args:
        run: a usable registered run.
        fmt: a key of :data:`EXPORT_FORMATS` (keras, savedmodel, tflite, onnx).
        out: a ``.zip`` path, or an existing folder (the bundle is named after the run and format).
        overwrite: replace an existing file at ``out``.
        images: prepared (N, S, S, 1) images to verify on; default :func:`verification_images`.
    Raises:
        WorkbenchError: a bad format or target, a model that cannot be loaded or converted, or an
            export that does not reproduce the workbench's probabilities. No file is left behind.
    """
    start = time.perf_counter()
    get_format(fmt)
    target = bundle_target(out, run, fmt, overwrite)
    model = load_model(run)
    if images is None:
        images, image_source = verification_images(run)
    tta, temp = run.card.tta, run.card.temperature
    expected = reference_probabilities(model, images, tta, temp)
    arch = run.card.title
    with tempfile.TemporaryDirectory(prefix="workbench-export-") as tmp:
        artifact = Path(tmp) / EXPORT_FORMATS[fmt].artifact
        _convert(fmt, serving_model(model, tta, temp), model, artifact, arch)
        diff = _verify(fmt, artifact, images, expected)
        facts = export_facts(run, fmt, diff, len(images), image_source)
        _write_zip(target, artifact, fmt, run, facts)
    return ExportResult(target, fmt, diff, len(images), image_source, time.perf_counter() - start)


def export_bytes(run: Run, fmt: str) -> tuple[bytes, ExportResult]:
    """A verified bundle as zip bytes (for a download button); built in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="workbench-bundle-") as tmp:
        result = export_run(run, fmt, Path(tmp) / f"{run.run_id}-{fmt}.zip")
        return result.path.read_bytes(), result

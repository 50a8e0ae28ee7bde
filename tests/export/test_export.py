"""Export bundles: every format reproduces the workbench's probabilities, carries its card and
README, and a failed conversion or verification leaves no file.

The round trips use ``tiny_run`` (a 32-px custom CNN, tests/fixtures_models.py); the target
checks run without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.cli import main
from core.errors import WorkbenchError
from core.export.bundle import (
    TOLERANCE,
    bundle_target,
    export_run,
    get_format,
    verification_images,
)
from core.export.formats import EXPORT_FORMATS

FORMATS = list(EXPORT_FORMATS)


def _images(run, n: int = 6, seed: int = 3) -> np.ndarray:
    """Fresh prepared-looking inputs (not the ones the export verified on)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, run.image_size, run.image_size, 1)).astype(np.uint8)


def _unzip(bundle: Path, dest: Path) -> Path:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dest)
    return dest


# --- targets and formats (no TensorFlow) ---------------------------------------------------------

FAKE_RUN = SimpleNamespace(run_id="20260101-000000-custom_cnn-abcd")


def test_unknown_format_is_refused():
    with pytest.raises(WorkbenchError, match="unknown export format 'pdf'.*keras, savedmodel, tflite, onnx"):
        get_format("pdf")


def test_target_in_a_folder_is_named_after_run_and_format(tmp_path):
    assert bundle_target(tmp_path, FAKE_RUN, "onnx") == tmp_path / f"{FAKE_RUN.run_id}-onnx.zip"
    assert bundle_target(tmp_path / "b.zip", FAKE_RUN, "onnx") == tmp_path / "b.zip"


@pytest.mark.parametrize(("name", "message"), [
    ("missing/b.zip", "does not exist; create it first"),
    ("b.onnx", "give a path ending in .zip"),
    ("b\0.zip", "NUL character"),
])
def test_bad_targets_are_refused(tmp_path, name, message):
    with pytest.raises(WorkbenchError, match=message) as err:
        bundle_target(str(tmp_path / name), FAKE_RUN, "keras")
    assert "--out" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_overwrite(tmp_path):
    target = tmp_path / "b.zip"
    target.write_bytes(b"keep me")
    with pytest.raises(WorkbenchError, match="already exists.*--overwrite"):
        bundle_target(target, FAKE_RUN, "keras")
    assert bundle_target(target, FAKE_RUN, "keras", overwrite=True) == target
    assert target.read_bytes() == b"keep me"


def test_cli_refuses_an_unknown_format(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", "x", "--format", "pdf", "--out", str(tmp_path / "b.zip")])
    assert exc.value.code == 2
    assert "invalid choice: 'pdf'" in capsys.readouterr().err


def test_cli_refuses_an_unknown_model(tmp_path, capsys, isolated_workbench_dirs):
    isolated_workbench_dirs["models"].mkdir(parents=True)  # a registry without that run
    assert main(["export", "--model", "no-such-run", "--format", "onnx", "--out", str(tmp_path / "b.zip")]) == 2
    assert "no complete model run" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- round trips on a tiny trained model ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips_with_card_and_readme(tiny_run, tiny_predictor, tmp_path, fmt):
    result = export_run(tiny_run, fmt, tmp_path / "bundle.zip")
    assert result.path == tmp_path / "bundle.zip" and result.path.is_file()
    assert result.n_images == 32 and "held-out test split" in result.image_source
    assert 0.0 <= result.max_abs_diff <= TOLERANCE
    spec = EXPORT_FORMATS[fmt]
    with zipfile.ZipFile(result.path) as zf:
        names = zf.namelist()
        card = json.loads(zf.read("card.json"))
        facts = json.loads(zf.read("export.json"))
        readme = zf.read("README.md").decode()
    assert {"card.json", "export.json", "README.md"} <= set(names)
    assert any(n == spec.artifact or n.startswith(spec.artifact + "/") for n in names)
    assert card["class_names"] == tiny_run.class_names and card["model_sha256"] == tiny_run.card.model_sha256
    assert facts["class_names"] == tiny_run.class_names and facts["image_size"] == tiny_run.image_size
    assert facts["preprocessing"]["id"] == tiny_run.preprocessing and facts["preprocessing"]["description"]
    assert facts["calibration"]["baked_in"] is True
    assert facts["verification"]["max_abs_diff"] == pytest.approx(result.max_abs_diff)
    assert "preprocessed exactly as the card says" in readme and tiny_run.preprocessing in readme
    assert f"T = {facts['calibration']['temperature']:.4f}" in readme
    # Independently of the export's own check: the unpacked file, on images it never saw,
    # gives what Predict & Explain gives (calibrated, with the card's test-time augmentation).
    folder = _unzip(result.path, tmp_path / "unpacked")
    x = _images(tiny_run)
    got = spec.load(folder / spec.artifact)(x.astype(np.float32))
    np.testing.assert_allclose(got, tiny_predictor.predict(x).probs, atol=TOLERANCE, rtol=0)
    assert list(tmp_path.glob(".*")) == []  # no temporary left beside the bundle


@pytest.mark.slow
def test_a_mismatching_export_fails_and_leaves_no_file(tiny_run, tmp_path, extend_registry):
    spec = EXPORT_FORMATS["onnx"]

    def off_by_a_little(path):
        run_it = spec.load(path)
        return lambda x: run_it(x) + 1e-3  # a converter that drifts: still plausible probabilities

    extend_registry(EXPORT_FORMATS, dataclasses.replace(spec, load=off_by_a_little))
    with pytest.raises(WorkbenchError, match=r"does not reproduce.*1\.00e-03.*nothing was written"):
        export_run(tiny_run, "onnx", tmp_path / "bundle.zip")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_converter_failure_names_layer_and_architecture(tiny_run, tmp_path, extend_registry):
    def unsupported(model, path):
        path.write_bytes(b"half a model")
        raise ValueError("Unsupported op in layer 'stage2_conv1': no kernel")

    extend_registry(EXPORT_FORMATS, dataclasses.replace(EXPORT_FORMATS["tflite"], write=unsupported))
    with pytest.raises(WorkbenchError, match="could not convert this Custom CNN.* at layer 'stage2_conv1'"):
        export_run(tiny_run, "tflite", tmp_path / "bundle.zip")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_verification_falls_back_to_phantoms_without_held_out_files(tiny_run):
    from core.models.runs import Run

    card = tiny_run.card.replace(data={**tiny_run.card.data, "test_files": [], "val_files": []})
    images, source = verification_images(Run(tiny_run.run_id, tiny_run.path, card))
    assert images.shape == (32, tiny_run.image_size, tiny_run.image_size, 1) and images.dtype == np.uint8
    assert "synthetic phantom" in source


@pytest.mark.slow
def test_cli_exports_into_a_folder_and_refuses_to_overwrite(tiny_registry, tmp_path, capsys):
    args = ["export", "--model", tiny_registry.run_id, "--format", "keras", "--out", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["path"]) == tmp_path / f"{tiny_registry.run_id}-keras.zip"
    assert summary["max_abs_diff"] <= TOLERANCE and summary["bytes"] > 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_page_builds_and_offers_a_bundle(tiny_run, isolated_workbench_dirs, demo_root, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    from core.data.demo import DEMO_VERSION
    from core.evaluation.evaluate import EvalSet, evaluate_run
    from core.models.runs import resolve_run

    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root))
    cache, models = isolated_workbench_dirs["cache"], isolated_workbench_dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")  # the page's active dataset
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    evaluate_run(resolve_run(tiny_run.run_id), EvalSet("card_test"))  # cached: the page shows it at once
    at = AppTest.from_file(str(root / "pages" / "4_Evaluate.py"), default_timeout=120).run()
    assert not at.exception and "Export the model" in [s.value for s in at.subheader]
    before = len(at.get("download_button"))
    at.selectbox(key="evaluate_export_format").set_value("tflite").run()
    at.button(key="evaluate_export_build").click().run()
    assert not at.exception and not at.error
    assert len(at.get("download_button")) == before + 1
    assert any(c.value.startswith("Verified on 32 images") for c in at.caption)

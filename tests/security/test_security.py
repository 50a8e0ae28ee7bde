"""Security properties, each checked against the real code path:

- models load only from the registry folder, only when their sha256 matches the card, and only
  with Keras safe_mode (no Lambda layers);
- dataset folders typed in the UI must lie under the configured data roots;
- uploads are bounded (Streamlit's maxUploadSize) and never written to disk;
- DICOM patient identifiers never reach a prediction result or its exports;
- the dependency pins include the Keras safe_mode fixes, and the repository holds no secrets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, encode, smooth_image, snapshot
from test_dicom import make_dicom

from core.errors import WorkbenchError
from core.models.runs import CARD_FILE, MODEL_FILE, file_sha256, list_runs, load_model, resolve_run
from core.paths import check_under_data_roots

PATIENT = ("Doe", "Jane", "SECRET-123", "19700101", "Patient")  # what make_dicom writes into the header


def _copy_run(run, models: Path, name: str) -> Path:
    """A copy of a registered run inside ``models`` (the card still matches the model file)."""
    folder = models / name
    shutil.copytree(run.path, folder)
    return folder


# --- models: registry folder only, sha256, safe_mode ------------------------------------------------


@pytest.mark.slow  # trains the shared tiny model (tiny_run) when it runs first
def test_resolve_run_refuses_paths_outside_the_registry(isolated_workbench_dirs, tiny_run):
    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    inside = _copy_run(tiny_run, models, "inside")
    assert resolve_run("inside").path == inside.resolve()  # positive control: the check can pass

    outside = _copy_run(tiny_run, models.parent / "elsewhere", "outside")  # a complete, valid run...
    (models / "link").symlink_to(outside, target_is_directory=True)  # ...reachable through a symlink
    for attempt in (str(outside), str(outside / MODEL_FILE), "../elsewhere/outside", "link",
                    str(models / ".." / "elsewhere" / "outside")):
        with pytest.raises(WorkbenchError, match="only loaded from the registry folder") as info:
            resolve_run(attempt)
        assert info.value.source == attempt


@pytest.mark.slow  # trains the shared tiny model (tiny_run) when it runs first
def test_predictor_load_goes_through_the_registry_check(isolated_workbench_dirs, tiny_run):
    from core.inference.predict import Predictor

    with pytest.raises(WorkbenchError, match="only loaded from the registry folder"):
        Predictor.load(str(tiny_run.path))  # tiny_run lives in another folder than WORKBENCH_MODELS_DIR


@pytest.mark.slow
def test_a_tampered_model_file_is_refused(isolated_workbench_dirs, tiny_run):
    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    _copy_run(tiny_run, models, "good")
    tampered = _copy_run(tiny_run, models, "tampered")
    data = bytearray((tampered / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the zip
    (tampered / MODEL_FILE).write_bytes(bytes(data))

    assert load_model(resolve_run("good")) is not None  # positive control: an untouched copy loads
    with pytest.raises(WorkbenchError, match="does not match its model card") as info:
        load_model(resolve_run("tampered"))
    assert info.value.source == str(tampered / MODEL_FILE)


@pytest.mark.slow
def test_a_model_with_a_lambda_layer_is_refused_by_safe_mode(isolated_workbench_dirs):
    from core.lazy_tensorflow import keras

    k = keras()
    inputs = k.Input((8, 8, 1))
    x = k.layers.Lambda(lambda t: t * 2.0, name="arbitrary_code")(inputs)  # code travels with the file
    outputs = k.layers.Dense(2, name="logits")(k.layers.Flatten()(x))
    model = k.Model(inputs, outputs)

    folder = isolated_workbench_dirs["models"] / "lambda-run"
    folder.mkdir(parents=True)
    model.save(folder / MODEL_FILE)
    card = {"run_id": folder.name, "status": "complete", "created": "2026-01-01T00:00:00",
            "class_names": ["glioma", "notumor"], "image_size": 8,
            "model_sha256": file_sha256(folder / MODEL_FILE)}  # a matching card: only safe_mode stops it
    (folder / CARD_FILE).write_text(json.dumps(card))

    (run,) = list_runs()
    with pytest.raises(WorkbenchError, match="could not be loaded safely") as info:
        load_model(run)
    assert info.value.source == str(folder / MODEL_FILE)
    assert "Lambda" in info.value.reason or "safe_mode" in info.value.reason


# --- dataset folders typed in the UI --------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "brain" / "Training").mkdir(parents=True)
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(root))
    return root


def test_a_folder_under_a_data_root_is_accepted(data_root: Path):
    assert check_under_data_roots(str(data_root / "brain")) == (data_root / "brain").resolve()
    assert check_under_data_roots(f"  {data_root / 'brain' / 'Training'}  ".strip()) == (
        data_root / "brain" / "Training").resolve()


@pytest.mark.parametrize("typed", ["/etc", "/", "{root}/../..", "{root}/brain/../../outside", "{root}/link"])
def test_folders_outside_the_data_roots_are_refused(typed: str, data_root: Path):
    (data_root / "link").symlink_to("/etc", target_is_directory=True)  # a link inside may point anywhere
    typed = typed.format(root=data_root)
    with pytest.raises(WorkbenchError, match="outside the allowed data folders") as info:
        check_under_data_roots(typed)
    assert info.value.source == typed


def test_the_explorer_refuses_a_folder_outside_the_roots(data_root: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "1_Dataset_Explorer.py"), default_timeout=60).run()
    at.radio(key="explorer_source").set_value("folder").run()
    at.text_input(key="explorer_folder").set_value("/etc").run()
    at.button(key="explorer_open_folder").click().run()
    assert not at.exception
    assert any("outside the allowed data folders" in e.value for e in at.error)


# --- uploads ------------------------------------------------------------------------------------------


def test_streamlit_limits_the_upload_size():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    size = config["server"]["maxUploadSize"]
    assert isinstance(size, int) and 1 <= size <= 1024, "an explicit, bounded limit in MB"


def _new_entries(before: set[str], folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} - before


def _holds(path: Path, marker: bytes) -> bool:
    """True if a file under ``path`` (a few levels, bounded) contains ``marker`` or is named like it."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()][:200]
    for f in files:
        try:
            if marker.decode() in f.name or marker in f.read_bytes()[:50_000_000]:
                return True
        except OSError:
            continue
    return False


@pytest.mark.slow
def test_uploads_are_never_written_to_disk(tiny_predictor, isolated_workbench_dirs, tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    from core.inference.predict import predict_files

    marker = f"upload-marker-{os.getpid()}-{np.random.default_rng().integers(1 << 62)}".encode()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker.decode())
    png = encode(smooth_image(5, 48), "PNG", pnginfo=info)
    dicom = make_dicom(np.tile(np.linspace(0, 1000, 40), (40, 1)).astype(np.uint16)) + marker
    items = [(marker.decode() + ".png", png), (marker.decode() + ".dcm", dicom), ("broken.jpg", marker)]
    assert marker in png

    predict_files(tiny_predictor, [("warmup.png", encode(smooth_image(6, 48)))], gradcam=True)  # lazy TF setup
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr("tempfile.tempdir", str(private_tmp))
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    system_tmp = Path("/tmp")
    before = {"cwd": snapshot(cwd), "cache": snapshot(cache), "tmpdir": snapshot(private_tmp)}
    tmp_before = {p.name for p in system_tmp.iterdir()}

    results = predict_files(tiny_predictor, items, gradcam=True)

    assert [r.ok for r in results] == [True, True, False]
    assert {"cwd": snapshot(cwd), "cache": snapshot(cache), "tmpdir": snapshot(private_tmp)} == before
    # /tmp is shared with other processes: anything new there must at least not hold the upload.
    leaked = [n for n in _new_entries(tmp_before, system_tmp) if _holds(system_tmp / n, marker)]
    assert leaked == []


# --- DICOM patient data ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_dicom_patient_fields_never_reach_results_or_exports(tiny_predictor):
    from core.inference.predict import predict_files
    from core.reports.case_report import results_csv

    data = make_dicom(np.tile(np.linspace(0, 1000, 40), (40, 1)).astype(np.uint16), window=(500, 1000))
    assert b"Doe^Jane" in data and b"SECRET-123" in data  # the header really holds them
    (result,) = predict_files(tiny_predictor, [("slice.dcm", data)], gradcam=True)
    assert result.ok and result.meta["Modality"] == "MR"  # safe fields still come through
    as_json = json.dumps(result.to_dict())
    csv_text = results_csv([result], tiny_predictor.class_names).decode()
    for secret in PATIENT:
        assert secret not in as_json
        assert secret not in csv_text
        assert secret not in repr(result.image.meta)


# --- dependencies and the repository ------------------------------------------------------------------


def test_requirements_pin_keras_with_the_safe_mode_fixes():
    from packaging.requirements import Requirement
    from packaging.version import Version

    lines = [ln.split("#")[0].strip() for ln in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()]
    (keras_req,) = [Requirement(ln) for ln in lines if ln and Requirement(ln).name.lower() == "keras"]
    lower = [Version(s.version) for s in keras_req.specifier if s.operator in ("==", ">=", "~=", "===")]
    assert lower and min(lower) >= Version("3.15.1"), f"keras must be pinned >= 3.15.1, got '{keras_req}'"
    assert not keras_req.specifier.contains("3.15.0")

    import keras

    assert Version(keras.__version__) >= Version("3.15.1"), "the installed Keras predates the fixes"


# Split so that this file does not match itself.
SECRET_PATTERNS = {
    "AWS access key": re.compile(r"AKIA" r"[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?" r"PRIVATE KEY-----"),
    "password literal": re.compile(r"(?i)passw(?:or)?d\s*[=:]\s*['\"][^'\"\s]{4,}['\"]"),
    "token literal": re.compile(r"(?i)(?:api[_-]?key|secret[_-]?key|auth[_-]?token)\s*[=:]\s*['\"][^'\"\s]{8,}['\"]"),
}


def test_no_secrets_in_tracked_files():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    found = []
    for rel in filter(None, listed.decode().split("\0")):
        path = PROJECT_ROOT / rel
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes()
        if b"\0" in text[:8000]:
            continue  # binary
        decoded = text.decode("utf-8", errors="replace")
        found += [f"{rel}: {name}" for name, pattern in SECRET_PATTERNS.items() if pattern.search(decoded)]
    assert found == []


def test_the_secret_patterns_can_fire():
    samples = {"AWS access key": "key = " + "AKIA" + "ABCDEFGHIJKLMNOP",
               "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
               "password literal": 'password = "' + 'hunter22"',
               "token literal": 'API_KEY="' + 'abcdef123456"'}
    for name, sample in samples.items():
        assert SECRET_PATTERNS[name].search(sample), name

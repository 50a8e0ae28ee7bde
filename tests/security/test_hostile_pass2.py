"""Issue 23, the second hostile pass: each defect class as a failing test first, then its cases
counted in the bad-input corpus (tests/security/test_bad_input_corpus.py imports the dicts below).

1 Markdown injection through names (page sweep)   7 over-long paths
2 DICOM decompression bombs                        8 truncated JPEGs
3 damaged side files of a run                      9 read-only destinations
4 card updates under a lock                       10 refused zips: no server path, nothing left behind
5 class order bound to the model                  11 a DICOM that is not MR
"""

from __future__ import annotations

import functools
import io
import json
import re
import resource
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, encode, smooth_image, write_class_tree
from test_dicom import make_dicom

from core.data.imageio import MAX_PIXELS, decode_image
from core.errors import WorkbenchError

# ============================================================================================
# 1. Markdown injection: names the user does not control are shown literally on every page
# ============================================================================================

PHISHING = "[Session expired - sign in again](https://evil.example/login)"
BANNER = ":red-background[X] Your account is locked"
PIXEL = "![x](https://evil.example/a.png)"
#: Where a hostile name can come from -> the text planted there.
HOSTILE_SOURCES: dict[str, str] = {
    "?dataset= in a shared link": f"/data/{PHISHING} {BANNER} {PIXEL}",
    "uploaded zip name": f"{PHISHING} {BANNER} {PIXEL}.zip",
    "dataset name in a model card": f"{PHISHING} {PIXEL}",
    "training job title (other sessions see it)": f"Custom CNN on {PHISHING} {BANNER}",
    "error message of a failed job": f"could not read {PIXEL} {PHISHING}",
}
PAGE_FILES = ["0_Overview.py", "1_Dataset_Explorer.py", "2_Augmentation_Preview.py", "3_Train.py",
              "4_Evaluate.py", "5_Predict_and_Explain.py"]


def live_markdown(text: str) -> list[str]:
    """The parts of ``text`` Markdown would turn into a link, an image or a coloured banner.

    Escaped characters (``\\[``) are literal, so they are dropped first; what is left of a
    planted name must hold no link target, image or directive.
    """
    bare = re.sub(r"\\.", "", text)
    return re.findall(r"\]\(https?:|!\[|:red-background\[|evil\.example", bare)


def _page(name: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PROJECT_ROOT / "pages" / name), default_timeout=180)


@pytest.fixture
def hostile_world(isolated_workbench_dirs: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """A data root, a zip dataset with a hostile name, a run whose card names a hostile dataset and a
    failed training job with a hostile title and error (in the process-wide job registry)."""
    import streamlit as st
    from test_registry import fake_run

    import core.jobs as jobs
    from core.data.datasets import open_zip
    from core.jobs import JobRegistry

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    root = tmp_path / "data"
    write_class_tree(root / "ok", {"glioma": 2, "notumor": 2})
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(root))
    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    fake_run(models / "run-1", class_names=["glioma", "notumor"],
             data={"name": HOSTILE_SOURCES["dataset name in a model card"], "synthetic": False})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label in ("glioma", "notumor"):
            for i in range(2):
                zf.writestr(f"{label}/{i}.png", encode(smooth_image(i + (label == "glioma") * 5)))
    zip_ds = open_zip(buf.getvalue(), HOSTILE_SOURCES["uploaded zip name"])

    registry = JobRegistry()
    monkeypatch.setattr(jobs, "_REGISTRY", registry)
    st.cache_resource.clear()

    def fail(job):
        raise WorkbenchError(HOSTILE_SOURCES["error message of a failed job"], "training")

    registry.wait(registry.submit("train", HOSTILE_SOURCES["training job title (other sessions see it)"], fail), 10)
    return {"zip": zip_ds}


def _shown(at) -> list[str]:
    from test_page_sweep import visible_text

    return visible_text(at) + [str(t.value) for t in at.get("toast")]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGE_FILES)
def test_no_page_renders_a_hostile_name_as_markdown(page: str, hostile_world: dict) -> None:
    shown: list[str] = []
    # (a) the address names a hostile dataset path; (b) the session's dataset is a zip with a hostile name
    at = _page(page)
    at.query_params["dataset"] = HOSTILE_SOURCES["?dataset= in a shared link"]
    at.run()
    assert not at.exception, at.exception
    shown += _shown(at)
    at = _page(page)
    at.session_state["active_dataset"] = hostile_world["zip"]
    at.run()
    assert not at.exception, at.exception
    shown += _shown(at)
    live = {text[:120]: live_markdown(text) for text in shown if live_markdown(text)}
    assert not live, live
    planted = "".join(shown)
    assert "evil\\.example" in planted, "the hostile name is shown (escaped) somewhere on this page"


# ============================================================================================
# 2. DICOM decompression bombs: the header is checked before any pixel is decoded
# ============================================================================================

BOMB_SIDE = 6400


def _dicom_dataset(rows: int, cols: int, *, frames: int = 1, samples: int = 1, modality: str = "MR"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["bomb"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 if samples == 3 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def _save(ds, syntax=None) -> bytes:
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@functools.cache
def deflated_bomb() -> bytes:
    """A 6400x6400 16-bit DICOM (82 MB of pixels) deflated to a few hundred KB."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _dicom_dataset(BOMB_SIDE, BOMB_SIDE)
    ds.PixelData = bytes(BOMB_SIDE * BOMB_SIDE * 2)
    return _save(ds, DeflatedExplicitVRLittleEndian)


@functools.cache
def rle_bomb() -> bytes:
    """The same picture RLE-compressed: its header declares 6400x6400, the file is small."""
    from pydicom.uid import RLELossless

    ds = _dicom_dataset(BOMB_SIDE, BOMB_SIDE)
    ds.compress(RLELossless, np.zeros((BOMB_SIDE, BOMB_SIDE), np.uint16))
    return _save(ds)


def many_frames() -> bytes:
    """12 frames of 64x64: only the middle one is decoded (and it must be that frame)."""
    ds = _dicom_dataset(64, 64, frames=12)
    stack = np.zeros((12, 64, 64), np.uint16)
    for k in range(12):
        stack[k, :, 5 * k:5 * k + 5] = 1000  # frame k is bright in columns 5k..5k+4 only
    ds.PixelData = stack.tobytes()
    return _save(ds)


def tiny_colour() -> bytes:
    ds = _dicom_dataset(1, 1, samples=3)
    ds.PixelData = bytes([200, 10, 10, 0])  # one RGB pixel, padded to even length
    return _save(ds)


def header_lies() -> bytes:
    """Rows x Columns of 60000x60000 declared with a handful of pixel bytes."""
    ds = _dicom_dataset(60000, 60000)
    ds.PixelData = bytes(64)
    return _save(ds)


#: name -> (builder, reason the refusal must give)
DICOM_BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "deflated 6400x6400": (deflated_bomb, r"too large \(6400×6400 pixels.*decompression bomb"),
    "RLE 6400x6400": (rle_bomb, r"too large \(6400×6400 pixels.*decompression bomb"),
    "header declares 60000x60000": (header_lies, r"too large \(60000×60000 pixels"),
    "1x1 colour DICOM": (tiny_colour, r"too small \(1×1 pixels"),
}


@pytest.mark.parametrize("name", list(DICOM_BOMBS))
def test_dicom_bomb_is_refused_from_its_header(name: str) -> None:
    build, reason = DICOM_BOMBS[name]
    data = build()
    assert len(data) < 2_000_000
    with pytest.raises(WorkbenchError) as info:
        decode_image(data, f"{name}.dcm")
    assert re.search(reason, info.value.reason), info.value.reason


@pytest.mark.parametrize("name", ["deflated 6400x6400", "RLE 6400x6400"])
def test_dicom_bomb_is_refused_before_decoding(name: str) -> None:
    data = DICOM_BOMBS[name][0]()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with pytest.raises(WorkbenchError, match="decompression bomb"):
            decode_image(data, "bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(data) + 4_000_000, f"{peak / 1e6:.1f} MB allocated for a refused header"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 40, f"peak resident memory grew by {grown_mb:.0f} MB"


def test_multi_frame_dicom_decodes_only_the_middle_frame() -> None:
    img = decode_image(many_frames(), "cine.dcm")
    assert img.meta["frames"] == 12 and img.pixels.shape == (64, 64)
    bright = np.flatnonzero(img.pixels.mean(axis=0) > 128)
    assert bright.tolist() == list(range(30, 35)), bright  # frame 6 of 0..11


def test_dicom_pixel_limit_is_the_image_limit() -> None:
    from core.data.dicom import check_dicom_header

    ds = _dicom_dataset(6400, 6400)
    with pytest.raises(WorkbenchError, match=f"limit is {MAX_PIXELS // 10**6} megapixels"):
        check_dicom_header(ds, "x.dcm")
    check_dicom_header(_dicom_dataset(512, 512, frames=200), "cine.dcm")  # a long series of ordinary slices is fine


# ============================================================================================
# 11. A DICOM whose Modality is not MR gets a warning in plain words
# ============================================================================================

def _us_dicom() -> bytes:
    data = make_dicom()
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Modality = "US"
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_non_mr_dicom_is_flagged() -> None:
    from core.data.dicom import modality_warning

    assert modality_warning(decode_image(make_dicom(), "mr.dcm")) is None
    words = modality_warning(decode_image(_us_dicom(), "us.dcm"))
    assert words and "ultrasound" in words.lower() and "not an MRI" in words
    assert modality_warning(decode_image(encode(smooth_image(1)), "x.png")) is None  # no header: nothing to say


@pytest.mark.slow
def test_predict_warns_about_a_non_mr_dicom(tiny_predictor) -> None:
    from core.inference.predict import predict_files

    mr, us = predict_files(tiny_predictor, [("mr.dcm", make_dicom()), ("us.dcm", _us_dicom())])
    assert mr.ok and us.ok
    assert not any("MRI" in w for w in mr.warnings)
    assert any("not an MRI" in w for w in us.warnings), us.warnings


# ============================================================================================
# 8. Truncated JPEGs are refused with a reason (and counted unreadable by scans)
# ============================================================================================

def _jpeg(side: int = 96, progressive: bool = False, mode: str = "RGB") -> bytes:
    from PIL import Image

    gray = smooth_image(4, side)
    pixels = np.stack([gray] * 3, axis=-1) if mode == "RGB" else gray
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95, progressive=progressive)
    return buf.getvalue()


def _cut(data: bytes, share: float, end_marker: bool = True) -> bytes:
    return data[: int(len(data) * share)] + (b"\xff\xd9" if end_marker else b"")


TRUNCATED_JPEGS: dict[str, Callable[[], bytes]] = {
    "first 40 % + end marker (colour)": lambda: _cut(_jpeg(), 0.4),
    "first 40 % + end marker (grayscale)": lambda: _cut(_jpeg(mode="L"), 0.4),
    "first 80 % + end marker": lambda: _cut(_jpeg(), 0.8),
    "first 40 %, no end marker": lambda: _cut(_jpeg(), 0.4, end_marker=False),
}


@pytest.mark.parametrize("name", list(TRUNCATED_JPEGS))
def test_truncated_jpeg_is_refused(name: str, tmp_path: Path) -> None:
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset

    with pytest.raises(WorkbenchError, match=r"truncated"):
        decode_image(TRUNCATED_JPEGS[name](), "cut.jpg")
    write_class_tree(tmp_path / "d", {"glioma": 2, "notumor": 2})
    (tmp_path / "d" / "glioma" / "cut.jpg").write_bytes(TRUNCATED_JPEGS[name]())
    report = scan_dataset(open_folder(tmp_path / "d"), workers=1, use_cache=False)
    assert any(p.endswith("cut.jpg") and "truncated" in why for p, why in report.unreadable())


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("progressive", [False, True])
def test_whole_jpeg_still_decodes(mode: str, progressive: bool) -> None:
    assert decode_image(_jpeg(mode=mode, progressive=progressive), "whole.jpg").pixels.shape == (96, 96)


# ============================================================================================
# 7. Over-long paths: a plain refusal, no OSError, no server path
# ============================================================================================

def _long(root: Path) -> str:
    return str(root / ("a" * 300))


def test_long_dataset_path_in_the_address_is_refused_plainly(tmp_path: Path, monkeypatch) -> None:
    from core.data.datasets import open_folder
    from core.paths import check_under_data_roots

    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path))
    for call in (check_under_data_roots, open_folder):
        with pytest.raises(WorkbenchError, match="too long") as info:
            call(_long(tmp_path))
        assert str(tmp_path) not in str(info.value), str(info.value)


LONG_PATH_CLI: dict[str, list[str]] = {
    "predict --model <300 chars>": ["predict", "{tmp}/x.png", "--model", "m" * 300],
    "predict --model <5000-char path>": ["predict", "{tmp}/x.png", "--model", "/".join(["m" * 200] * 25)],
    "scan <300-char folder>": ["scan", "{tmp}/" + "d" * 300],
    "predict --gradcam <300-char folder>": ["predict", "{tmp}/x.png", "--gradcam", "{tmp}/" + "g" * 300],
    "export --out <300-char file>": ["export", "--model", "run-1", "--format", "keras", "--out", "{tmp}/" + "e" * 300 + ".zip"],
}


@pytest.mark.parametrize("name", list(LONG_PATH_CLI))
def test_long_path_on_the_command_line_is_one_plain_line(name: str, tmp_path: Path, isolated_workbench_dirs,
                                                         capsys) -> None:
    from test_registry import fake_run

    from core.cli import main

    isolated_workbench_dirs["models"].mkdir(parents=True, exist_ok=True)
    fake_run(isolated_workbench_dirs["models"] / "run-1")
    (tmp_path / "x.png").write_bytes(encode(smooth_image(1)))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in LONG_PATH_CLI[name]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "too long" in err, err
    assert "Traceback" not in err and str(isolated_workbench_dirs["models"]) not in err


@pytest.mark.slow
def test_long_dataset_path_in_the_address_on_every_page(tmp_path: Path, isolated_workbench_dirs, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path))
    for page in PAGE_FILES[:5]:  # Predict does not use the active dataset
        at = _page(page)
        at.query_params["dataset"] = _long(tmp_path)
        at.run()
        assert not at.exception, (page, at.exception)
        text = " ".join(_shown(at))
        assert "too long" in text and str(tmp_path) not in text.replace("\\", ""), page


# ============================================================================================
# 10. A refused zip names no server path and leaves nothing behind
# ============================================================================================

def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png(seed: int) -> bytes:
    return encode(smooth_image(seed))


REFUSED_AFTER_EXTRACTION: dict[str, tuple[Callable[[], bytes], str]] = {
    "one class folder": (lambda: _zip({f"scans/glioma/{i}.png": _png(i) for i in range(3)}),
                         r"at least two classes"),
    "unknown class folders": (lambda: _zip({"x/cats/1.png": _png(1), "x/dogs/2.png": _png(2)}),
                              r"unknown class folder"),
    "no images at all": (lambda: _zip({"notes/readme.txt": b"hello"}), r"class"),
}


@pytest.mark.parametrize("name", list(REFUSED_AFTER_EXTRACTION))
def test_refused_zip_names_no_server_path_and_leaves_nothing(name: str, isolated_workbench_dirs) -> None:
    from core.data.datasets import open_zip

    build, reason = REFUSED_AFTER_EXTRACTION[name]
    with pytest.raises(WorkbenchError) as info:
        open_zip(build(), "upload.zip")
    message = str(info.value)
    assert re.search(reason, message), message
    cache = isolated_workbench_dirs["cache"]
    assert str(cache) not in message and "uploads" not in message, message
    assert not [p for p in (cache / "uploads").rglob("*")], "extracted files are removed"


# ============================================================================================
# 3. Damaged side files: one plain warning, the feature off, never a traceback
# ============================================================================================

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 40):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _ood_other_size(path: Path) -> None:
    np.savez_compressed(path, means=np.zeros((2, 7)), precision=np.eye(7), maha_threshold=1.0, energy_threshold=1.0)


def _card_hashes(folder: Path, value) -> None:
    card = json.loads((folder / "card.json").read_text())
    card["data"]["train_hashes"] = value
    (folder / "card.json").write_text(json.dumps(card))


#: name -> (damage(run folder), feature that is switched off)
SIDE_FILE_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "conformal.npz truncated": (lambda f: _truncate(f / "conformal.npz"), "prediction sets"),
    "conformal.npz bit-flipped": (lambda f: _flip(f / "conformal.npz"), "prediction sets"),
    "ood.npz garbage": (lambda f: (f / "ood.npz").write_bytes(b"not numpy at all" * 40), "unfamiliar-image check"),
    "ood.npz truncated": (lambda f: _truncate(f / "ood.npz"), "unfamiliar-image check"),
    "ood.npz of another feature size": (lambda f: _ood_other_size(f / "ood.npz"), "unfamiliar-image check"),
    "train_hashes not hex": (lambda f: _card_hashes(f, ["zz" * 64]), "training-copy check"),
    "train_hashes of the wrong length": (lambda f: _card_hashes(f, ["ab" * 5]), "training-copy check"),
}


@pytest.fixture
def damaged_copy(tiny_run, isolated_workbench_dirs) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        from core.inference.conformal import CONFORMAL_FILE

        models = isolated_workbench_dirs["models"]
        models.mkdir(parents=True, exist_ok=True)
        folder = models / tiny_run.run_id
        shutil.copytree(tiny_run.path, folder)
        assert (folder / CONFORMAL_FILE).is_file() and (folder / "ood.npz").is_file()
        SIDE_FILE_DAMAGE[name][0](folder)
        return folder
    return make


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIDE_FILE_DAMAGE))
def test_damaged_side_file_disables_one_feature(name: str, damaged_copy, capsys, tmp_path: Path) -> None:
    from core.cli import main
    from core.inference.predict import Predictor, predict_files
    from core.models.runs import resolve_run

    folder = damaged_copy(name)
    feature = SIDE_FILE_DAMAGE[name][1]
    predictor = Predictor(resolve_run(folder.name))
    assert any(feature in w for w in predictor.disabled), predictor.disabled
    result = predict_files(predictor, [("x.png", encode(smooth_image(2)))])[0]
    assert result.ok, result.error
    (tmp_path / "x.png").write_bytes(encode(smooth_image(2)))
    assert main(["predict", str(tmp_path / "x.png"), "--model", folder.name]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and feature in out.err and out.err.count(feature) == 1, out.err


# ============================================================================================
# 4. Card updates are read-modify-write under a lock: a concurrent writer's fields survive
# ============================================================================================

def test_card_update_keeps_what_another_writer_stored_meanwhile(isolated_workbench_dirs) -> None:
    import threading

    from test_registry import fake_run

    from core.models.runs import resolve_run, update_card

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    fake_run(models / "r")
    stale = resolve_run("r")  # what `calibrate` read at its start
    update_card(resolve_run("r"), evaluation={"macro_f1": 0.9, "eval_set": "card_test"})  # stored meanwhile
    update_card(stale, results={**stale.card.results.to_json(), "temperature": 1.7})  # calibrate ends
    card = resolve_run("r").card
    assert card.temperature == 1.7 and dict(card.evaluation) == {"macro_f1": 0.9, "eval_set": "card_test"}

    # Eight writers at once, each adding its own evaluation to the section it read: all survive.
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            update_card(stale, evaluations={**stale.card.evaluations, f"set{i}:x": {"macro_f1": i / 10}})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    card = resolve_run("r").card
    assert set(card.evaluations) == {f"set{i}:x" for i in range(8)}
    assert card.temperature == 1.7 and card.evaluation["macro_f1"] == 0.9


def test_two_processes_updating_one_card_keep_both_fields(isolated_workbench_dirs) -> None:
    import subprocess
    import sys

    from test_registry import fake_run

    from core.models.runs import resolve_run

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    fake_run(models / "r")
    script = ("import sys; from core.models.runs import resolve_run, update_card; r = resolve_run('r'); "
              "[update_card(r, evaluations={**r.card.evaluations, f'{sys.argv[1]}{i}:x': {'n': i}}) for i in range(20)]")
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], cwd=PROJECT_ROOT) for tag in "ab"]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(resolve_run("r").card.evaluations) == 40


# ============================================================================================
# 5. Swapped class order in a card is detected and refused
# ============================================================================================

def _swap(folder: Path) -> None:
    card = json.loads((folder / "card.json").read_text())
    names = card["class_names"]
    names[0], names[1] = names[1], names[0]
    (folder / "card.json").write_text(json.dumps(card))


@pytest.mark.slow
def test_swapped_class_order_is_refused_everywhere(tiny_run, isolated_workbench_dirs, capsys, tmp_path) -> None:
    from core.cli import main
    from core.inference.predict import Predictor
    from core.models.runs import resolve_run

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    folder = models / tiny_run.run_id
    shutil.copytree(tiny_run.path, folder)
    assert resolve_run(folder.name).card.class_order_sha256, "new cards bind the class order to the model"
    _swap(folder)
    with pytest.raises(WorkbenchError, match="class order"):
        Predictor(resolve_run(folder.name))
    (tmp_path / "x.png").write_bytes(encode(smooth_image(2)))
    for args in (["predict", str(tmp_path / "x.png"), "--model", folder.name],
                 ["calibrate", "--model", folder.name, "--conformal-only"],
                 ["export", "--model", folder.name, "--format", "keras", "--out", str(tmp_path / "e.zip")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "class order" in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "e.zip").exists()


def test_old_card_without_the_binding_is_checked_against_conformal_npz(tmp_path: Path) -> None:
    from core.inference.conformal import CONFORMAL_FILE, ConformalCalibration
    from core.models.card import ModelCard
    from core.models.class_binding import check_class_order
    from core.models.run import Run

    folder = tmp_path / "old"
    folder.mkdir()
    cal = ConformalCalibration.fit(np.eye(2)[[0, 1, 0, 1]], np.array([0, 1, 0, 1]), ["glioma", "notumor"], "lac")
    cal.save(folder / CONFORMAL_FILE)
    check_class_order(Run("old", folder, ModelCard(class_names=["glioma", "notumor"], model_sha256="x" * 64)))
    with pytest.raises(WorkbenchError, match="class order"):
        check_class_order(Run("old", folder, ModelCard(class_names=["notumor", "glioma"], model_sha256="x" * 64)))


def test_committed_default_model_still_loads_its_card() -> None:
    from core.models.class_binding import check_class_order
    from core.models.runs import resolve_run

    run = resolve_run("20261201-135406-custom_cnn-a305", PROJECT_ROOT / "models")
    check_class_order(run)  # its card predates the binding: checked against conformal.npz


# ============================================================================================
# 9. Read-only destinations: checked before the work; a late failure keeps the result visible
# ============================================================================================

#: A folder every process here is refused writing into, root included (sysfs).
READ_ONLY = Path("/sys/harden-probe")
READ_ONLY_CASES: dict[str, list[str]] = {
    "export --out into a read-only folder": ["export", "--model", "run-1", "--format", "keras", "--out",
                                             "/sys/model.zip"],
    "predict --gradcam into a read-only folder": ["predict", "{tmp}/x.png", "--gradcam", "/sys"],
}


def test_unwritable_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    from core.atomic import check_writable

    if not Path("/sys").is_dir():
        pytest.skip("no sysfs here")
    with pytest.raises(WorkbenchError, match="cannot be written"):
        check_writable("/sys", "--gradcam")
    with pytest.raises(WorkbenchError, match="cannot be written"):
        check_writable(READ_ONLY / "deeper" / "x.zip", "--out", is_file=True)
    check_writable(tmp_path / "new" / "deeper", "--gradcam")  # creatable: fine
    assert not list(tmp_path.iterdir()), "the probe leaves nothing behind"


@pytest.mark.parametrize("name", list(READ_ONLY_CASES))
def test_read_only_destination_is_refused_before_loading_the_model(name: str, tmp_path: Path,
                                                                   isolated_workbench_dirs, capsys) -> None:
    from test_registry import fake_run

    from core.cli import main

    isolated_workbench_dirs["models"].mkdir(parents=True, exist_ok=True)
    fake_run(isolated_workbench_dirs["models"] / "run-1")  # b"weights": loading it would fail differently
    (tmp_path / "x.png").write_bytes(encode(smooth_image(1)))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in READ_ONLY_CASES[name]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot be written" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_evaluate_shows_its_result_when_the_card_cannot_be_written(tiny_run, isolated_workbench_dirs, monkeypatch,
                                                                    capsys) -> None:
    import core.models.runs as registry
    from core.cli import main

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)

    def refuse(path, card):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(registry, "write_card", refuse)
    assert main(["evaluate", "--model", tiny_run.run_id, "--no-cache"]) == 0
    out = capsys.readouterr()
    assert "accuracy" in out.out and "not stored" in out.out + out.err, out
    assert "Traceback" not in out.err and str(models) not in out.out + out.err

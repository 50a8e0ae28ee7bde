"""The bad-input corpus, in one place: every hostile or odd input the workbench must survive.

Everything is generated here (nothing is downloaded). Each case is its own test id and states
the reason it must be refused with. A refusal is always a WorkbenchError that names the file
and the reason, never another exception, and the other inputs of the same batch still work.
Some files decode fine although they look odd (16-bit, CMYK, RGBA): they are here to prove
they are *not* refused, and are converted correctly.

Entry points: core.imageio.decode_image, core.predict.predict_files (a batch with good files),
core.safezip.extract_zip / core.datasets.open_zip, core.datasets.open_folder, and the Predict
page (AppTest) with all bad images uploaded together with a good one.
"""

from __future__ import annotations

import functools
import io
import re
import stat
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, encode, smooth_image, write_class_tree
from PIL import Image
from test_dicom import _syntax_without_decoder, make_dicom
from test_imageio import crafted_png
from test_safezip import make_zip

from core.datasets import open_folder, open_zip
from core.errors import WorkbenchError
from core.imageio import decode_image
from core.safezip import ZipLimits, extract_zip

SIDE = 40


def _gray_rgb() -> np.ndarray:
    gray = smooth_image(7, SIDE)
    return np.stack([gray, gray, gray], axis=-1)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(smooth_image(i, SIDE)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = encode(_gray_rgb(), "JPEG", quality=95)
    return data[: len(data) // 2]


def _dicom_compressed() -> bytes:
    return make_dicom(transfer_syntax=_syntax_without_decoder())


# --------------------------------------------------------------------------------------------
# Image files: refused (name -> builder, reason the message must give)
# --------------------------------------------------------------------------------------------

BAD_IMAGES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.jpg": (lambda: b"", r"empty \(0 bytes\)"),
    "notes.jpg": (lambda: b"Clinical notes, not a picture.\n" * 8, r"not an image file"),
    "truncated.jpg": (_truncated_jpeg, r"truncated or corrupt"),
    "bomb60k.png": (lambda: crafted_png(60_000, 60_000), r"too large .*decompression bomb"),
    "one-pixel.png": (lambda: encode(np.zeros((1, 1), np.uint8)), r"too small \(1×1 pixels"),
    "animated.gif": (_animated_gif, r"unsupported image format GIF|frames"),
    "no-pixels.dcm": (lambda: make_dicom(with_pixels=False), r"no image \(no pixel data\)"),
    "compressed.dcm": (_dicom_compressed, r"compressed as .* cannot decode"),
}


def _good_batch() -> list[tuple[str, bytes]]:
    return [("good-1.png", encode(smooth_image(1, SIDE))), ("good-2.jpg", encode(_gray_rgb(), "JPEG"))]


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_is_refused_with_file_and_reason(name: str, tmp_path: Path) -> None:
    build, reason = BAD_IMAGES[name]
    data = build()
    path = tmp_path / name
    path.write_bytes(data)
    for source, label in ((data, name), (path, str(path))):
        with pytest.raises(WorkbenchError) as info:
            decode_image(source, name if isinstance(source, bytes) else None)
        assert info.value.source == label
        assert str(info.value).startswith(f"{label}: ")
        assert re.search(reason, info.value.reason), info.value.reason


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_in_a_batch_leaves_the_others_working(name: str, tiny_predictor) -> None:
    from core.predict import predict_files

    build, reason = BAD_IMAGES[name]
    good = _good_batch()
    results = predict_files(tiny_predictor, [good[0], (name, build()), good[1]])
    assert [r.file for r in results] == ["good-1.png", name, "good-2.jpg"]
    bad = results[1]
    assert not bad.ok and bad.label is None and re.search(reason, bad.error), bad.error
    for r in (results[0], results[2]):
        assert r.ok and r.label in tiny_predictor.class_names and 0 < r.confidence <= 1


def test_decompression_bomb_fails_fast_without_allocating() -> None:
    data = crafted_png(60_000, 60_000)  # 3.6 GB of pixels claimed in a ~100-byte file
    assert len(data) < 200
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(WorkbenchError, match="decompression bomb"):
            decode_image(data, "bomb60k.png")
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 5_000_000, f"{peak / 1e6:.0f} MB allocated for a refused header"


# --------------------------------------------------------------------------------------------
# Image files that look odd but must decode (and how)
# --------------------------------------------------------------------------------------------

RAMP16 = np.tile(np.linspace(1000, 3000, SIDE).round().astype(np.uint16), (SIDE, 1))


def _check_16bit(pixels: np.ndarray) -> None:
    expected = np.rint((RAMP16.astype(float) - 1000) * 255 / 2000)
    assert np.abs(pixels.astype(int) - expected).max() <= 1, "linear rescale of min..max onto 0..255"
    # Truncation would clip everything to 255 (Pillow's convert) or wrap around (astype).
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > SIDE // 2


def _check_cmyk(pixels: np.ndarray) -> None:
    original = _gray_rgb()[..., 0].astype(float)
    assert np.corrcoef(original.ravel(), pixels.astype(float).ravel())[0, 1] > 0.95
    assert np.abs(original - pixels).mean() < 12  # not inverted, not shifted


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_gray_rgb()).convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _rgba() -> np.ndarray:
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, : SIDE // 2, 3] = 255  # left half opaque white, right half transparent white
    return rgba


def _check_rgba(pixels: np.ndarray) -> None:
    assert pixels[:, : SIDE // 2].min() == 255 and pixels[:, SIDE // 2:].max() == 0  # composited on black


ODD_IMAGES: dict[str, tuple[Callable[[], bytes], str, Callable[[np.ndarray], None]]] = {
    "16bit.png": (lambda: encode(RAMP16), "I;16", _check_16bit),
    "cmyk.jpg": (_cmyk_jpeg, "CMYK", _check_cmyk),
    "rgba.png": (lambda: encode(_rgba()), "RGBA", _check_rgba),
}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_odd_image_decodes_to_uint8(name: str) -> None:
    build, mode, check = ODD_IMAGES[name]
    img = decode_image(build(), name)
    assert img.source_mode.startswith(mode)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (SIDE, SIDE)
    check(img.pixels)


@pytest.mark.slow
def test_odd_images_are_predicted_in_a_batch_with_bad_ones(tiny_predictor) -> None:
    from core.predict import predict_files

    items = [(name, build()) for name, (build, _, _) in ODD_IMAGES.items()]
    items += [(name, build()) for name, (build, _) in BAD_IMAGES.items()]
    results = predict_files(tiny_predictor, items)
    assert [r.ok for r in results] == [True] * len(ODD_IMAGES) + [False] * len(BAD_IMAGES)


# --------------------------------------------------------------------------------------------
# Zip uploads: refused before a byte is written
# --------------------------------------------------------------------------------------------


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/glioma/a.png", encode(smooth_image(1)))
        link = zipfile.ZipInfo("data/glioma/passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def _many_files_zip(n: int = 100_000) -> bytes:
    """n one-byte stored entries (~11 MB, ~3 s): far above the entry limit, tiny in bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(zipfile.ZipInfo(f"d/glioma/{i:06d}.png", (2026, 1, 1, 0, 0, 0)), b"x")
    return buf.getvalue()


def _good_entries() -> dict[str, bytes]:
    return {f"scans/Training/{label}/{i}.png": encode(smooth_image(10 * k + i))
            for k, label in enumerate(("glioma", "notumor")) for i in range(2)}


BAD_ZIPS: dict[str, tuple[Callable[[], bytes], str]] = {
    "traversal.zip": (lambda: make_zip({**_good_entries(), "scans/../../evil.png": b"pwned"}),
                      r"escapes its folder \('scans/\.\./\.\./evil\.png'\)"),
    "absolute.zip": (lambda: make_zip({**_good_entries(), "/etc/cron.d/evil": b"pwned"}),
                     r"absolute path '/etc/cron\.d/evil'"),
    "symlink.zip": (_symlink_zip, r"symbolic link 'data/glioma/passwd\.png'"),
    "bomb.zip": (lambda: make_zip({"bomb/glioma/zeros.png": b"\0" * (20 * 1024**2)}),
                 r"compresses \d+:1, which looks like a zip bomb"),
    "100k-files.zip": (functools.cache(_many_files_zip),
                       rf"holds 100000 entries; the limit is {ZipLimits().max_files}"),
}


@pytest.mark.parametrize("name", list(BAD_ZIPS))
def test_bad_zip_is_refused_before_extraction(name: str, tmp_path: Path, isolated_workbench_dirs: dict) -> None:
    build, reason = BAD_ZIPS[name]
    data = build()
    dest = tmp_path / "uploads"
    dest.mkdir()
    start = time.perf_counter()
    with pytest.raises(WorkbenchError) as info:
        extract_zip(data, dest, name)
    assert time.perf_counter() - start < 10.0, "refused from the central directory, not by inflating"
    assert info.value.source == name and str(info.value).startswith(f"{name}: ")
    assert re.search(reason, info.value.reason), info.value.reason
    assert list(dest.iterdir()) == [], "nothing is written for a refused zip"
    assert not (tmp_path / "evil.png").exists()

    # The same through the Explorer's entry point; a good zip uploaded next still opens.
    with pytest.raises(WorkbenchError, match=reason):
        open_zip(data, name)
    uploads = isolated_workbench_dirs["cache"] / "uploads"
    assert [p for p in uploads.iterdir()] == []
    ds = open_zip(make_zip(_good_entries()), "good.zip")
    assert ds.class_names == ["glioma", "notumor"] and len(ds.files) == 4


# --------------------------------------------------------------------------------------------
# Dataset folders
# --------------------------------------------------------------------------------------------

BAD_FOLDERS: dict[str, tuple[dict[str, int], str]] = {
    "one-class": ({"Training/glioma": 3}, r"at least two classes; found 1 \(glioma\)"),
    "unknown-classes": ({"glioma": 2, "cats": 2, "Dogs": 1},
                        r"unknown class folder\(s\) 'Dogs', 'cats'; expected folders named after"),
}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_bad_dataset_folder_is_refused(name: str, tmp_path: Path) -> None:
    layout, reason = BAD_FOLDERS[name]
    write_class_tree(tmp_path / name, layout)
    with pytest.raises(WorkbenchError) as info:
        open_folder(tmp_path / name)
    assert Path(info.value.source).name in (name, "Training")  # the folder the problem is in
    assert str(info.value).startswith(f"{info.value.source}: ")
    assert re.search(reason, info.value.reason), info.value.reason

    write_class_tree(tmp_path / "good", {"glioma": 2, "no_tumor": 2})  # a sibling still opens
    assert open_folder(tmp_path / "good").class_names == ["glioma", "notumor"]


# --------------------------------------------------------------------------------------------
# The Predict page with every bad image uploaded next to a good one
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_predict_page_shows_one_error_per_bad_file(tiny_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py"), default_timeout=180).run()
    good_name, good_bytes = _good_batch()[0]
    uploads = [(good_name, good_bytes, "image/png")]
    uploads += [(name, build(), "application/octet-stream") for name, (build, _) in BAD_IMAGES.items()]
    at.file_uploader(key="predict_uploads").set_value(uploads)
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == len(BAD_IMAGES), errors
    for error, (name, (_, reason)) in zip(errors, BAD_IMAGES.items()):
        assert error.startswith("This file could not be analysed") and re.search(reason, error), (name, error)
    table = at.dataframe[0].value
    assert list(table["file"]) == [good_name, *BAD_IMAGES]
    assert table["class"].astype(bool).tolist() == [True] + [False] * len(BAD_IMAGES)
    assert table["error"].astype(bool).tolist() == [False] + [True] * len(BAD_IMAGES)
    assert any(m.value.startswith("### ") for m in at.markdown), "the good file's class and confidence"

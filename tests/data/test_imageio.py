"""core.data.imageio: every supported file becomes a 2-D uint8 array; every bad file a clear error."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data.imageio import colourfulness, decode_image, is_dicom_bytes, scale_to_uint8
from core.errors import WorkbenchError

SIDE = 32


def _gray(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (SIDE, SIDE + 8), dtype=np.uint8)  # non-square catches w/h swaps


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height`` but whose data is one tiny IDAT: decoding it
    for real would allocate width*height bytes, so only a header check can be fast."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------- supported inputs


def _variants() -> dict[str, bytes]:
    gray = _gray()
    rgb = np.stack([gray, np.roll(gray, 3, 0), 255 - gray], axis=-1)
    rgba = np.concatenate([rgb, np.full(gray.shape + (1,), 200, np.uint8)], axis=-1)
    return {
        "gray.png": _save(Image.fromarray(gray), "PNG"),
        "rgb.png": _save(Image.fromarray(rgb), "PNG"),
        "rgba.png": _save(Image.fromarray(rgba), "PNG"),
        "palette.png": _save(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette-transparent.png": _save(Image.fromarray(rgb).convert("P"), "PNG", transparency=0),
        "16bit.png": _save(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "gray.jpg": _save(Image.fromarray(gray), "JPEG"),
        "rgb.jpg": _save(Image.fromarray(rgb), "JPEG"),
        "cmyk.jpg": _save(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "rgb.bmp": _save(Image.fromarray(rgb), "BMP"),
        "gray.tif": _save(Image.fromarray(gray), "TIFF"),
        "rgb.tif": _save(Image.fromarray(rgb), "TIFF", compression="tiff_lzw"),
        "1bit.png": _save(Image.fromarray(gray > 128), "PNG"),
    }


VARIANTS = _variants()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_supported_variant_decodes_to_2d_uint8(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(VARIANTS[name])
    for source in (VARIANTS[name], path):
        img = decode_image(source, name=name)
        assert img.pixels.ndim == 2
        assert img.pixels.dtype == np.uint8
        assert img.pixels.shape == (SIDE, SIDE + 8)
        assert img.size == (SIDE + 8, SIDE)
        assert img.pixels.flags.owndata or img.pixels.base is not None  # a real array, not a view of PIL
        assert img.pixels.max() > img.pixels.min(), "content was lost in the conversion"


def test_16bit_png_uses_the_full_range() -> None:
    ramp = np.tile(np.linspace(1000, 3000, SIDE + 8).astype(np.uint16), (SIDE, 1))
    img = decode_image(_save(Image.fromarray(ramp), "PNG"), "ramp16.png")
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert np.all(np.diff(img.pixels[0].astype(int)) >= 0), "the ramp must stay monotonic"


def test_grayscale_copy_matches_the_gray_original() -> None:
    gray = _gray(3)
    as_rgb = np.repeat(gray[..., None], 3, axis=-1)
    a = decode_image(_save(Image.fromarray(gray), "PNG"), "a.png").pixels
    b = decode_image(_save(Image.fromarray(as_rgb), "PNG"), "b.png").pixels
    np.testing.assert_array_equal(a, b)


def test_colourfulness_is_zero_for_gray_stored_as_rgb_and_high_for_colour() -> None:
    gray = _gray(4)
    gray_rgb = np.repeat(gray[..., None], 3, axis=-1)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    colour[: SIDE // 2, :, 0] = 255  # a saturated red half
    colour[: SIDE // 2, :, 1:] = 0
    g = decode_image(_save(Image.fromarray(gray_rgb), "PNG"), "g.png")
    c = decode_image(_save(Image.fromarray(colour), "PNG"), "c.png")
    assert g.colourfulness < 1.0
    assert c.colourfulness > 50.0
    assert decode_image(_save(Image.fromarray(gray), "PNG"), "l.png").colourfulness == 0.0


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, : SIDE // 2, 3] = 255  # left half opaque white, right half transparent white
    px = decode_image(_save(Image.fromarray(rgba), "PNG"), "alpha.png").pixels
    assert px[:, : SIDE // 2].min() == 255
    assert px[:, SIDE // 2 :].max() == 0


def test_decoding_does_not_modify_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.png"
    path.write_bytes(VARIANTS["rgb.png"])
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    decode_image(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_array_helpers_do_not_modify_their_input() -> None:
    values = np.linspace(-5, 5, 100).reshape(10, 10)
    copy = values.copy()
    out = scale_to_uint8(values)
    np.testing.assert_array_equal(values, copy)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    rgb = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    rgb_copy = rgb.copy()
    colourfulness(rgb)
    np.testing.assert_array_equal(rgb, rgb_copy)


def test_scale_to_uint8_clips_and_handles_constant_input() -> None:
    np.testing.assert_array_equal(scale_to_uint8(np.array([0.0, 5.0, 10.0]), 2.0, 8.0), [0, 128, 255])
    np.testing.assert_array_equal(scale_to_uint8(np.full((3, 3), 7.0)), np.zeros((3, 3), np.uint8))


def test_is_dicom_bytes() -> None:
    assert is_dicom_bytes(b"\0" * 128 + b"DICM" + b"rest")
    assert not is_dicom_bytes(b"\0" * 128 + b"DICX")
    assert not is_dicom_bytes(b"DICM")


# ---------------------------------------------------------------------------- error paths


def _gif_animated() -> bytes:
    frames = [Image.fromarray(_gray(i)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _tiff_multipage() -> bytes:
    frames = [Image.fromarray(_gray(i)) for i in range(2)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


BAD_INPUTS = {
    "empty.png": (b"", "empty"),
    "notes.jpg": (b"These are my clinical notes, not a picture.\n" * 4, "not an image"),
    "truncated.jpg": (VARIANTS["rgb.jpg"][: len(VARIANTS["rgb.jpg"]) // 2], "truncated"),
    "truncated.png": (VARIANTS["gray.png"][: len(VARIANTS["gray.png"]) // 2], "truncated"),
    "header-only.png": (VARIANTS["gray.png"][:60], "truncated"),
    "huge60k.png": (crafted_png(60_000, 60_000), "too large"),
    "huge30k.png": (crafted_png(30_000, 30_000), "too large"),
    "big8k.png": (crafted_png(8_000, 8_000), "too large"),  # above our limit, below Pillow's
    "tiny.png": (_save(Image.new("L", (1, 1)), "PNG"), "too small"),
    "strip.png": (_save(Image.new("L", (200, 8)), "PNG"), "too small"),
    "animated.gif": (_gif_animated(), "unsupported image format GIF"),
    "pages.tif": (_tiff_multipage(), "frames"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_workbench_error_naming_file_and_reason(name: str, tmp_path: Path) -> None:
    data, reason = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(data)
    for source in (path, data):
        start = time.perf_counter()
        with pytest.raises(WorkbenchError) as info:
            decode_image(source, name=name)
        assert time.perf_counter() - start < 2.0, "a hostile header must be refused without decoding"
        assert info.value.source == name
        assert str(info.value).startswith(name)
        assert reason in info.value.reason


def test_error_names_the_path_when_no_name_is_given(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(WorkbenchError, match="empty") as info:
        decode_image(path)
    assert info.value.source == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="does not exist") as info:
        decode_image(tmp_path / "nowhere.png")
    assert "nowhere.png" in str(info.value)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "scans.png"
    folder.mkdir()
    with pytest.raises(WorkbenchError, match="folder") as info:
        decode_image(folder)
    assert "scans.png" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_permissions(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(VARIANTS["gray.png"])
    path.chmod(0)
    try:
        with pytest.raises(WorkbenchError, match="permission denied") as info:
            decode_image(path)
        assert "locked.png" in str(info.value)
    finally:
        path.chmod(0o644)


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.data.imageio

    monkeypatch.setattr(core.data.imageio, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.png"
    path.write_bytes(VARIANTS["gray.png"])
    with pytest.raises(WorkbenchError, match="too large"):
        decode_image(path)


# ---------------------------------------------------------------------------- fuzzing

# database=None: no .hypothesis/ folder in the working tree; failures print their example.
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_workbench_error(data: bytes, name: str) -> None:
    try:
        img = decode_image(data, name=name)
    except WorkbenchError as exc:
        assert exc.source == name and exc.reason
        return
    assert img.pixels.ndim == 2 and img.pixels.dtype == np.uint8


@FUZZ
@given(data=st.binary(max_size=2048), name=st.sampled_from(["f.png", "f.jpg", "f", "f.bmp", "f.tif"]))
def test_fuzz_random_bytes_only_raise_workbench_error(data: bytes, name: str) -> None:
    _decode_or_workbench_error(data, name)


SEEDS = {
    k: VARIANTS[k] for k in ("gray.png", "rgb.png", "16bit.png", "gray.jpg", "rgb.jpg", "rgb.tif", "rgb.bmp")
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF EXIF
@FUZZ
@given(
    seed_name=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(1, 10**6)),
)
def test_fuzz_mutated_images_only_raise_workbench_error(seed_name: str, edits: list, cut: int | None) -> None:
    data = bytearray(SEEDS[seed_name])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _decode_or_workbench_error(bytes(data), seed_name)

"""core.data.dicom: synthetic DICOM slices written with pydicom, decoded through decode_image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from core.data.imageio import decode_image
from core.errors import WorkbenchError

SIDE = 32


def make_dicom(
    pixels: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    with_pixels: bool = True,
    preamble: bool = True,
) -> bytes:
    """Bytes of a minimal MR DICOM file with patient identifiers set (to check they stay hidden)."""
    pixels = np.arange(SIDE * SIDE, dtype=np.uint16).reshape(SIDE, SIDE) if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["fixed"])  # same bytes every run
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "SECRET-123"
    ds.PatientBirthDate = "19700101"
    ds.SeriesDescription = "T1 axial"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if with_pixels:
        if transfer_syntax == ExplicitVRLittleEndian:
            ds.PixelData = pixels.astype(np.uint16).tobytes()
        else:  # encapsulated but bogus: there is no decoder for it here anyway
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([b"\x00\x01" * 64])
            ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=preamble)
    return buf.getvalue()


def _ramp() -> np.ndarray:
    """Values 0..1023 along x, constant along y."""
    return np.tile(np.linspace(0, 1023, SIDE).round().astype(np.uint16), (SIDE, 1))


def test_monochrome2_window_maps_edges_to_black_and_white() -> None:
    center, width = 500.0, 400.0
    values = np.full((SIDE, SIDE), 500, np.uint16)
    values[:, 0] = 300  # c - w/2
    values[:, 1] = 700  # c + w/2
    values[:, 2] = 100  # below the window
    values[:, 3] = 1000  # above the window
    img = decode_image(make_dicom(values, window=(center, width)), "win.dcm")
    assert img.source_format == "DICOM"
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (SIDE, SIDE)
    assert (img.pixels[:, 0] == 0).all()
    assert (img.pixels[:, 1] == 255).all()
    assert (img.pixels[:, 2] == 0).all() and (img.pixels[:, 3] == 255).all()
    assert abs(int(img.pixels[0, 10]) - 128) <= 1  # the centre is mid-gray
    assert img.meta["window"] == "500/400"


def test_monochrome1_is_inverted() -> None:
    ramp = _ramp()
    m2 = decode_image(make_dicom(ramp, window=(512, 1024)), "m2.dcm").pixels
    m1 = decode_image(make_dicom(ramp, photometric="MONOCHROME1", window=(512, 1024)), "m1.dcm").pixels
    np.testing.assert_array_equal(m1, 255 - m2)
    assert m1[0, 0] > m1[0, -1], "in MONOCHROME1 low values are bright"


def test_rescale_slope_and_intercept_are_applied_before_the_window() -> None:
    stored = np.full((SIDE, SIDE), 100, np.uint16)
    stored[:, :4] = 0
    # real value = 2 * stored - 100 -> 100 and -100; a window of 0±100 maps them to 255 and 0.
    img = decode_image(make_dicom(stored, window=(0, 200), slope=2.0, intercept=-100.0), "lut.dcm")
    assert (img.pixels[:, :4] == 0).all()
    assert (img.pixels[:, 4:] == 255).all()
    # Without the modality LUT the stored values 0/100 sit at 127/191 of that window, not 0/255.


def test_no_window_uses_the_auto_window() -> None:
    img = decode_image(make_dicom(_ramp()), "auto.dcm")
    assert img.meta["window"].startswith("auto")
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert np.all(np.diff(img.pixels[0].astype(int)) >= 0)


def test_meta_holds_no_patient_identifiers() -> None:
    img = decode_image(make_dicom(_ramp()), "meta.dcm")
    assert img.meta["Modality"] == "MR"
    flat = repr(img.meta)
    for secret in ("PatientName", "PatientID", "PatientBirthDate", "Doe", "SECRET-123", "19700101"):
        assert secret not in flat


def test_missing_pixel_data_is_a_workbench_error() -> None:
    with pytest.raises(WorkbenchError, match="no pixel data") as info:
        decode_image(make_dicom(with_pixels=False), "empty.dcm")
    assert info.value.source == "empty.dcm"


@pytest.mark.parametrize(
    "syntax",
    [JPEG2000Lossless, RLELossless, JPEGLSLossless, JPEGLosslessSV1],
    ids=["j2k", "rle", "jls", "jpegll"],
)
def test_compressed_pixels_that_cannot_be_decoded_are_a_workbench_error(syntax: str) -> None:
    with pytest.raises(WorkbenchError) as info:
        decode_image(make_dicom(transfer_syntax=syntax), "compressed.dcm")
    assert info.value.source == "compressed.dcm"
    # Either "cannot decode" (no plugin here) or "corrupt" (a plugin exists; our pixels are bogus).
    assert "cannot decode" in info.value.reason or "corrupt" in info.value.reason


def _syntax_without_decoder() -> str:
    from pydicom.pixels import get_decoder

    for syntax in (JPEGLSLossless, JPEGLosslessSV1, HTJ2KLossless):
        if not get_decoder(syntax).is_available:
            return syntax
    pytest.skip("every compressed syntax we try has a decoder installed here")


def test_compression_without_decoder_says_so_and_names_it() -> None:
    syntax = _syntax_without_decoder()
    with pytest.raises(WorkbenchError) as info:
        decode_image(make_dicom(transfer_syntax=syntax), "packed.dcm")
    assert "cannot decode" in info.value.reason
    assert pydicom.uid.UID(syntax).name in info.value.reason
    assert "corrupt" not in info.value.reason  # a missing plugin is not a damaged file


def test_dicom_without_extension_is_detected_by_magic(tmp_path: Path) -> None:
    path = tmp_path / "IM000001"
    path.write_bytes(make_dicom(_ramp(), window=(512, 1024)))
    img = decode_image(path)
    assert img.source_format == "DICOM"
    assert img.source_mode == "MONOCHROME2"


def test_dcm_suffix_without_preamble_still_decodes() -> None:
    data = make_dicom(_ramp(), window=(512, 1024), preamble=False)
    assert data[128:132] != b"DICM"
    assert decode_image(data, "nopreamble.dcm").pixels.shape == (SIDE, SIDE)


def test_too_small_dicom_is_refused() -> None:
    with pytest.raises(WorkbenchError, match="too small"):
        decode_image(make_dicom(np.zeros((4, 4), np.uint16)), "small.dcm")


def test_garbage_with_dcm_suffix_is_a_workbench_error() -> None:
    with pytest.raises(WorkbenchError) as info:
        decode_image(b"definitely not a DICOM file" * 10, "junk.dcm")
    assert info.value.source == "junk.dcm"


def test_decoding_leaves_the_bytes_alone() -> None:
    data = make_dicom(_ramp(), window=(512, 1024))
    copy = bytes(bytearray(data))
    decode_image(data, "same.dcm")
    assert data == copy
    assert pydicom.dcmread(io.BytesIO(data)).PatientName == "Doe^Jane"


VALID = make_dicom(_ramp(), window=(512, 1024))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about invalid values
@settings(max_examples=300, deadline=None, database=None)
@example(edits=[(136, 65)], cut=None)  # meta group length VR 'UL' -> 'AL': NotImplementedError
@example(edits=[(136, 0)], cut=None)  # -> BytesLengthException while parsing the meta group
@given(
    edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(132, len(VALID))),
)
def test_fuzz_mutated_dicom_only_raises_workbench_error(edits: list, cut: int | None) -> None:
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    data = bytes(data[:cut] if cut else data)
    try:
        img = decode_image(data, "fuzz.dcm")
    except WorkbenchError as exc:
        assert exc.source == "fuzz.dcm"
        return
    assert img.pixels.ndim == 2 and img.pixels.dtype == np.uint8

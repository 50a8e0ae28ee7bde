"""Odd images that used to give wrong results (issue 13, defect 11).

- Pixel values that are NaN or infinite (float DICOM, an overflowing rescale, a float TIFF) are
  refused: any window over them gives a made-up picture (all black -> "glioma 99.6 %").
- The EXIF orientation of a JPEG/PNG is applied: the model sees the slice upright.
- Only coded DICOM header fields reach the JSON and the PDF, never free text.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from test_dicom import make_dicom

from core.data.imageio import decode_image
from core.errors import WorkbenchError

SIDE = 32


def float_dicom(values: np.ndarray) -> bytes:
    """A minimal MR slice holding 32-bit float pixels (Float Pixel Data)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["float"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.astype(np.float32).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def float_tiff(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(buf, format="TIFF")
    return buf.getvalue()


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 1000, SIDE), (SIDE, 1))


def _with(values: np.ndarray, where: slice, value: float) -> np.ndarray:
    out = values.copy()
    out[where] = value
    return out


NON_FINITE = {
    "float-dicom-all-nan.dcm": lambda: float_dicom(np.full((SIDE, SIDE), np.nan)),
    "float-dicom-all-inf.dcm": lambda: float_dicom(np.full((SIDE, SIDE), np.inf)),
    "float-dicom-some-inf.dcm": lambda: float_dicom(_with(_ramp(), np.s_[:4], -np.inf)),
    "dicom-rescale-overflow.dcm": lambda: make_dicom(slope=1e308, intercept=0, window=(0, 100)),
    "float-tiff-nan.tif": lambda: float_tiff(_with(_ramp(), np.s_[5:9], np.nan)),
}


@pytest.mark.parametrize("name", list(NON_FINITE))
def test_non_finite_pixels_are_refused(name):
    data = NON_FINITE[name]()
    with pytest.raises(WorkbenchError, match="not numbers \\(NaN or infinity\\)") as info:
        decode_image(data, name)
    assert info.value.source == name


def test_a_finite_float_dicom_still_decodes():
    img = decode_image(float_dicom(_ramp()), "float.dcm")
    assert img.pixels.dtype == np.uint8 and img.pixels[:, 0].max() < 10 and img.pixels[:, -1].min() > 245


# --- EXIF orientation --------------------------------------------------------------------------------------

def _asymmetric() -> np.ndarray:
    """A bright block in the top-left corner only: any rotation or mirror moves it."""
    img = np.full((40, 60), 30, np.uint8)
    img[:10, :15] = 230
    return img


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation, upright", [
    (6, lambda a: np.rot90(a, -1)),  # stored sideways: turn 90° clockwise
    (8, lambda a: np.rot90(a, 1)),
    (3, lambda a: np.rot90(a, 2)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied(fmt, orientation, upright):
    stored = _asymmetric()
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    pixels = decode_image(buf.getvalue(), f"phone.{fmt.lower()}").pixels
    expected = upright(stored)
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(int) - expected).mean() < 4


def test_image_without_orientation_is_unchanged():
    buf = io.BytesIO()
    Image.fromarray(_asymmetric()).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image(buf.getvalue(), "plain.png").pixels, _asymmetric())


# --- DICOM header: coded fields only -------------------------------------------------------------------------

def _dicom_with_free_text() -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom()), force=True)
    ds.StudyDescription = "Brain MRI for Jane Doe, 12 Elm St"
    ds.ProtocolName = "DOE^JANE routine"
    ds.BodyPartExamined = "Doe^Jane head"  # not a code string: left out
    ds.MRAcquisitionType = "2D"
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = "5"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_only_coded_dicom_fields_are_read_out():
    meta = decode_image(_dicom_with_free_text(), "slice.dcm").meta
    text = repr(meta)
    for secret in ("T1 axial", "Jane", "Doe", "Elm", "routine"):
        assert secret not in text, (secret, meta)
    assert meta["Modality"] == "MR" and meta["MRAcquisitionType"] == "2D"
    assert meta["PixelSpacing"] == "[0.5, 0.5]" and meta["SliceThickness"] == "5"
    assert "BodyPartExamined" not in meta and "SeriesDescription" not in meta

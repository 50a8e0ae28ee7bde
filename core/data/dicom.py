"""DICOM slices to the canonical grayscale array: modality LUT, VOI LUT/window, MONOCHROME1."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np

from core.data.pixels import DecodedImage, colourfulness, scale_to_uint8
from core.errors import WorkbenchError

#: Coded header fields that may be shown: code strings (capitals, digits, space, underscore, at
#: most 16 characters, as DICOM's CS) and numbers. Free text (SeriesDescription, StudyDescription,
#: ProtocolName, ...) is never read out: sites type patient names into it.
CODED_FIELDS = ("Modality", "BodyPartExamined", "MRAcquisitionType", "PhotometricInterpretation")
NUMERIC_FIELDS = ("SliceThickness", "PixelSpacing", "MagneticFieldStrength", "Rows", "Columns")
SAFE_FIELDS = CODED_FIELDS + NUMERIC_FIELDS
_CODE = re.compile(r"[A-Z0-9 _]{1,16}")


def safe_header(ds: Any) -> dict[str, str]:
    """The coded fields of a DICOM header; a value that is not in its coded form is left out."""
    out = {}
    for key in CODED_FIELDS:
        value = str(ds.get(key, "") or "").strip()
        if _CODE.fullmatch(value):
            out[key] = value
    for key in NUMERIC_FIELDS:
        value = ds.get(key)
        if value is None:
            continue
        try:
            many = hasattr(value, "__iter__") and not isinstance(value, str | bytes)  # e.g. PixelSpacing
            numbers = [float(v) for v in (value if many else [value])]
        except (TypeError, ValueError):
            continue
        if numbers and all(np.isfinite(numbers)):
            out[key] = str(value)
    return out


def decode_dicom(data: bytes, label: str) -> DecodedImage:
    """Decode DICOM bytes; raise WorkbenchError for missing pixels or unsupported compression."""
    try:
        return _decode_dicom(data, label)
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom parses header values lazily and raises
        # many types (NotImplementedError, BytesLengthException, ...) on a damaged header.
        raise WorkbenchError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", label) from None


def _decode_dicom(data: bytes, label: str) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"not a readable DICOM file ({exc})", label) from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise WorkbenchError("the DICOM file holds no image (no pixel data)", label)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files written without meta are implicit little endian by definition of the standard.
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ts = ds.file_meta.TransferSyntaxUID
    if not _can_decode(ts):
        # pydicom 3 reports a missing plugin as a RuntimeError at decode time; check up front so
        # the user reads "cannot decode this compression", not "corrupt".
        raise _unsupported_compression(ts, label)
    try:
        arr = ds.pixel_array
    except NotImplementedError:
        raise _unsupported_compression(ts, label) from None
    except Exception as exc:  # noqa: BLE001 - pixel handlers raise many types on bad data
        raise WorkbenchError(f"the DICOM pixel data is corrupt ({type(exc).__name__}: {exc})", label) from None

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[frames // 2]  # the middle slice of a multi-frame object
    meta: dict[str, Any] = safe_header(ds)
    meta["frames"] = frames

    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour DICOM (e.g. a screenshot)
        rgb = scale_to_uint8(arr[..., :3])
        gray = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        return DecodedImage(gray, "DICOM", photometric, colourfulness(rgb), meta)
    if arr.ndim != 2:
        raise WorkbenchError(f"unexpected DICOM pixel shape {arr.shape}", label)
    h, w = arr.shape
    if min(h, w) < 16:
        raise WorkbenchError(f"the image is too small ({w}×{h} pixels)", label)

    values = apply_modality_lut(arr, ds).astype(np.float64)
    _check_finite(values, label)
    gray, meta["window"] = _window(ds, values)
    if photometric == "MONOCHROME1":  # high values are dark in MONOCHROME1
        gray = 255 - gray
    return DecodedImage(gray, "DICOM", photometric, 0.0, meta)


def _window(ds: Any, values: np.ndarray) -> tuple[np.ndarray, str]:
    """8-bit pixels through the file's VOI LUT, its linear window, or a robust auto-window; and which."""
    from pydicom.pixels import apply_voi_lut

    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if "VOILUTSequence" in ds:
        return scale_to_uint8(apply_voi_lut(values, ds, index=0).astype(np.float64)), "VOI LUT"
    if center is not None and width is not None and width > 0:
        # The DICOM linear window (PS3.3 C.11.2.1.2): [c - w/2, c + w/2] maps onto full range.
        return scale_to_uint8(values, center - width / 2, center + width / 2), f"{center:g}/{width:g}"
    lo, hi = np.percentile(values, [0.5, 99.5])  # robust auto-window
    return (scale_to_uint8(values, float(lo), float(hi if hi > lo else values.max())),
            "auto (0.5-99.5 percentile)")


def _check_finite(values: np.ndarray, label: str) -> None:
    """Refuse pixel values that are NaN or infinite: any window over them gives a made-up picture."""
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise WorkbenchError(f"{bad} of the {values.size} pixel values are not numbers (NaN or infinity); the "
                             "image cannot be shown or classified reliably", label)


def _unsupported_compression(transfer_syntax: object, label: str) -> WorkbenchError:
    return WorkbenchError(
        f"the image is compressed as '{getattr(transfer_syntax, 'name', transfer_syntax)}', which this "
        "installation cannot decode; export it uncompressed or install a decoder (pylibjpeg / GDCM)",
        label,
    )


def _can_decode(transfer_syntax: object) -> bool:
    """True if pydicom has a working decoder (plugin dependencies installed) for the syntax."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:  # no decoder exists at all (unknown or private syntax)
        return False


def _first(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]

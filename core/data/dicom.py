"""DICOM slices to the canonical grayscale array: modality LUT, VOI LUT/window, MONOCHROME1."""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

import numpy as np

from core.data.pixels import MAX_PIXELS, MIN_SIDE, DecodedImage, colourfulness, scale_to_uint8
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
    from pydicom.pixels import apply_modality_lut, pixel_array
    from pydicom.uid import ImplicitVRLittleEndian

    ds = _read_dataset(data, label)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise WorkbenchError("the DICOM file holds no image (no pixel data)", label)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files written without meta are implicit little endian by definition of the standard.
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ts = ds.file_meta.TransferSyntaxUID
    check_dicom_header(ds, label)  # before a single pixel is decoded: compressed data can be a bomb
    if not can_decode(ts):
        # pydicom 3 reports a missing plugin as a RuntimeError at decode time; check up front so
        # the user reads "cannot decode this compression", not "corrupt".
        raise unsupported_compression_error(ts, label)
    frames = _int(ds.get("NumberOfFrames"), 1) or 1
    try:
        # Only the kept frame (the middle slice of a multi-frame object) is decoded.
        arr = pixel_array(ds, index=frames // 2 if frames > 1 else None)
    except NotImplementedError:
        raise unsupported_compression_error(ts, label) from None
    except Exception as exc:  # noqa: BLE001 - pixel handlers raise many types on bad data
        raise WorkbenchError(f"the DICOM pixel data is corrupt ({type(exc).__name__}: {exc})", label) from None

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    meta: dict[str, Any] = safe_header(ds)
    meta["frames"] = frames

    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour DICOM (e.g. a screenshot); its size was checked
        rgb = scale_to_uint8(arr[..., :3])
        gray = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        return DecodedImage(gray, "DICOM", photometric, colourfulness(rgb), meta)
    if arr.ndim != 2:
        raise WorkbenchError(f"unexpected DICOM pixel shape {arr.shape}", label)
    h, w = arr.shape
    if min(h, w) < 16:
        raise WorkbenchError(f"the image is too small ({w}×{h} pixels)", label)

    values = apply_modality_lut(arr, ds).astype(np.float64)
    check_finite_pixels(values, label)
    gray, meta["window"] = apply_window(ds, values)
    if photometric == "MONOCHROME1":  # high values are dark in MONOCHROME1
        gray = 255 - gray
    return DecodedImage(gray, "DICOM", photometric, 0.0, meta)


#: Inflating a deflated file's header never needs more than this (the pixels come after it).
HEADER_BYTES = 1 << 20
MAX_FRAMES = 10_000  # far beyond any MR series stored as one multi-frame object
#: Modality codes (DICOM PS3.3 C.7.3.1.1.1) in words, for the "not an MRI" warning.
MODALITY_WORDS = {"CT": "a CT scan", "US": "an ultrasound image", "CR": "an X-ray (CR)", "DX": "an X-ray (DX)",
                  "MG": "a mammogram", "PT": "a PET scan", "NM": "a nuclear-medicine image", "XA": "an angiogram",
                  "OT": "an image of another kind (OT)", "SC": "a screen capture (SC)", "OP": "an eye photograph",
                  "ES": "an endoscopy image", "SM": "a microscopy slide"}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return -1  # not a number: refused by the header check


def check_dicom_header(ds: Any, label: str) -> None:
    """Refuse a DICOM whose header declares an image the workbench would not accept as a PNG.

    Rows × Columns (× samples) is held to the pixel limit of every other image
    (:data:`core.data.imageio.MAX_PIXELS`) and to the minimum side; the frame count and bit depth
    to sane ranges. Runs before decoding, so a small RLE or deflated file that declares 6400×6400
    is refused without allocating its pixels.

    Raises:
        WorkbenchError: a size, frame count or bit depth out of range, or missing.
    """
    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    frames = _int(ds.get("NumberOfFrames"), 1) or 1
    samples = _int(ds.get("SamplesPerPixel"), 1)
    bits = _int(ds.get("BitsAllocated"), 16)
    if rows <= 0 or cols <= 0:
        raise WorkbenchError("the DICOM header gives no valid image size (Rows, Columns)", label)
    if rows * cols * max(samples, 1) > MAX_PIXELS:
        raise WorkbenchError(f"the image is too large ({cols}×{rows} pixels; the limit is {MAX_PIXELS // 10**6} "
                             "megapixels) and may be a decompression bomb", label)
    if min(rows, cols) < MIN_SIDE:
        raise WorkbenchError(f"the image is too small ({cols}×{rows} pixels; at least {MIN_SIDE}×{MIN_SIDE} needed)",
                             label)
    if not 1 <= frames <= MAX_FRAMES:
        raise WorkbenchError(f"the DICOM header declares {frames} frames (at most {MAX_FRAMES} are accepted)", label)
    if samples not in (1, 3, 4) or bits not in (1, 8, 16, 32, 64):
        raise WorkbenchError(f"the DICOM header declares {samples} samples of {bits} bits per pixel, which is not a "
                             "valid image layout", label)


def _read_dataset(data: bytes, label: str) -> Any:
    """The parsed DICOM, with a deflated body inflated under a cap derived from its own header.

    pydicom inflates a deflated file whole before reading a tag, so a 100 KB file would become
    gigabytes; here only the first megabyte is inflated, the header checked, and then at most
    what that header's pixels need.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        if is_deflated_header(data):
            return _read_deflated(data, label)
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except WorkbenchError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, zlib.error) as exc:
        raise WorkbenchError(f"not a readable DICOM file ({exc})", label) from None


def is_deflated_header(data: bytes) -> bool:
    """True if the file meta names the deflated transfer syntax (1.2.840.10008.1.2.1.99)."""
    return b"1.2.840.10008.1.2.1.99" in data[:4096]


def _read_deflated(data: bytes, label: str) -> Any:
    import pydicom
    from pydicom.dataset import FileDataset
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble  # no public part reader

    fp = io.BytesIO(data)
    preamble = read_preamble(fp, True)
    meta = _read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") != pydicom.uid.DeflatedExplicitVRLittleEndian:
        return pydicom.dcmread(io.BytesIO(data), force=True)  # the UID was elsewhere in the meta
    meta_end = fp.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(data[meta_end:], HEADER_BYTES)
    header = read_dataset(io.BytesIO(head), False, True, stop_when=lambda tag, vr, length: tag == 0x7FE00010)
    check_dicom_header(header, label)
    rows, cols = _int(header.get("Rows")), _int(header.get("Columns"))
    frames = _int(header.get("NumberOfFrames"), 1) or 1
    samples, bits = _int(header.get("SamplesPerPixel"), 1), _int(header.get("BitsAllocated"), 16)
    cap = rows * cols * frames * samples * max(bits // 8, 1) + HEADER_BYTES  # the pixels plus a header's worth
    rest = inflater.decompress(inflater.unconsumed_tail, cap - len(head) + 1)
    if len(head) + len(rest) > cap:
        raise WorkbenchError("the deflated DICOM inflates to more than its header's image needs and may be a "
                             "decompression bomb", label)
    body = read_dataset(io.BytesIO(head + rest), False, True)
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # inflated: plain explicit little endian
    return FileDataset(label, body, preamble=preamble, file_meta=meta, is_implicit_VR=False, is_little_endian=True)


def modality_warning(image: DecodedImage) -> str | None:
    """A plain warning when a DICOM's header says it is not an MR image (None for MR or no header)."""
    modality = (image.meta or {}).get("Modality") if image.source_format == "DICOM" else None
    if not modality or modality == "MR":
        return None
    what = MODALITY_WORDS.get(modality, f"an image of another kind ({modality})")
    return (f"The DICOM header says this is {what}, not an MRI scan; the model only learned from MRI "
            "slices, so its answer means little here.")


def apply_window(ds: Any, values: np.ndarray) -> tuple[np.ndarray, str]:
    """8-bit pixels through the file's VOI LUT, its linear window, or a robust auto-window; and which.

    Args:
        ds: the pydicom dataset the values came from (its window and VOI LUT fields are read).
        values: the pixel values after the modality LUT, as float64.

    Returns:
        The uint8 image and a short description of the window used (shown in the image's details).
    """
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


def check_finite_pixels(values: np.ndarray, label: str) -> None:
    """Refuse pixel values that are NaN or infinite: any window over them gives a made-up picture.

    Raises:
        WorkbenchError: naming ``label`` and how many values are not finite.
    """
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise WorkbenchError(f"{bad} of the {values.size} pixel values are not numbers (NaN or infinity); the "
                             "image cannot be shown or classified reliably", label)


def unsupported_compression_error(transfer_syntax: object, label: str) -> WorkbenchError:
    """The error for a compression this installation cannot decode (returned, for the caller to raise
    or to keep as a per-slice reason)."""
    return WorkbenchError(
        f"the image is compressed as '{getattr(transfer_syntax, 'name', transfer_syntax)}', which this "
        "installation cannot decode; export it uncompressed or install a decoder (pylibjpeg / GDCM)",
        label,
    )


def can_decode(transfer_syntax: object) -> bool:
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

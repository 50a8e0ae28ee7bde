"""Image decoding in one place: every file, upload and DICOM becomes one canonical array.

The canonical form is a 2-D ``uint8`` grayscale array (MRI is single-channel; RGB copies of
it in public datasets carry no extra information). Colour content is measured *before* the
conversion so that out-of-distribution checks can still flag a colour photo.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from core.data.pixels import (  # noqa: F401 - re-exported
    MAX_PIXELS,
    MIN_SIDE,
    DecodedImage,
    colour_share,
    colourfulness,
    scale_to_uint8,
)
from core.errors import WorkbenchError

# Keep Pillow's decompression-bomb guard on, and make its warning an error: a scan must never
# allocate gigabytes because a PNG header claims 60000×60000.
ImageFile.LOAD_TRUNCATED_IMAGES = False
MAX_FILE_BYTES = 200 * 1024 * 1024
EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how the stored pixels must be turned to be upright

IMAGE_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "MPO"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}


def is_dicom_bytes(data: bytes) -> bool:
    """True if the bytes carry the DICOM Part-10 magic ('DICM' after a 128-byte preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode_image(source: str | Path | bytes, name: str | None = None) -> DecodedImage:
    """Decode a file path or raw bytes into a :class:`DecodedImage`.

    Args:
        source: a path, or the bytes of an uploaded file.
        name: the file name shown in errors (defaults to the path).
    Raises:
        WorkbenchError: empty, truncated, corrupt, oversized, too small, unsupported or
            unreadable input; the message names the file and the reason.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    data = _read_bytes(source, label)
    if not data:
        raise WorkbenchError("the file is empty (0 bytes)", label)
    suffix = Path(label).suffix.lower()
    if is_dicom_bytes(data) or suffix in (".dcm", ".dicom"):
        from core.data.dicom import decode_dicom  # pydicom only when needed

        return decode_dicom(data, label)
    return _decode_raster(data, label)


def _read_bytes(source: str | Path | bytes, label: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if "\0" in str(source):
        raise WorkbenchError("the path contains a NUL character, which no file name can hold", repr(label))
    from core.data.safeio import read_regular_file  # regular files only (a FIFO would hang), capped

    return read_regular_file(source, label, MAX_FILE_BYTES)


def _decode_raster(data: bytes, label: str) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in IMAGE_FORMATS:
                raise WorkbenchError(
                    f"unsupported image format {fmt}; use JPEG, PNG, BMP, TIFF or DICOM", label
                )
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise WorkbenchError(
                    f"the image is too large ({w}×{h} pixels; the limit is {MAX_PIXELS // 10**6} "
                    "megapixels) and may be a decompression bomb",
                    label,
                )
            if min(w, h) < MIN_SIDE:
                raise WorkbenchError(
                    f"the image is too small ({w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} needed)",
                    label,
                )
            if getattr(img, "n_frames", 1) > 1 and fmt != "MPO":
                raise WorkbenchError(
                    f"the file holds {img.n_frames} frames; upload a single slice", label
                )
            img.load()
            if fmt == "JPEG" and _grey_tail(img):
                raise WorkbenchError("the image is truncated: the end of its data is missing and the decoder "
                                     "filled the rest in plain grey", label)
        img = _apply_orientation(img)
    except WorkbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise WorkbenchError("the image is too large and may be a decompression bomb", label) from None
    except Image.UnidentifiedImageError:
        raise WorkbenchError("not an image file (the content is not a known image format)", label) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise WorkbenchError(f"the image is truncated or corrupt ({exc})", label) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input
        raise WorkbenchError(f"the image could not be decoded ({type(exc).__name__})", label) from None
    mode = img.mode
    pixels, colourfulness, share = _to_gray(img, label)
    return DecodedImage(pixels=pixels, source_format=fmt, source_mode=mode, colourfulness=colourfulness,
                        colour_share=share)


def _grey_tail(img: Image.Image) -> bool:
    """True if a JPEG's last 8×8 block is exactly mid-grey (128) in every channel.

    A JPEG cut short and closed with an end marker still decodes: libjpeg meets the marker early,
    warns (Pillow does not pass the warning on) and decodes every missing block as all-zero
    coefficients, which is exactly 128 after the level shift. The last block of a real scan is
    background (near black) and carries encoder noise, so an exact 128 block means missing data.
    """
    if img.mode not in ("L", "RGB"):
        return False
    return bool((np.asarray(img)[-8:, -8:] == 128).all())


def _apply_orientation(img: Image.Image) -> Image.Image:
    """Turn the pixels upright as the EXIF orientation tag says (phone photos are often stored sideways).

    A damaged EXIF block leaves the pixels as stored rather than refusing an otherwise good image.
    """
    try:
        if img.getexif().get(EXIF_ORIENTATION, 1) in (1, None):
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - EXIF parsers raise many types on damaged blocks
        return img


def _to_gray(img: Image.Image, label: str) -> tuple[np.ndarray, float, float]:
    """Convert any Pillow mode to uint8 grayscale, measuring colourfulness and colour share on the way."""
    mode = img.mode
    try:
        if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;"):
            return scale_to_uint8(np.asarray(img, dtype=np.float64), label=label), 0.0, 0.0
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            # Composite on black: transparent background is "no signal", as in an MRI.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, rgba).convert("RGB")
        elif mode not in ("RGB", "L"):
            img = img.convert("RGB")  # P, CMYK, YCbCr, 1, LAB, HSV
        if img.mode == "L":
            return np.asarray(img, dtype=np.uint8).copy(), 0.0, 0.0
        rgb = np.asarray(img, dtype=np.uint8)
        return np.asarray(img.convert("L"), dtype=np.uint8).copy(), colourfulness(rgb), colour_share(rgb)
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise WorkbenchError(f"the image mode {mode} could not be converted ({exc})", label) from None

"""DICOM series: read headers only, group by SeriesInstanceUID, split mixed sizes or orientations,
order along the slice normal, and check the geometry (gaps, duplicates, gantry tilt; the geometry
itself lives in :mod:`core.data.study_geometry`).

Pixels are decoded later, one slice at a time, by :func:`core.data.dicom.decode_dicom` (single
frames) or frame by frame with pydicom's ``pixel_array(index=...)`` and the same LUT/window code.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from core.data.dicom import (
    apply_window,
    can_decode,
    check_finite_pixels,
    decode_dicom,
    safe_header,
    unsupported_compression_error,
)
from core.data.pixels import DecodedImage
from core.data.study_files import FileSet
from core.data.study_geometry import FrameHeader, order_frames, orientation_name, split_series
from core.data.study_types import MAX_SLICES, SliceRef, Stack, Study
from core.errors import WorkbenchError

MAX_SIDE = 4096  # rows or columns of one slice; larger is not an MRI slice (and a decompression bomb)
_UID = re.compile(r"[0-9][0-9.]{0,63}")
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


def frame_count(path: Path) -> int:
    """NumberOfFrames of a DICOM file (1 when absent or not DICOM); reads the header only."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # noqa: BLE001 - not DICOM, or a damaged header: not a multi-frame study
        return 1


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.isfinite(arr).all() else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _headers(name: str, data: bytes) -> list[FrameHeader]:
    """The slices one file contributes (empty when it is not a DICOM image)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if not rows or not cols:
        if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
            raise WorkbenchError("not a DICOM file", name)  # force=True parses any bytes as an empty dataset
        return []  # DICOMDIR, structured reports, presentation states: no image
    if rows > MAX_SIDE or cols > MAX_SIDE:
        raise WorkbenchError(f"the slice is {cols}×{rows} pixels; the limit is {MAX_SIDE}", name)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None:
        syntax = pydicom.uid.ImplicitVRLittleEndian
    syntax_error = None if can_decode(syntax) else unsupported_compression_error(syntax, name).reason
    modality = safe_header(ds).get("Modality", "")
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    # A UID is digits and dots (PS3.5 9.1); anything else is shown as an anonymous name, never read out.
    uid = uid if _UID.fullmatch(uid) else ("series without a valid UID" if uid else "series without a UID")
    frames = _int(ds.get("NumberOfFrames", 1)) or 1
    if frames > MAX_SLICES:
        raise WorkbenchError(f"the file claims {frames} frames; the limit is {MAX_SLICES}", name)
    iop, ipp = _floats(ds.get("ImageOrientationPatient"), 6), _floats(ds.get("ImagePositionPatient"), 3)
    instance = _int(ds.get("InstanceNumber"))
    if frames == 1:
        return [FrameHeader(name, None, uid, rows, cols, iop, ipp, instance, modality, syntax_error)]
    shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
    shared_iop = _plane(shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    out = []
    for k in range(frames):
        item = per_frame[k] if k < len(per_frame) else None
        f_iop = _plane(item, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        f_ipp = _plane(item, "PlanePositionSequence", "ImagePositionPatient", 3)
        out.append(FrameHeader(f"{name} frame {k + 1}", k, uid, rows, cols,
                          f_iop if f_iop is not None else (shared_iop if shared_iop is not None else iop),
                          f_ipp, k + 1, modality, syntax_error))
    return out


def _read_headers(files: FileSet, name: str) -> list[FrameHeader]:
    """Headers from the file's first bytes when that is enough, else from the whole file."""
    if files.head is not None:
        head = files.head(name)
        # Only a prefix that reaches the PixelData tag (7FE0,0010) holds the whole header; a longer header
        # (e.g. a multi-frame file's per-frame groups) is read from the whole file.
        if PIXEL_DATA_TAG in head:
            try:
                frames = _headers(name, head)
                if all(f.frame is None for f in frames):
                    return frames
            except WorkbenchError:
                raise
            except Exception:  # noqa: BLE001 - fall back to the whole file
                pass
    return _headers(name, files.read(name))


def _first_item(seq: Any) -> Any:
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _plane(item: Any, sequence: str, tag: str, n: int) -> np.ndarray | None:
    inner = _first_item(item.get(sequence)) if item is not None else None
    return _floats(inner.get(tag), n) if inner is not None else None



def _stack(key: str, frames: list[FrameHeader], split_reason: str, files: FileSet, multi: bool) -> Stack:
    ordered, positions, order, warnings, flags = order_frames(frames)
    if split_reason:
        warnings.insert(0, split_reason)
        flags.append("split_series")
    f0 = ordered[0]
    orientation = orientation_name(f0.iop)
    modality = f0.modality
    if modality != "MR":
        warnings.append(f"The series is not marked as MR (Modality {modality or 'missing'}); the model learned "
                        "from MRI only, so its answer may mean nothing here.")
        flags.append("not_mr")
    if orientation != "axial":
        warnings.append(f"The series is {orientation}, not axial; most training slices were axial, so expect less "
                        "reliable answers.")
        flags.append("not_axial")
    errors = {f.syntax_error for f in ordered if f.syntax_error}
    refs = [SliceRef(i + 1, f.name, p) for i, (f, p) in enumerate(zip(ordered, positions))]
    by_source = {ref.source: f for ref, f in zip(refs, ordered)}
    stack = Stack(key, "multi-frame DICOM" if multi else "DICOM series", refs, (f0.rows, f0.cols), orientation,
                  modality, order, warnings, flags, next(iter(errors)) if errors else None)
    stack.loader = (_frame_loader(files, by_source) if multi else
                    (lambda ref: decode_dicom(files.read(by_source[ref.source].name), ref.source)))
    return stack


def _frame_loader(files: FileSet, by_source: dict[str, FrameHeader]):
    """Decode one frame of a multi-frame file: only that frame's pixels are read and decoded."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, pixel_array

    cache: dict[str, tuple[bytes, Any]] = {}

    def load(ref: SliceRef) -> DecodedImage:
        f = by_source[ref.source]
        if f.name.rsplit(" frame ", 1)[0] not in cache:
            cache.clear()
            base = f.name.rsplit(" frame ", 1)[0]
            data = files.read(base)
            cache[base] = (data, pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True))
        data, ds = next(iter(cache.values()))
        try:
            arr = pixel_array(io.BytesIO(data), index=f.frame)
        except Exception as exc:  # noqa: BLE001 - pixel handlers raise many types on bad data
            raise WorkbenchError(f"the frame's pixel data is corrupt ({type(exc).__name__})", ref.source) from None
        if arr.ndim != 2:
            raise WorkbenchError(f"unexpected frame shape {arr.shape}", ref.source)
        values = apply_modality_lut(arr, ds).astype(np.float64)
        check_finite_pixels(values, ref.source)
        gray, window = apply_window(ds, values)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        meta = {**safe_header(ds), "window": window, "frames": int(ds.get("NumberOfFrames", 1) or 1)}
        return DecodedImage(gray, "DICOM", photometric, 0.0, meta)

    return load


def read_series(files: FileSet) -> Study:
    """Headers of every file, grouped into stacks; files that are not DICOM images are noted, not fatal.

    Raises:
        WorkbenchError: no DICOM image at all among the files.
    """
    frames: list[FrameHeader] = []
    multi_files: set[str] = set()
    skipped: dict[str, int] = defaultdict(int)
    for name in files.names:
        try:
            got = _read_headers(files, name)
        except WorkbenchError as exc:
            if "limit" in exc.reason:
                raise
            skipped[exc.reason] += 1
            continue
        except Exception:  # noqa: BLE001 - pydicom raises many types on files that are not DICOM
            skipped["not a DICOM file"] += 1
            continue
        if not got:
            skipped["a DICOM file without an image"] += 1
        if len(got) > 1:
            multi_files.add(name)
        frames += got
    if not frames:
        raise WorkbenchError("no DICOM image was found among the files" +
                             (f" ({', '.join(f'{n} {why}' for why, n in skipped.items())})" if skipped else ""),
                             files.label)
    groups: dict[tuple[str, str | None], list[FrameHeader]] = defaultdict(list)
    for f in frames:  # a multi-frame file is its own stack even when it shares a series UID
        base = f.name.rsplit(" frame ", 1)[0] if f.frame is not None else None
        groups[(f.uid, base)].append(f)
    stacks = []
    for (uid, base), members in groups.items():
        parts = split_series(members)
        for i, (part, reason) in enumerate(parts, 1):
            key = uid if len(parts) == 1 else f"{uid} part {i}"
            stacks.append(_stack(key, part, reason, files, base is not None))
    notes = [f"{n} file(s) skipped: {why}" for why, n in skipped.items()]
    return Study(files.label, stacks, notes)

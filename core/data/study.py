"""Whole studies: DICOM series and NIfTI volumes read as ordered stacks of 2-D slices.

:func:`open_study` lists the stacks an input holds (one per DICOM series, or the NIfTI volume);
:meth:`Stack.slices` then yields one decoded slice at a time, so a 600-slice volume is never held
whole. DICOM pixels go through :func:`core.data.dicom.decode_dicom` (modality LUT, VOI LUT or
window, MONOCHROME1), the same decoder single uploads use. Only coded header fields are kept.
"""

from __future__ import annotations

from pathlib import Path

from core.data.study_types import MAX_SLICES, SliceRef, Stack, Study

__all__ = ["MAX_SLICES", "SliceRef", "Stack", "Study", "is_nifti_name", "looks_like_study", "open_study"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_name(name: str) -> bool:
    return str(name).lower().endswith(NIFTI_SUFFIXES)


def looks_like_study(path: Path) -> bool:
    """True for inputs the CLI reads as a study: a folder, a zip, a NIfTI file, a multi-frame DICOM."""
    if path.is_dir():
        return True
    name = path.name.lower()
    if name.endswith(".zip") or is_nifti_name(name):
        return True
    if not path.is_file():
        return False
    from core.data.study_dicom import frame_count

    return frame_count(path) > 1


def open_study(source: Path | tuple[str, bytes] | list[tuple[str, bytes]]) -> Study:
    """Read the headers of a study input and list its stacks (no pixels are decoded yet).

    Args:
        source: a path (folder of DICOM files, zip, NIfTI, multi-frame DICOM), one upload as
            (name, bytes), or several uploaded DICOM files.
    Raises:
        WorkbenchError: nothing readable, or an input refused at the boundary (zip checks, limits).
    """
    from core.data import study_dicom, study_files, study_nifti

    if isinstance(source, list):
        return study_dicom.read_series(study_files.upload_files(source))
    if isinstance(source, tuple):
        name, data = source
        if is_nifti_name(name):
            return study_nifti.read_nifti_bytes(data, name)
        if data[:4] == b"PK\x03\x04" or name.lower().endswith(".zip"):
            return study_dicom.read_series(study_files.zip_files(data, name))
        return study_dicom.read_series(study_files.upload_files([(name, data)], name))
    path = Path(source)
    if path.is_dir():
        return study_dicom.read_series(study_files.folder_files(path))
    if is_nifti_name(path.name):
        return study_nifti.read_nifti_path(path)
    from core.data.safeio import read_regular_file

    data = read_regular_file(path, path.name, study_files.STUDY_ZIP_LIMITS.max_total_bytes)
    return open_study((path.name, data))

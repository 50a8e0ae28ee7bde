"""Whole studies: DICOM series and NIfTI volumes read as ordered stacks of 2-D slices.

:func:`open_study` lists the stacks an input holds (one per DICOM series, or the NIfTI volume);
:meth:`Stack.slices` then yields one decoded slice at a time, so a 600-slice volume is never held
whole. DICOM pixels go through :func:`core.data.dicom.decode_dicom` (modality LUT, VOI LUT or
window, MONOCHROME1), the same decoder single uploads use. Only coded header fields are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.data.pixels import DecodedImage
from core.errors import WorkbenchError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_SLICES = 2_000  # more slices than any brain series; refuses a header that claims millions


@dataclass(frozen=True)
class SliceRef:
    """One slice of a stack, in stack order."""

    number: int  # 1-based position in the ordered stack (what people see)
    source: str  # the file (and frame) it came from, or "axial k" for a volume
    position: float | None = None  # mm along the slice normal; None when unknown


@dataclass
class Stack:
    """One orderable stack of slices: a DICOM series (or part of one) or a NIfTI volume.

    ``warnings`` say, in plain words, what was found while reading the headers (order fallback,
    missing slices, tilt, not MR, not axial, split series); ``flags`` are the same as codes.
    ``error`` is set when the stack cannot be read at all (e.g. compression without a decoder).
    """

    key: str  # series UID (with a part suffix when split) or the file name
    kind: str  # "DICOM series", "multi-frame DICOM" or "NIfTI volume"
    refs: list[SliceRef]
    shape: tuple[int, int]  # (rows, columns) of every slice
    orientation: str  # axial, coronal, sagittal, oblique or unknown
    modality: str = ""  # coded DICOM Modality ("" for NIfTI)
    order: str = "position"  # how slices were ordered: position, instance number, file order, volume axis
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    loader: Callable[[SliceRef], DecodedImage] | None = field(default=None, repr=False)

    @property
    def n_slices(self) -> int:
        return len(self.refs)

    def describe(self) -> str:
        """One line for a picker: key, slice count, size, orientation, modality."""
        key = self.key if len(self.key) <= 40 else f"…{self.key[-38:]}"
        parts = [f"{self.kind} {key}", f"{self.n_slices} slices", f"{self.shape[1]}×{self.shape[0]}",
                 self.orientation]
        if self.modality:
            parts.append(self.modality)
        if self.error:
            parts.append("cannot be read")
        return " · ".join(parts)

    def slices(self) -> Iterator[tuple[SliceRef, DecodedImage | WorkbenchError]]:
        """Each slice decoded in order, one at a time; a slice that fails yields its error instead."""
        if self.error:
            raise WorkbenchError(self.error, self.key)
        assert self.loader is not None
        for ref in self.refs:
            try:
                yield ref, self.loader(ref)
            except WorkbenchError as exc:
                yield ref, exc


@dataclass
class Study:
    """What an input held: its stacks (pick one) and notes about files that were not used."""

    label: str  # the file or folder given
    stacks: list[Stack]
    notes: list[str] = field(default_factory=list)

    def pick(self, choice: str | int | None = None) -> Stack:
        """The stack named by series UID (or key), or by 1-based index; None = the only one.

        Raises:
            WorkbenchError: several stacks and no choice, or a choice that names none.
        """
        if choice is None or choice == "":
            if len(self.stacks) == 1:
                return self.stacks[0]
            listing = "; ".join(f"{i}: {s.describe()}" for i, s in enumerate(self.stacks, 1))
            raise WorkbenchError(f"this input holds {len(self.stacks)} series; pick one with --series UID or "
                                 f"its number ({listing})", self.label)
        for s in self.stacks:
            if s.key == str(choice):
                return s
        if str(choice).isdigit() and 1 <= int(choice) <= len(self.stacks):
            return self.stacks[int(choice) - 1]
        raise WorkbenchError(f"no series '{choice}' here; choose a number from 1 to {len(self.stacks)} or one of "
                             f"the series UIDs", self.label)


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

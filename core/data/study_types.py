"""The records of a study: a :class:`Study` holds :class:`Stack` s of ordered :class:`SliceRef` s.

Kept apart from :mod:`core.data.study` (which opens inputs) so the DICOM and NIfTI readers can
build these records without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from core.data.pixels import DecodedImage
from core.errors import WorkbenchError

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

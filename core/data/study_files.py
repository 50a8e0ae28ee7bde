"""Where a study's files come from: a folder, a zip (read in memory, never extracted), or uploads.

A :class:`FileSet` lists names and reads one file's bytes on demand, so a series is read file by
file (streamed) and never held whole unless it already is (an upload). Zip members go through
the dataset zip's own member checks (:mod:`core.data.safezip`) and a study-sized file count.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.data.safezip import ZipLimits, check_member
from core.errors import WorkbenchError

#: A series rarely has more than a few thousand files; a zip of 10,000 tiny files is refused
#: before any is read (each header parse costs time, and the count is the cheap check).
MAX_STUDY_FILES = 5_000
HEAD_BYTES = 64 * 1024  # a DICOM header (without pixels) fits in this almost always; else the whole file is read
STUDY_ZIP_LIMITS = ZipLimits(max_files=MAX_STUDY_FILES, max_total_bytes=3 * 1024**3, max_member_bytes=1024**3)


@dataclass(frozen=True)
class FileSet:
    """Named files of one study input; ``read(name)`` returns one file's bytes."""

    label: str  # what was given (a folder or zip name), for messages
    names: tuple[str, ...]
    read: Callable[[str], bytes]
    head: Callable[[str], bytes] | None = None  # the first HEAD_BYTES only (cheap header reads), if it can


def _too_many(count: int, label: str) -> WorkbenchError:
    return WorkbenchError(f"the study holds {count} files; the limit is {MAX_STUDY_FILES} (one series rarely has "
                          "more than a few hundred); give one series at a time", label)


def folder_files(folder: Path) -> FileSet:
    """The regular files under ``folder`` (recursively, hidden files skipped), read lazily."""
    from core.data.safeio import read_regular_file

    names: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith("."):
                continue
            names.append(os.path.relpath(os.path.join(root, f), folder))
            if len(names) > MAX_STUDY_FILES:
                raise _too_many(len(names), folder.name)
    if not names:
        raise WorkbenchError("the folder holds no files", folder.name)
    def head(name: str) -> bytes:
        """The file's first bytes; regular files only (opening a FIFO would hang)."""
        path = folder / name
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                raise WorkbenchError("not a regular file (a link, device or pipe); skipped", name)
            with open(path, "rb") as f:
                return f.read(HEAD_BYTES)
        except OSError as exc:
            raise WorkbenchError(f"cannot be read ({exc.strerror or type(exc).__name__})", name) from None

    return FileSet(folder.name, tuple(names),
                   lambda name: read_regular_file(folder / name, name, STUDY_ZIP_LIMITS.max_member_bytes), head)


def zip_files(data: bytes, label: str) -> FileSet:
    """The members of a zip held in memory, each checked as dataset zips are; read on demand."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise WorkbenchError("not a valid zip file", label) from None
    infos = zf.infolist()
    if len(infos) > MAX_STUDY_FILES:
        raise _too_many(len(infos), label)
    members = {}
    for info in infos:
        path = check_member(info, STUDY_ZIP_LIMITS, label)  # traversal, links, encryption, ratio, size
        if path is not None:
            members[str(path)] = info
    if not members:
        raise WorkbenchError("the zip contains no files", label)

    def read(name: str) -> bytes:
        info = members[name]
        try:
            with zf.open(info) as src:  # headers can lie: never read past the declared size
                out = src.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
            raise WorkbenchError(f"the zip member is corrupt ({type(exc).__name__})", name) from None
        if len(out) > info.file_size:
            raise WorkbenchError("the zip member inflates beyond its declared size; refused", name)
        return out

    return FileSet(label, tuple(sorted(members)), read)


def upload_files(items: Sequence[tuple[str, bytes]], label: str = "uploaded files") -> FileSet:
    """Files already in memory (page uploads)."""
    if len(items) > MAX_STUDY_FILES:
        raise _too_many(len(items), label)
    by_name: dict[str, bytes] = {}
    for name, data in items:
        key, n = str(name), 1
        while key in by_name:  # two uploads may share a name
            n += 1
            key = f"{name} ({n})"
        by_name[key] = bytes(data)
    return FileSet(label, tuple(by_name), by_name.__getitem__)

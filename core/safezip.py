"""Safe extraction of an uploaded dataset zip: no traversal, no links, bounded size and count."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import WorkbenchError


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 4 * 1024**3  # inflated size of all members
    max_files: int = 20_000  # the public dataset has ~7,000
    max_ratio: float = 200.0  # per-member inflate ratio; JPEG/PNG barely compress at all
    max_member_bytes: int = 200 * 1024**2


def _check_member(info: zipfile.ZipInfo, limits: ZipLimits, label: str) -> PurePosixPath | None:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise WorkbenchError(f"the zip contains an absolute path '{info.filename}'; refused", label)
    if ".." in path.parts:
        raise WorkbenchError(f"the zip contains a path that escapes its folder ('{info.filename}'); refused", label)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise WorkbenchError(f"the zip contains a symbolic link '{info.filename}'; refused", label)
    if info.is_dir():
        return None
    if info.file_size > limits.max_member_bytes:
        raise WorkbenchError(f"'{info.filename}' inflates to {info.file_size / 1e6:.0f} MB; refused", label)
    if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
        raise WorkbenchError(
            f"'{info.filename}' compresses {info.file_size / info.compress_size:.0f}:1, which looks "
            "like a zip bomb; refused",
            label,
        )
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None  # macOS resource forks and hidden files are not data
    return path


def extract_zip(data: bytes, dest_root: Path, label: str = "upload.zip", limits: ZipLimits = ZipLimits()) -> Path:
    """Validate every member, then extract into ``dest_root/<sha256>``; return the folder.

    The whole archive is checked before a single byte is written, sizes are enforced again
    while inflating (headers can lie), and extraction goes to a temporary folder that is
    renamed into place, so a refused or interrupted upload leaves nothing behind.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise WorkbenchError("not a valid zip file", label) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise WorkbenchError(f"the zip holds {len(infos)} entries; the limit is {limits.max_files}", label)
        members = [(i, p) for i in infos if (p := _check_member(i, limits, label)) is not None]
        total = sum(i.file_size for i, _ in members)
        if total > limits.max_total_bytes:
            raise WorkbenchError(
                f"the zip inflates to {total / 1e9:.1f} GB; the limit is {limits.max_total_bytes / 1e9:.0f} GB",
                label,
            )
        if not members:
            raise WorkbenchError("the zip contains no files", label)
        digest = hashlib.sha256(data).hexdigest()[:16]
        dest = dest_root / digest
        if dest.exists():
            return _dataset_root(dest)
        tmp = dest_root / f".{digest}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        written = 0
        try:
            for info, path in members:
                target = tmp.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limits.max_total_bytes or out.tell() > limits.max_member_bytes:
                            raise WorkbenchError("the zip inflates beyond its declared size; refused", label)
                        out.write(chunk)
        except WorkbenchError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise WorkbenchError(f"the zip is corrupt or uses an unsupported feature ({exc})", label) from None
        os.replace(tmp, dest)
    return _dataset_root(dest)


def _dataset_root(folder: Path) -> Path:
    """Descend through single wrapping folders (zips of 'MyData/' usually have one).

    A lone split folder (a zip of 'MyData/Training/' only) or class folder belongs to the
    dataset: descending into it would lose the split, or turn a class into the dataset.
    """
    from core.classes import canonical_class
    from core.datasets import SPLIT_FOLDERS

    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        name = entries[0].name
        if name.lower() in SPLIT_FOLDERS or canonical_class(name) is not None:
            return folder
        folder = entries[0]

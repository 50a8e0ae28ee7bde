"""Safe extraction of an uploaded dataset zip: no traversal, no links, no encryption, bounded
size, count, nesting and name length. Messages name the entry, never a server path."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.atomic import atomic_dir, reclaim_stale
from core.classes import SPLIT_FOLDERS, canonical_class
from core.errors import WorkbenchError

SHOWN_NAME_CHARS = 80  # a hostile entry name is shortened in messages


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 4 * 1024**3  # inflated size of all members
    max_files: int = 20_000  # the public dataset has ~7,000
    max_ratio: float = 200.0  # per-member inflate ratio; JPEG/PNG barely compress at all
    max_member_bytes: int = 200 * 1024**2
    max_depth: int = 32  # folders above a file; Kaggle's layout needs 3
    max_name_bytes: int = 255  # one file or folder name (NAME_MAX on Linux and macOS)
    max_path_bytes: int = 1024  # a whole entry path (far below PATH_MAX once extracted)


def _shown(name: str) -> str:
    """An entry name fit for a message: hostile names can be thousands of characters long."""
    return name if len(name) <= SHOWN_NAME_CHARS else f"{name[:SHOWN_NAME_CHARS // 2]}…{name[-20:]}"


def check_member(info: zipfile.ZipInfo, limits: ZipLimits, label: str) -> PurePosixPath | None:
    """Check one zip entry against ``limits`` before anything is inflated.

    Returns:
        The entry's path inside the zip, or None for an entry that is not data (a folder, a hidden
        file, macOS resource forks).

    Raises:
        WorkbenchError: for traversal, absolute paths, links, encryption, over-long names or paths,
            too deep nesting, or a size or ratio over the limits; the message names the entry.
    """
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    shown = _shown(info.filename)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise WorkbenchError(f"the zip contains an absolute path '{shown}'; refused", label)
    if ".." in path.parts:
        raise WorkbenchError(f"the zip contains a path that escapes its folder ('{shown}'); refused", label)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise WorkbenchError(f"the zip contains a symbolic link '{shown}'; refused", label)
    if info.flag_bits & 0x1:
        raise WorkbenchError(f"'{shown}' is encrypted (password-protected); upload a zip without a password",
                             label)
    if len(path.parts) - 1 > limits.max_depth:
        raise WorkbenchError(f"'{shown}' is nested {len(path.parts) - 1} folders deep; the limit is "
                             f"{limits.max_depth}", label)
    longest = max((len(part.encode()) for part in path.parts), default=0)
    if longest > limits.max_name_bytes:
        raise WorkbenchError(f"'{shown}' has a file or folder name of {longest} bytes; the limit is "
                             f"{limits.max_name_bytes}", label)
    if len(name.encode()) > limits.max_path_bytes:
        raise WorkbenchError(f"'{shown}' has a path of {len(name.encode())} bytes; the limit is "
                             f"{limits.max_path_bytes}", label)
    if info.is_dir():
        return None
    if info.file_size > limits.max_member_bytes:
        raise WorkbenchError(f"'{shown}' inflates to {info.file_size / 1e6:.0f} MB; refused", label)
    if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
        raise WorkbenchError(
            f"'{shown}' compresses {info.file_size / info.compress_size:.0f}:1, which looks "
            "like a zip bomb; refused",
            label,
        )
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None  # macOS resource forks and hidden files are not data
    return path


def extract_zip(data: bytes, dest_root: Path, label: str = "upload.zip", limits: ZipLimits = ZipLimits()) -> Path:
    """Validate every member, then extract into ``dest_root/<sha256>``; return the folder.

    The whole archive is checked before a single byte is written, sizes are enforced again
    while inflating (headers can lie), and extraction goes to a uniquely named temporary
    folder that is renamed into place (:func:`core.atomic.atomic_dir`), so a refused or
    interrupted upload leaves nothing behind and concurrent uploads of one zip never collide.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise WorkbenchError("not a valid zip file", label) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise WorkbenchError(f"the zip holds {len(infos)} entries; the limit is {limits.max_files}", label)
        members = [(i, p) for i in infos if (p := check_member(i, limits, label)) is not None]
        total = sum(i.file_size for i, _ in members)
        if total > limits.max_total_bytes:
            raise WorkbenchError(
                f"the zip inflates to {total / 1e9:.1f} GB; the limit is {limits.max_total_bytes / 1e9:.0f} GB",
                label,
            )
        if not members:
            raise WorkbenchError("the zip contains no files", label)
        _check_clashes([p for _, p in members], label)
        digest = hashlib.sha256(data).hexdigest()[:16]
        dest = dest_root / digest
        if dest.exists():
            return _dataset_root(dest)
        reclaim_stale(dest_root)
        try:
            with atomic_dir(dest) as tmp:
                _extract_members(zf, members, tmp, limits, label)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
            raise WorkbenchError(f"the zip is corrupt or uses an unsupported feature ({exc})", label) from None
        except OSError as exc:  # strerror only: the exception's own text names a server path
            raise WorkbenchError(f"the zip could not be extracted ({exc.strerror or type(exc).__name__})",
                                 label) from None
    return _dataset_root(dest)


def _check_clashes(paths: list[PurePosixPath], label: str) -> None:
    """Refuse an entry that is a file and also a folder of other entries (cannot be extracted)."""
    folders = {str(parent) for p in paths for parent in p.parents}
    for p in paths:
        if str(p) in folders:
            raise WorkbenchError(f"'{_shown(str(p))}' is both a file and a folder in this zip; refused", label)


def _extract_members(zf: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, PurePosixPath]], tmp: Path,
                     limits: ZipLimits, label: str) -> None:
    written = 0
    for info, path in members:
        target = tmp.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > limits.max_total_bytes or out.tell() > limits.max_member_bytes:
                    raise WorkbenchError("the zip inflates beyond its declared size; refused", label)
                out.write(chunk)


def _dataset_root(folder: Path) -> Path:
    """Descend through single wrapping folders (zips of 'MyData/' usually have one).

    A lone split folder (a zip of 'MyData/Training/' only) or class folder belongs to the
    dataset: descending into it would lose the split, or turn a class into the dataset.
    """

    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        name = entries[0].name
        if name.lower() in SPLIT_FOLDERS or canonical_class(name) is not None:
            return folder
        folder = entries[0]

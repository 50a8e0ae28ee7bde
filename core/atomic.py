"""Publishing files and folders atomically: a reader sees the old version or the new one, never half.

Every publish writes to a temporary name *in the target's own folder* (so the final rename
stays on one file system), flushes and fsyncs it, then ``os.replace``-s it into place. The
temporary name is unique per call (random token), not per process: two sessions or threads
of one server publishing the same file never share a temporary, and the last rename wins
with a complete file. On any failure the temporary is removed before the error propagates.

Temporary names look like ``.<name>.<token>.tmp``; :func:`reclaim_stale` removes the ones a
killed process left behind, by age, so a publish in progress is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 6 * 3600  # far longer than any publish takes
_NAME_KEEP = 120  # characters of the target name kept in the temporary name (NAME_MAX is 255)


def temp_path(target: Path) -> Path:
    """A fresh, unused hidden name beside ``target`` (unique per call, not per process)."""
    return target.with_name(f".{target.name[:_NAME_KEEP]}.{secrets.token_hex(8)}{TEMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """Open a temporary beside ``target`` for writing; on success it replaces ``target``.

    Args:
        target: the file to publish.
        mode: ``"wb"`` (default) or ``"w"`` (text; UTF-8 unless ``encoding`` is given).
    Raises:
        Whatever the write or the rename raises; the temporary is removed first.
    """
    target = Path(target)
    if "b" not in mode:
        open_args.setdefault("encoding", "utf-8")
    tmp = temp_path(target)
    try:
        with open(tmp, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def write_bytes(target: str | Path, data: bytes) -> None:
    """Publish ``data`` as ``target`` atomically."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def write_json(target: str | Path, data: Any) -> None:
    """Publish ``data`` as indented JSON (NumPy scalars and arrays, and paths, written as plain values)."""
    write_text(target, json.dumps(data, indent=2, default=_json_default))


def _json_default(obj: Any) -> Any:
    import numpy as np  # only when a NumPy value is met: this module is imported by light code too

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_text(target: str | Path, text: str) -> None:
    """Publish ``text`` (UTF-8) as ``target`` atomically."""
    with atomic_open(target, "w") as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then rename it to ``dest`` in one step.

    If ``dest`` appears meanwhile (another session published the same content first), the
    finished copy is discarded and the existing one kept: both are complete. On any error
    the temporary folder is removed.
    """
    dest = Path(dest)
    tmp = temp_path(dest)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not dest.exists():
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.is_dir():  # not a lost race: a real failure
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    _fsync_dir(dest.parent)


def is_temp_name(name: str) -> bool:
    """True for temporaries of :func:`temp_path` and the older ``.<name>.tmp<pid>`` ones."""
    stem, dot, tail = name.rpartition(".tmp")
    return name.startswith(".") and bool(dot) and (tail == "" or tail.isdigit()) and len(stem) > 1


def reclaim_stale(folder: str | Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temporaries older than ``max_age_s`` in ``folder`` (left by killed processes).

    Age-based, so a publish in progress elsewhere is never touched. Errors are ignored:
    reclaiming is housekeeping, never a reason to fail.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if now - entry.lstat().st_mtime <= max_age_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def check_writable(path: str | Path, label: str, is_file: bool = False) -> None:
    """Refuse, before any work, a destination this process cannot write into.

    The nearest existing folder of ``path`` (its parent when ``is_file``) gets a real probe: a
    temporary file created and removed at once. Permission bits alone would not do: a read-only
    mount, a full quota or root squashing on a network share all pass ``os.access``.

    Raises:
        WorkbenchError: the folder refuses writes (the reason, not the server's path).
    """
    import tempfile

    from core.errors import WorkbenchError

    folder = Path(path).expanduser()
    folder = folder.parent if is_file else folder
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise WorkbenchError(f"this destination cannot be written ({exc.strerror or type(exc).__name__}); choose "
                             "another folder, or ask an administrator for write access", label) from None

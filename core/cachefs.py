"""Cache folders whose faults never stop the work.

A cache is an optimisation. When its folder is read-only, full or missing, the work goes on
uncached with one :class:`CacheWriteWarning` (and a log line) per failed write, and nothing is
left behind. A damaged entry (truncated, empty, unparsable) is discarded so it is rebuilt;
whether an entry is *consistent* with what it claims to describe is the reader's check.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from core.atomic import atomic_open, reclaim_stale

log = logging.getLogger(__name__)

#: What reading a damaged cache entry raises (np.load on an empty file gives EOFError, on a
#: truncated .npz BadZipFile; json and pandas give ValueError subclasses).
DAMAGED_ENTRY = (OSError, ValueError, EOFError, KeyError, TypeError, IndexError, zipfile.BadZipFile)


_unusable_folders: set[str] = set()  # warned about once per process, not on every call


class CacheWriteWarning(UserWarning):
    """A cache entry could not be written; the result is correct but will be recomputed."""


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "it is read-only"
    return exc.strerror or type(exc).__name__


def warn_uncached(where: Path, exc: OSError) -> None:
    """Say once, for this failure, that work goes on without the cache (no traceback)."""
    message = (f"The cache folder {where} cannot be written ({_reason(exc)}); working without a cache. "
               "Free space or set WORKBENCH_CACHE_DIR to a writable folder.")
    log.warning(message)
    warnings.warn(message, CacheWriteWarning, stacklevel=3)


def cache_folder(name: str) -> Path | None:
    """``<cache>/<name>``, created if needed, with stale temporaries reclaimed.

    Returns:
        The folder, or None when it cannot be created (warned once per folder and process).
    """
    from core.paths import cache_dir

    try:
        folder = cache_dir() / name
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = Path(exc.filename or name)
        if str(where) not in _unusable_folders:
            _unusable_folders.add(str(where))
            warn_uncached(where, exc)
        return None
    reclaim_stale(folder)
    return folder


def cache_write(target: Path, write: Callable[[IO], None], mode: str = "wb") -> bool:
    """Publish a cache entry atomically with ``write(file)``.

    Returns:
        True when written; False (after one warning, with no temporary left) when the cache
        folder cannot be written. Errors other than OSError propagate: they are bugs.
    """
    try:
        with atomic_open(target, mode) as fh:
            write(fh)
    except OSError as exc:
        warn_uncached(target.parent, exc)
        return False
    return True


def discard(*paths: Path) -> None:
    """Remove damaged or inconsistent entries so they are rebuilt (errors ignored)."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()

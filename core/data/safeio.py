"""Reading files from data folders safely: regular files only, capped, links kept inside the roots.

Three rules, shared by the dataset listing (:mod:`core.data.datasets`), the scan and every decode
of a path (:func:`core.data.imageio.decode_image`):

* **Regular files only.** A named pipe blocks a reader for ever and a device streams without
  end, so anything that is not a regular file is refused before it is opened (and opened
  non-blocking, in case it is swapped in between).
* **Capped reads.** At most ``max_bytes`` are read, whatever the size the file claims.
* **Links stay inside.** A path inside a dataset is read only if its fully resolved location
  is inside the dataset's own folder or under a data root (:func:`core.paths.data_roots`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from core.errors import WorkbenchError

OUTSIDE_ROOTS = ("skipped: a link to a location outside the allowed data folders is not followed "
                 "(an administrator can add folders with WORKBENCH_DATA_ROOTS)")

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a folder"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for messages)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular_reason(mode: int) -> str:
    return f"skipped: this is {file_kind(mode)}, not a regular file"


def allowed_roots(dataset_root: str | Path) -> list[Path]:
    """Where the files of a dataset may really live: its own folder and every data root."""
    from core.paths import data_roots

    return [Path(dataset_root).resolve(), *data_roots()]


def is_inside(path: str | Path, roots: Iterable[Path]) -> bool:
    """True when ``path``, with every link resolved, lies in one of ``roots`` (resolved)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return any(resolved == root or root in resolved.parents for root in roots)


def read_regular_file(path: str | Path, label: str, max_bytes: int) -> bytes:
    """Read a regular file, refusing anything else and anything above ``max_bytes``.

    Raises:
        WorkbenchError: missing, unreadable, not a regular file, or too large (the message
            names ``label`` and the reason, never another path).
    """
    path = Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            raise WorkbenchError(f"this is {file_kind(st.st_mode)}, not a regular file", label)
        if st.st_size > max_bytes:
            raise WorkbenchError(f"the file is too large ({st.st_size / 1e6:.0f} MB)", label)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped after the check
                raise WorkbenchError("this is not a regular file", label)
            data = fh.read(max_bytes + 1)
    except WorkbenchError:
        raise
    except PermissionError:
        raise WorkbenchError("permission denied: the file cannot be read", label) from None
    except FileNotFoundError:
        raise WorkbenchError("the file does not exist", label) from None
    except IsADirectoryError:
        raise WorkbenchError("this is a folder, not an image file", label) from None
    except OSError as exc:
        raise WorkbenchError(f"the file cannot be read ({exc.strerror or type(exc).__name__})", label) from None
    if len(data) > max_bytes:
        limit = f"{max_bytes / 1e6:.0f} MB" if max_bytes >= 10**6 else f"{max_bytes} bytes"
        raise WorkbenchError(f"the file is too large (more than {limit})", label)
    return data

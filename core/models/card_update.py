"""Card updates that never lose what another command stored meanwhile.

A command (``calibrate``, ``evaluate``, the trust fit) reads a run, works for minutes, then
stores a few card sections. Writing back the whole card it read at its start would erase
anything stored in between: an evaluation, a refitted temperature. So an update is a
read-modify-write under an exclusive lock of the run folder, and a three-way merge: only what
the command changed relative to the card it started from is applied to the card on disk now.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_MISSING = object()


@contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock of a run folder (flock on the folder itself: no lock file to leave behind).

    Processes and threads both wait for it; a folder that cannot be opened is not locked (the
    write that follows reports the real problem).
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def merge_section(base: Any, ours: Any, theirs: Any) -> Any:
    """``theirs`` with the changes ``ours`` made to ``base`` (a three-way merge, one level deep).

    For mappings, keys ``ours`` added, changed or removed relative to ``base`` are applied to
    ``theirs``; other keys keep their value on disk. Any other value: ``ours`` when it differs
    from ``base``, else ``theirs``.
    """
    if isinstance(base, Mapping) and isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        out = dict(theirs)
        for key in set(base) | set(ours):
            before, after = base.get(key, _MISSING), ours.get(key, _MISSING)
            if _same(before, after):
                continue
            if after is _MISSING:
                out.pop(key, None)
            else:
                out[key] = after
        return out
    return theirs if _same(base, ours) else ours


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

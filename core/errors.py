"""The one error type raised at the workbench's boundaries (files, uploads, folders, configs)."""

from __future__ import annotations


class WorkbenchError(Exception):
    """A problem with user input or state, with a message a clinician can read.

    Args:
        reason: plain-language explanation of what is wrong and, where possible, what to do.
        source: the file, folder or setting the problem is about (shown first in the message).
    """

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)

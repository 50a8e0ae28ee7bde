"""Did a model's training data change since training? Compared by image content, not file times.

The dataset fingerprint (core.data.datasets) hashes paths, sizes and modification times: right for
caches, wrong for this question. Copying or re-extracting an untouched dataset gives every file
a new time, so the fingerprint differs although no image changed. Here the comparison uses what
the model card records: the held-out file names, the training images' perceptual hashes, and (in
newer cards) ``content_digest``, a hash over every readable file's path and bytes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class DataChanges:
    """Images added, removed or changed in content since training (0 everywhere: unchanged)."""

    added: int = 0
    removed: int = 0
    modified: int = 0
    re_encoded: bool = False  # bytes differ but names and looks match (only newer cards can tell)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.modified or self.re_encoded)

    def sentence(self) -> str:
        """Plain words for the reader, e.g. '3 images added and 1 removed'."""
        parts = [f"{n} {what}" for n, what in ((self.added, "added"), (self.removed, "removed"),
                                               (self.modified, "changed in content")) if n]
        if not parts:
            return ("some files were re-encoded or edited without changing how the images look"
                    if self.re_encoded else "no image changed")
        total = self.added + self.removed + self.modified
        head = parts[0].replace(" ", " image " if total == 1 else " images ", 1)
        return ", ".join([head, *parts[1:-1]]) + (f" and {parts[-1]}" if len(parts) > 1 else "")


def content_digest(readable: pd.DataFrame) -> str:
    """A hash of every readable file's relative path and content sha256 (order-independent)."""
    digest = hashlib.sha256()
    for path, sha in sorted(zip(readable["path"], readable["sha256"])):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:20]


def dataset_changes(card_data: dict[str, Any], readable: pd.DataFrame) -> DataChanges:
    """What changed between the data a model card recorded and a scan of the folder now.

    Args:
        card_data: the card's ``data`` section (``val_files``, ``test_files``, ``train_hashes``,
            optionally ``content_digest``).
        readable: the current scan's readable rows (``path``, ``phash``, ``sha256``).
    Returns:
        Counts of added, removed and modified images. Held-out images are matched by path;
        training images by perceptual hash, so a renamed copy is not a change.
    """
    if card_data.get("content_digest") and card_data["content_digest"] == content_digest(readable):
        return DataChanges()
    held_out = set(card_data.get("val_files") or []) | set(card_data.get("test_files") or [])
    present = set(readable["path"])
    removed = len(held_out - present)
    rest = readable[~readable["path"].isin(held_out)]
    recorded, current = Counter(card_data.get("train_hashes") or []), Counter(rest["phash"])
    gone, new = sum((recorded - current).values()), sum((current - recorded).values())
    modified = min(gone, new)  # a training image whose content changed in place: one gone, one new
    changes = DataChanges(added=new - modified, removed=removed + gone - modified, modified=modified)
    if not changes.changed and card_data.get("content_digest"):
        # Same names and look, different bytes (e.g. re-encoded): say so rather than nothing.
        return DataChanges(re_encoded=True)
    return changes

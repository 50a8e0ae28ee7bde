"""A site's images and a run's training images, read the same way for the site check.

Each file is decoded once; from it come the whole-frame statistics image (the shortcut
check's), one model input per recipe asked for (an ensemble's members may each prepare their
own: head crop or whole frame, and their own size) and file-level facts (size, colour mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.hashing import perceptual_hash
from core.data.imageio import IMAGE_SUFFIXES, DecodedImage, decode_image
from core.data.preprocess import WHOLE_FRAME_ID, prepare
from core.data.shortcut import STAT_SIZE
from core.errors import WorkbenchError

#: a file on disk, or an upload held in memory as (name, bytes): the Predict page never writes uploads to disk
Source = Path | tuple[str, bytes]

MAX_SITE_FILES = 5000  # a site check reads a sample; more files only cost time
FILE_COLUMNS = ("width", "height", "gray_mode", "colourfulness")  # facts of the file, not of the picture
GRAY_MODES = {"L", "I", "I;16", "I;16B", "I;16L", "F", "1", "LA", "P", "MONOCHROME1", "MONOCHROME2"}


@dataclass
class ImageSample:
    """Decoded images of one side of the comparison."""

    paths: list[Path | str]  # an upload's name
    stat_images: np.ndarray  # (N, STAT_SIZE, STAT_SIZE) uint8 whole frames
    model_images: dict[tuple[str, int], np.ndarray]  # (preprocessing, size) -> (N, S, S, 1) uint8
    files: pd.DataFrame  # width, height, gray_mode (0/1), colourfulness
    hashes: np.ndarray | None = None  # (N, W) perceptual hashes (core.data.hashing) of the decoded frames
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.paths)


def list_site_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (any depth; sub-folder names are ignored), sorted.

    Files with an image suffix, or none (DICOM often has none); hidden files and links skipped.

    Raises:
        WorkbenchError: the folder does not exist or holds no image files.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise WorkbenchError("this folder does not exist or is not a folder", str(folder))
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES or path.suffix == "":
            found.append(path)
    if not found:
        raise WorkbenchError("no image files in this folder (JPEG, PNG, BMP, TIFF or DICOM)", str(folder))
    return found


def _name(source: Source, root: Path | None) -> Path | str:
    if isinstance(source, tuple):
        return source[0]
    return source.relative_to(root) if root else source


def read_sample(paths: Sequence[Source], inputs: Sequence[tuple[str, int]], root: Path | None = None,
                workers: int = 4) -> ImageSample:
    """Decode ``paths`` once each (unreadable files listed, the rest used).

    Args:
        paths: files, or uploads as (name, bytes).
        inputs: the (preprocessing id, image size) pairs to prepare every image with: one for a
            single model, one per distinct member recipe for an ensemble.
    """
    inputs = list(dict.fromkeys((str(pre), int(size)) for pre, size in inputs))  # each recipe once, in order

    def one(source: Source):
        try:
            img = decode_image(source[1], name=source[0]) if isinstance(source, tuple) else decode_image(source)
        except WorkbenchError as exc:
            return exc.reason
        return _describe(img, inputs)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, paths))
    ok = [(_name(p, None), r) for p, r in zip(paths, results) if not isinstance(r, str)]
    bad = [(str(_name(p, root)), r) for p, r in zip(paths, results) if isinstance(r, str)]
    return _sample(ok, inputs, bad)


def sample_of_images(named: Sequence[tuple[str, DecodedImage]], inputs: Sequence[tuple[str, int]] = ()) -> ImageSample:
    """The same sample from images already decoded (a prediction's uploads): nothing is read twice.

    ``inputs`` may be empty when the networks' features come from elsewhere (the prediction's own pass).
    """
    inputs = list(dict.fromkeys((str(pre), int(size)) for pre, size in inputs))
    return _sample([(name, _describe(img, inputs)) for name, img in named], inputs, [])


def _describe(img: DecodedImage, inputs: Sequence[tuple[str, int]]) -> tuple:
    """(statistics frame, model inputs, perceptual hash, file facts) of one decoded image."""
    stat = prepare(img, STAT_SIZE, WHOLE_FRAME_ID)[..., 0]
    model = [prepare(img, size, pre) for pre, size in inputs]
    w, h = img.size
    return stat, model, perceptual_hash(img.pixels), (w, h, float(img.source_mode in GRAY_MODES), float(img.colourfulness))


def _sample(ok: list[tuple[Path | str, tuple]], inputs: Sequence[tuple[str, int]],
            bad: list[tuple[str, str]]) -> ImageSample:
    files = pd.DataFrame([r[3] for _, r in ok], columns=list(FILE_COLUMNS), dtype=np.float64)
    return ImageSample(
        paths=[p for p, _ in ok],
        stat_images=np.stack([r[0] for _, r in ok]) if ok else np.zeros((0, STAT_SIZE, STAT_SIZE), np.uint8),
        model_images={key: np.stack([r[1][j] for _, r in ok]) if ok else np.zeros((0, key[1], key[1], 1), np.uint8)
                      for j, key in enumerate(inputs)},
        hashes=np.stack([r[2] for _, r in ok]) if ok else None, files=files, unreadable=bad)


"""Dataset sources behind one interface: a folder, an uploaded zip, or the synthetic demo.

Opening a dataset only lists files (fast). Decoding, hashing and duplicate analysis happen
in :mod:`core.scan`; splitting in :mod:`core.splits`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.classes import map_class_folders
from core.errors import WorkbenchError
from core.imageio import IMAGE_SUFFIXES

#: Folder names that mean "this is a split" in the Kaggle layout (case-insensitive).
SPLIT_FOLDERS = {"training": "train", "train": "train", "testing": "test", "test": "test",
                 "validation": "val", "val": "val"}


@dataclass
class Dataset:
    """A listed dataset: its files with class and (if the folder has them) split."""

    name: str
    root: Path
    kind: str  # demo | folder | zip
    synthetic: bool
    layout: str  # "splits" (Training/Testing folders) or "flat" (class folders only)
    class_names: list[str]  # canonical, sorted: the model output order
    files: pd.DataFrame  # columns: path (relative to root), label, source_split ('' if none)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found while listing
    fingerprint: str = ""  # changes whenever any file is added, removed or modified

    @property
    def title(self) -> str:
        return f"{self.name} (SYNTHETIC demo)" if self.synthetic else self.name

    def abspath(self, rel: str) -> Path:
        return self.root / rel


def _is_candidate(path: Path) -> bool:
    """Image suffixes, plus files with no suffix (DICOM exports often have none)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or path.suffix == ""


def _list_class_folder(folder: Path, root: Path, problems: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """Files under a class folder as (relative path, size, mtime_ns); problems are recorded."""
    out = []

    def onerror(exc: OSError) -> None:
        problems.append((os.path.relpath(exc.filename, root), "permission denied: folder cannot be read"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            p = Path(dirpath) / fname
            rel = p.relative_to(root).as_posix()
            if not _is_candidate(p):
                problems.append((rel, f"skipped: '{p.suffix}' is not an image type"))
                continue
            try:
                st = p.stat()
            except OSError as exc:
                problems.append((rel, f"cannot be read ({exc.strerror})"))
                continue
            out.append((rel, st.st_size, st.st_mtime_ns))
    return out


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        raise WorkbenchError("permission denied: the folder cannot be read", str(folder)) from None


def open_folder(root: str | Path, *, kind: str = "folder", name: str | None = None, synthetic: bool = False) -> Dataset:
    """List a dataset folder in the Kaggle layout (Training/<class>/...) or flat (<class>/...).

    Raises:
        WorkbenchError: missing folder, no class subfolders, unknown class names, or fewer
            than two classes with images. Unreadable files are recorded, not fatal.
    """
    root = Path(root).expanduser()
    label = str(root)
    if not root.exists():
        raise WorkbenchError("the folder does not exist", label)
    if not root.is_dir():
        raise WorkbenchError("this is a file, not a folder", label)
    top = _subdirs(root)
    split_dirs = {d: SPLIT_FOLDERS[d.name.lower()] for d in top if d.name.lower() in SPLIT_FOLDERS}
    layout = "splits" if split_dirs else "flat"
    groups = list(split_dirs.items()) if split_dirs else [(root, "")]
    problems: list[tuple[str, str]] = []
    rows: list[tuple[str, str, str, int, int]] = []
    for folder, split in groups:
        class_dirs = _subdirs(folder)
        if not class_dirs:
            raise WorkbenchError(
                "no class subfolders found; expected one folder per class (e.g. glioma/, "
                "meningioma/, notumor/, pituitary/), optionally inside Training/ and Testing/",
                str(folder),
            )
        mapping = map_class_folders([d.name for d in class_dirs], str(folder))
        for d in class_dirs:
            listed = _list_class_folder(d, root, problems)
            if not listed:
                problems.append((d.relative_to(root).as_posix() + "/", "empty class folder: no images"))
            rows.extend((rel, mapping[d.name], split, size, mtime) for rel, size, mtime in listed)
    files = pd.DataFrame(rows, columns=["path", "label", "source_split", "size", "mtime_ns"])
    present = sorted(files["label"].unique()) if len(files) else []
    if len(present) < 2:
        raise WorkbenchError(
            f"a classifier needs images of at least two classes; found {len(present)} "
            f"({', '.join(present) or 'none'})",
            label,
        )
    if layout == "splits" and "train" not in set(files["source_split"]):
        raise WorkbenchError("the folder has split folders but no Training/ folder with images", label)
    digest = hashlib.sha256()
    for rel, size, mtime in files[["path", "size", "mtime_ns"]].itertuples(index=False):
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return Dataset(
        name=name or root.name,
        root=root,
        kind=kind,
        synthetic=synthetic,
        layout=layout,
        class_names=present,
        files=files[["path", "label", "source_split"]].reset_index(drop=True),
        problems=problems,
        fingerprint=digest.hexdigest()[:20],
    )


def open_demo(seed: int = 0) -> Dataset:
    """The built-in synthetic phantom dataset (generated on first use)."""
    from core.demo import demo_dir

    return open_folder(demo_dir(seed), kind="demo", name="Demo phantoms", synthetic=True)


def open_zip(data: bytes, filename: str = "upload.zip") -> Dataset:
    """Extract an uploaded zip safely into the cache and open it as a folder."""
    from core.paths import cache_dir
    from core.safezip import extract_zip

    dest_root = cache_dir() / "uploads"
    dest_root.mkdir(parents=True, exist_ok=True)
    folder = extract_zip(data, dest_root, filename)
    return open_folder(folder, kind="zip", name=Path(filename).stem)


#: Source registry: the Explorer page lists these keys.
SOURCES: dict[str, Callable[..., Dataset]] = {
    "demo": open_demo,
    "folder": open_folder,
    "zip": open_zip,
}


def open_default() -> Dataset:
    """The dataset named by WORKBENCH_DATA_DIR, else the demo."""
    from core.paths import default_data_dir

    path = default_data_dir()
    return open_folder(path) if path else open_demo()

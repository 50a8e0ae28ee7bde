"""Dataset sources behind one interface: a folder, an uploaded zip, or the synthetic demo.

Opening a dataset only lists files (fast). Decoding, hashing and duplicate analysis happen
in :mod:`core.data.scan`; splitting in :mod:`core.data.splits`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.classes import SPLIT_FOLDERS, map_class_folders
from core.data.imageio import IMAGE_SUFFIXES
from core.data.safeio import OUTSIDE_ROOTS, allowed_roots, is_inside, not_regular_reason
from core.data.safezip import extract_zip
from core.errors import WorkbenchError
from core.options import Option, Registry


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


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _list_class_folder(folder: Path, root: Path, problems: list[tuple[str, str]],
                       allowed: list[Path]) -> list[tuple[str, int, int]]:
    """Files under a class folder as (relative path, size, mtime_ns); problems are recorded.

    Depth-first in name order with an explicit stack (no recursion limit on deep trees). A
    link is followed only when its target stays inside ``allowed``; each real folder is
    listed once (a link back up is a loop); anything that is not a regular file is skipped
    with the reason, and never opened.
    """
    out: list[tuple[str, int, int]] = []
    seen = {_inode(root / up) for up in folder.relative_to(root).parents}  # the folders above
    stack = [folder]
    while stack:
        current = stack.pop()
        where = current.relative_to(root).as_posix() + "/"
        try:
            key = _inode(current)
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            denied = isinstance(exc, PermissionError)
            problems.append((where, "permission denied: folder cannot be read" if denied
                             else f"folder cannot be read ({exc.strerror})"))
            continue
        if key in seen:
            problems.append((where, "skipped: a link back to a folder already listed (a loop)"))
            continue
        seen.add(key)
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            rel = p.relative_to(root).as_posix()
            if entry.is_symlink() and not is_inside(p, allowed):
                problems.append((rel + ("/" if p.is_dir() else ""), OUTSIDE_ROOTS))
                continue
            try:
                st = p.stat()
            except OSError as exc:
                problems.append((rel, f"cannot be read ({exc.strerror})"))
                continue
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(p)
            elif not _is_candidate(p):
                problems.append((rel, f"skipped: '{p.suffix}' is not an image type"))
            elif not stat.S_ISREG(st.st_mode):
                problems.append((rel, not_regular_reason(st.st_mode)))
            else:
                out.append((rel, st.st_size, st.st_mtime_ns))
        stack.extend(reversed(subdirs))
    return out


def _subdirs(folder: Path, root: Path, problems: list[tuple[str, str]], allowed: list[Path]) -> list[Path]:
    """Visible subfolders; one linked outside ``allowed`` is recorded as a problem, not followed."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except PermissionError:
        raise WorkbenchError("permission denied: the folder cannot be read", str(folder)) from None
    out = []
    for p in entries:
        if p.is_symlink() and not is_inside(p, allowed):
            if p.is_dir():
                problems.append((p.relative_to(root).as_posix() + "/", OUTSIDE_ROOTS))
        elif p.is_dir():
            out.append(p)
    return out


def open_folder(root: str | Path, *, kind: str = "folder", name: str | None = None, synthetic: bool = False) -> Dataset:
    """List a dataset folder in the Kaggle layout (Training/<class>/...) or flat (<class>/...).

    Raises:
        WorkbenchError: missing folder, no class subfolders, unknown class names, or fewer
            than two classes with images. Unreadable files are recorded, not fatal.
    """
    from core.paths import check_path_text

    check_path_text(root)
    root = Path(root).expanduser()
    label = str(root)
    if not root.exists():
        raise WorkbenchError("the folder does not exist", label)
    if not root.is_dir():
        raise WorkbenchError("this is a file, not a folder", label)
    allowed = allowed_roots(root)  # links are followed only into the dataset or a data root
    problems: list[tuple[str, str]] = []
    top = _subdirs(root, root, problems, allowed)
    split_dirs = {d: SPLIT_FOLDERS[d.name.lower()] for d in top if d.name.lower() in SPLIT_FOLDERS}
    layout = "splits" if split_dirs else "flat"
    groups = list(split_dirs.items()) if split_dirs else [(root, "")]
    files = _list_groups(groups, root, problems, allowed)
    present = sorted(files["label"].unique()) if len(files) else []
    if len(present) < 2:
        raise WorkbenchError(
            f"a classifier needs images of at least two classes; found {len(present)} "
            f"({', '.join(present) or 'none'})",
            label,
        )
    if layout == "splits" and "train" not in set(files["source_split"]):
        raise WorkbenchError("the folder has split folders but no Training/ folder with images", label)
    return Dataset(
        name=name or root.name,
        root=root,
        kind=kind,
        synthetic=synthetic,
        layout=layout,
        class_names=present,
        files=files[["path", "label", "source_split"]].reset_index(drop=True),
        problems=list(dict.fromkeys(problems)),  # a flat layout lists the root's folders twice
        fingerprint=_fingerprint(files),
    )


def _list_groups(groups: list[tuple[Path, str]], root: Path, problems: list[tuple[str, str]],
                 allowed: Any) -> pd.DataFrame:
    """Every image of every (folder, split) group: path, label, source_split, size, mtime_ns."""
    rows: list[tuple[str, str, str, int, int]] = []
    for folder, split in groups:
        class_dirs = _subdirs(folder, root, problems, allowed)
        if not class_dirs:
            raise WorkbenchError(
                "no class subfolders found; expected one folder per class (e.g. glioma/, "
                "meningioma/, notumor/, pituitary/), optionally inside Training/ and Testing/",
                str(folder),
            )
        mapping = map_class_folders([d.name for d in class_dirs], str(folder))
        for d in class_dirs:
            listed = _list_class_folder(d, root, problems, allowed)
            if not listed:
                problems.append((d.relative_to(root).as_posix() + "/", "empty class folder: no images"))
            rows.extend((rel, mapping[d.name], split, size, mtime) for rel, size, mtime in listed)
    return pd.DataFrame(rows, columns=["path", "label", "source_split", "size", "mtime_ns"])


def _fingerprint(files: pd.DataFrame) -> str:
    """Paths, sizes and file times: what the caches key on (content is checked by data_changes)."""
    digest = hashlib.sha256()
    for rel, size, mtime in files[["path", "size", "mtime_ns"]].itertuples(index=False):
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:20]


def open_demo(seed: int = 0) -> Dataset:
    """The built-in synthetic phantom dataset (generated on first use)."""
    from core.data.demo import demo_dir

    return open_folder(demo_dir(seed), kind="demo", name="Demo phantoms", synthetic=True)


def open_zip(data: bytes, filename: str = "upload.zip") -> Dataset:
    """Extract an uploaded zip safely into the cache and open it as a folder."""
    from core.paths import cache_dir

    try:
        dest_root = cache_dir() / "uploads"
        dest_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the reason only: the exception's text names a server path
        raise WorkbenchError(f"uploads cannot be stored on the server ({exc.strerror or type(exc).__name__}); "
                             "an administrator should check WORKBENCH_CACHE_DIR", filename) from None
    folder = extract_zip(data, dest_root, filename)
    try:
        return open_folder(folder, kind="zip", name=Path(filename).stem)
    except WorkbenchError as exc:
        # Refused after extraction (e.g. one class folder): remove what was unpacked, and say where
        # the problem is inside the zip, never where the server keeps uploads.
        extracted = dest_root / folder.relative_to(dest_root).parts[0]
        inside = Path(exc.source).relative_to(extracted) if Path(exc.source).is_relative_to(extracted) else None
        reason = exc.reason.replace(str(extracted) + "/", "").replace(str(extracted), "")
        shutil.rmtree(extracted, ignore_errors=True)
        where = f"{filename} ({inside}/)" if inside is not None and str(inside) != "." else filename
        raise WorkbenchError(reason, where) from None


#: Source registry: the Explorer page lists these keys.
#: Where a dataset can come from; the Explorer's source choice lists these (builder: the opener).
SOURCES = Registry("dataset source", [
    Option("demo", "Synthetic demo", "Synthetic phantom slices drawn by code (not patient data), with a few planted "
           "duplicates so the quality report has something to find.", open_demo),
    Option("folder", "Folder on the server", "One folder per class (glioma, meningioma, notumor, pituitary), "
           "optionally inside Training/ and Testing/.", open_folder),
    Option("zip", "Upload a .zip", "A zip of class folders, checked and unpacked on the server.", open_zip),
])


def open_default() -> Dataset:
    """The dataset named by WORKBENCH_DATA_DIR, else the demo."""
    from core.paths import default_data_dir

    path = default_data_dir()
    return open_folder(path) if path else open_demo()

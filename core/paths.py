"""Where the workbench reads and writes, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import WorkbenchError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


#: Linux limits (NAME_MAX, PATH_MAX): longer text cannot name a file, and the system call fails
#: with "File name too long", whose message would echo the whole server path.
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4095


def check_path_text(path: str | Path, label: str | None = None) -> None:
    """Refuse a typed path that no file system can hold (a NUL character, a name over 255 bytes, a
    path over 4095 bytes) with a clear message that does not repeat the path."""
    text = str(path)
    if "\0" in text:
        raise WorkbenchError("the path contains a NUL character, which no file or folder name can hold; "
                             "check what was typed or pasted", label or repr(text))
    encoded = text.encode("utf-8", "surrogatepass")  # bytes are what the limits count
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > MAX_NAME_BYTES or len(encoded) > MAX_PATH_BYTES:
        what = (f"one name in it has {longest} bytes" if longest > MAX_NAME_BYTES
                else f"it has {len(encoded)} bytes")
        raise WorkbenchError(f"the path is too long ({what}; file systems allow {MAX_NAME_BYTES} per name and "
                             f"{MAX_PATH_BYTES} in all); check what was typed or pasted",
                             label or "the typed path")


def _setting_folder(variable: str, path: Path) -> Path:
    """``path`` from ``variable``; refused when it names a file (or cannot be a path at all)."""
    check_path_text(path, variable)
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"{variable} names a file, not a folder; set it to a folder", str(path))
    return path


def cache_dir() -> Path:
    """Scan caches, extracted zips and the generated demo dataset (WORKBENCH_CACHE_DIR).

    Raises:
        WorkbenchError: the setting names a file. (A folder that cannot be created raises
            OSError, which the cache treats as "work uncached": core.cachefs.)
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mri-workbench"
    path = _setting_folder("WORKBENCH_CACHE_DIR", Path(os.environ.get("WORKBENCH_CACHE_DIR", default)))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """The model registry (WORKBENCH_MODELS_DIR, default: the project's models/ folder).

    Not created here: a mistyped setting must not quietly become a new, empty registry. The
    folder is created when the first run is published (core.models.runs.staging_dir).

    Raises:
        WorkbenchError: the setting names a file.
    """
    return _setting_folder("WORKBENCH_MODELS_DIR", Path(os.environ.get("WORKBENCH_MODELS_DIR", PROJECT_ROOT / "models")))


def default_data_dir() -> Path | None:
    """The dataset opened at start (WORKBENCH_DATA_DIR); None means the demo dataset."""
    value = os.environ.get("WORKBENCH_DATA_DIR")
    return Path(value).expanduser() if value else None


def data_roots() -> list[Path]:
    """Folders under which a dataset path typed in the UI must lie (WORKBENCH_DATA_ROOTS).

    os.pathsep-separated. Defaults to the default data folder (if set) and the project's
    sibling ``shared/data`` folder, so a shared deployment never exposes the whole disk.
    """
    value = os.environ.get("WORKBENCH_DATA_ROOTS")
    if value:
        roots = [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    else:
        roots = [PROJECT_ROOT.parent / "shared" / "data"]
        if default_data_dir() is not None:
            roots.append(default_data_dir())
    return [r.resolve() for r in roots]


def check_under_data_roots(path: str | Path) -> Path:
    """Resolve a user-typed folder and refuse it unless it lies under a configured data root."""
    check_path_text(path)
    resolved = Path(path).expanduser().resolve()
    for root in data_roots():
        if resolved == root or root in resolved.parents:
            return resolved
    allowed = ", ".join(str(r) for r in data_roots()) or "(none configured)"
    raise WorkbenchError(
        f"this folder is outside the allowed data folders ({allowed}); an administrator can "
        "add folders with the WORKBENCH_DATA_ROOTS environment variable",
        str(path),
    )

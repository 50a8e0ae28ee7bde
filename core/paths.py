"""Where the workbench reads and writes, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import WorkbenchError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Scan caches, extracted zips and the generated demo dataset (WORKBENCH_CACHE_DIR)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mri-workbench"
    path = Path(os.environ.get("WORKBENCH_CACHE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """The model registry (WORKBENCH_MODELS_DIR, default: the project's models/ folder)."""
    path = Path(os.environ.get("WORKBENCH_MODELS_DIR", PROJECT_ROOT / "models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


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

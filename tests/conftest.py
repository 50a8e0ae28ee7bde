"""Shared fixtures: isolated cache/model folders, the demo dataset, real data, tiny image writers.

Sections:
    1. Isolation (autouse): every test gets its own cache and models folder.
    2. Datasets: the synthetic demo (generated once per session) and the real Kaggle copy.
    3. Tiny images: helpers that write small PNG/JPEG files into class folders.

Add new fixtures to the section they belong to (or a new, titled section at the end).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "brain-tumor-mri"
TINY = 32  # default side of test images; core refuses anything below 16 px

# Tests sit in sub-folders that mirror core (tests/data, tests/inference, ...) without __init__.py
# files, and some import helpers from a test in another folder (``from test_dicom import
# make_dicom``). pytest only puts a test's own folder on sys.path, and only once it collects it, so
# such an import would depend on collection order (and fail for a single file): put every test
# folder on sys.path here, before any test module is imported. Test basenames must stay unique.
TESTS_DIR = Path(__file__).resolve().parent
for _folder in sorted(TESTS_DIR.iterdir()):
    if _folder.is_dir() and any(_folder.glob("test_*.py")) and not (_folder / "__init__.py").exists() \
            and str(_folder) not in sys.path:
        sys.path.append(str(_folder))


# --------------------------------------------------------------------------------------------
# 1. Isolation
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_workbench_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """Point the cache and the model registry at fresh tmp folders for every test.

    Tests must never read a stale scan from the user's ~/.cache, nor write into the
    committed models/ folder.
    """
    base = tmp_path_factory.mktemp("workbench")
    dirs = {"cache": base / "cache", "models": base / "models"}
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(dirs["cache"]))
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(dirs["models"]))
    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("WORKBENCH_DATA_ROOTS", raising=False)
    return dirs


# --------------------------------------------------------------------------------------------
# 2. Datasets
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic demo dataset (Kaggle layout), generated once per test session.

    Read-only by convention: copy it (``shutil.copytree``) before modifying anything.
    """
    from core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The public Kaggle Training split in ../shared/data (skips the test when absent)."""
    if not (REAL_DATA_DIR / "Training").is_dir():
        pytest.skip(f"real dataset not found at {REAL_DATA_DIR}")
    return REAL_DATA_DIR


# --------------------------------------------------------------------------------------------
# 3. Tiny images
# --------------------------------------------------------------------------------------------


def smooth_image(seed: int, size: int = TINY) -> np.ndarray:
    """A uint8 (size, size) image of random blobs; different seeds give different files.

    Fine wherever images only need to be distinct. For perceptual-hash tests use
    ``core.data.demo.phantom`` instead: such smooth images have many near-zero DCT coefficients,
    so their pHash bits flip under re-encoding.
    """
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size, size)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), size / 10)
    blurred = (blurred - blurred.min()) / (np.ptp(blurred) + 1e-6)
    return (blurred * 255).astype(np.uint8)


def phantom_head(shape: tuple[int, int], tissue: int, lesion: int, spread: int, seed: int,
                 background: int = 12) -> np.ndarray:
    """A phantom slice: a textured ellipse (the head) with a brighter disc, on a dark noisy background
    (grey levels below ``background``), as in a scan."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.uint8)
    h, w = shape
    cv2.ellipse(img, (w // 2, h // 2), (int(0.35 * w), int(0.4 * h)), 0, 0, 360, tissue, -1)
    cv2.circle(img, (w // 2 + w // 10, h // 2 - h // 10), max(4, w // 12), lesion, -1)
    noisy = img.astype(int) + rng.integers(0, spread, shape)
    return np.where(img > 0, np.clip(noisy, 0, 255), rng.integers(0, background, shape)).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "PNG", **save_args) -> bytes:
    """Encode an array (2-D gray or (H, W, 3) RGB) with Pillow and return the file bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **save_args)
    return buf.getvalue()


def write_image(path: Path, pixels: np.ndarray | None = None, seed: int = 0, size: int = TINY) -> Path:
    """Write a tiny image; the format follows the suffix (.png, .jpg, .bmp, .tif)."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}[
        path.suffix.lower()
    ]
    pixels = smooth_image(seed, size) if pixels is None else pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(pixels, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    return path


def write_class_tree(
    root: Path,
    counts: dict[str, int],
    suffix: str = ".png",
    seed: int = 0,
    size: int = TINY,
) -> list[Path]:
    """Write ``counts[folder]`` distinct tiny images into ``root/<folder>/``; return the paths.

    Folder names are used verbatim, so variants such as 'Training/glioma_tumor' work too.
    """
    paths = []
    k = seed * 10_000
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            paths.append(write_image(root / folder / f"img_{i:03d}{suffix}", seed=k, size=size))
            k += 1
    return paths


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (size, mtime_ns): compare before/after to prove read-only."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def image_writer() -> Callable[..., Path]:
    """``image_writer(path, pixels=None, seed=0, size=32)`` writes one tiny image file."""
    return write_image


@pytest.fixture
def class_tree() -> Callable[..., list[Path]]:
    """``class_tree(root, {"glioma": 3, ...}, suffix=".png", seed=0)`` writes class folders."""
    return write_class_tree


@pytest.fixture
def pixels() -> Callable[..., np.ndarray]:
    """``pixels(seed, size=32)``: a smooth random uint8 image (see :func:`smooth_image`)."""
    return smooth_image


@pytest.fixture
def encode_image() -> Callable[..., bytes]:
    """``encode_image(array, "PNG", **save_args)``: the bytes of an encoded image."""
    return encode


@pytest.fixture
def disk_snapshot() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """``disk_snapshot(root)``: {relative path: (size, mtime_ns)} for everything under root."""
    return snapshot


@pytest.fixture
def kaggle_tree(tmp_path: Path) -> Path:
    """A tiny Kaggle-layout dataset: Training/ and Testing/ with four classes, 3 + 2 images each."""
    classes: Iterable[str] = ("glioma", "meningioma", "notumor", "pituitary")
    write_class_tree(tmp_path / "kaggle", {f"Training/{c}": 3 for c in classes}, seed=1)
    write_class_tree(tmp_path / "kaggle", {f"Testing/{c}": 2 for c in classes}, seed=2)
    return tmp_path / "kaggle"


# --------------------------------------------------------------------------------------------
# 4. Trained models (owner: prediction & Grad-CAM; the fixtures live in fixtures_models.py)
# --------------------------------------------------------------------------------------------

from fixtures_models import (  # noqa: E402, F401 (pytest fixtures)
    forward_inputs,
    tiny_ensemble,
    tiny_ensemble_copy,
    tiny_predictor,
    tiny_registry,
    tiny_run,
)


@pytest.fixture
def extend_registry():
    """``extend_registry(registry, entry)`` registers ``entry`` until the test ends (a tiny
    architecture, an altered checksum); core registries are read-only mappings otherwise."""
    import contextlib

    with contextlib.ExitStack() as stack:
        yield lambda registry, entry: stack.enter_context(registry.extended(entry))

"""A built-in synthetic dataset: MRI-like phantom slices with class-specific lesions.

SYNTHETIC: these are drawn by code, not scanned from people. They exist so every page can be
tried on a fresh install, and for tests. Lesion placement follows textbook appearance:
glioma = irregular infiltrative intra-axial mass with oedema; meningioma = sharply bounded,
extra-axial, dural-based mass against the skull; pituitary = small mass at the sella, low on
the midline; no tumour = no lesion.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_dir
from core.classes import CANONICAL_CLASSES
from core.paths import cache_dir

DEMO_VERSION = 1
DEMO_SIZE = 128
DEMO_COUNTS = {"Training": 75, "Testing": 20}  # per class
#: A few planted copies so the data-quality report has something true to show.
PLANTED_EXACT = 3
PLANTED_NEAR = 3


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def phantom(label: str, rng: np.random.Generator, size: int = DEMO_SIZE) -> np.ndarray:
    """Draw one uint8 (size, size) phantom slice of the given canonical class."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cx = s / 2 + rng.uniform(-3, 3)
    cy = s / 2 + rng.uniform(-3, 3)
    ax = s * rng.uniform(0.36, 0.41)  # head half-width
    ay = s * rng.uniform(0.42, 0.46)  # head half-height
    r_head = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    skull = (r_head <= 1.0) & (r_head > 0.80)
    brain = r_head <= 0.78
    img = np.zeros((s, s), np.float32)
    img[skull] = 0.85  # bright scalp fat / diploe on T1
    texture = 0.06 * _smooth_noise(rng, s, 1.5) + 0.05 * _smooth_noise(rng, s, 4)
    grey_white = 0.45 + 0.08 * np.cos(np.sqrt(r_head) * rng.uniform(18, 24))  # cortical folding
    img[brain] = (grey_white + texture)[brain]
    # Lateral ventricles: two dark crescents either side of the midline.
    for side in (-1, 1):
        vx, vy = cx + side * s * 0.07, cy - s * rng.uniform(0.0, 0.05)
        vent = ((xx - vx) / (s * 0.035)) ** 2 + ((yy - vy) / (s * 0.12)) ** 2 <= 1
        img[vent & brain] = 0.12
    lesion = _lesion(label, rng, xx, yy, cx, cy, ax, ay, s, brain)
    if lesion is not None:
        mask, value = lesion
        img = np.where(mask > 0, img * (1 - mask) + value * mask, img)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.025, img.shape).astype(np.float32)
    # Rician-like background noise outside the head, as real magnitude images have.
    img = np.abs(img)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _lesion(label, rng, xx, yy, cx, cy, ax, ay, s, brain):
    if label == "notumor":
        return None
    if label == "glioma":
        # Irregular infiltrative mass: thresholded smooth noise inside a blob, with oedema halo.
        gx = cx + rng.uniform(-0.45, 0.45) * ax
        gy = cy + rng.uniform(-0.45, 0.3) * ay
        radius = s * rng.uniform(0.09, 0.15)
        d = np.sqrt((xx - gx) ** 2 + (yy - gy) ** 2) / radius
        ragged = d + 0.45 * _smooth_noise(rng, s, 2.5)
        core = (ragged < 1.0) & brain
        oedema = (ragged < 1.6) & brain & ~core
        mask = np.zeros_like(xx)
        mask[oedema] = 0.5
        mask[core] = 1.0
        necrosis = (ragged < 0.45) & brain
        value = np.where(necrosis, 0.15, 0.75).astype(np.float32)
        value[oedema] = 0.62
        return mask, value
    if label == "meningioma":
        # Sharply bounded round mass whose base sits on the inner skull table.
        angle = rng.uniform(0, 2 * np.pi)
        radius = s * rng.uniform(0.07, 0.11)
        bx = cx + np.cos(angle) * (ax * 0.88 - radius * 0.6)
        by = cy + np.sin(angle) * (ay * 0.88 - radius * 0.6)
        d = np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)
        mask = (d <= radius).astype(np.float32)
        return mask, np.full_like(xx, 0.9)
    if label == "pituitary":
        # Small mass at the sella turcica: low on the midline.
        px = cx + rng.uniform(-2, 2)
        py = cy + ay * rng.uniform(0.45, 0.58)
        radius = s * rng.uniform(0.035, 0.06)
        d = np.sqrt(((xx - px) / 1.2) ** 2 + (yy - py) ** 2)
        mask = (d <= radius).astype(np.float32)
        return mask, np.full_like(xx, 0.95)
    raise ValueError(f"unknown class {label}")


def generate_demo(dest: Path, seed: int = 0) -> Path:
    """Write the demo dataset (Kaggle layout: Training/ and Testing/) into ``dest``; return it.

    Built under a unique temporary name and renamed into place (:func:`core.atomic.atomic_dir`):
    readers never see a half-written dataset, and when several sessions generate it at once the
    first complete copy wins.
    """
    with atomic_dir(dest) as tmp:
        _write_demo(tmp, seed)
    return dest


def _write_demo(tmp: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {"Training": [], "Testing": []}
    for split, count in DEMO_COUNTS.items():
        for label in CANONICAL_CLASSES:
            folder = tmp / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                path = folder / f"{label}_{split[:2].lower()}_{i:03d}.png"
                cv2.imwrite(str(path), phantom(label, rng))
                written[split].append(path)
    # Planted problems, documented in the README: exact copies within Training, and shifted
    # near-copies of Training images placed in Testing (a cross-split leak).
    train = written["Training"]
    for k in range(PLANTED_EXACT):
        src = train[k * 37]
        shutil.copyfile(src, src.with_name(src.stem + "_copy.png"))
    for k in range(PLANTED_NEAR):
        src = train[k * 53 + 11]
        img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
        shifted = np.roll(img, 1, axis=1)
        label = src.parent.name
        cv2.imwrite(str(tmp / "Testing" / label / f"{src.stem}_near.png"), shifted)
    (tmp / "SYNTHETIC.txt").write_text(
        "Synthetic phantom slices generated by core/data/demo.py. Not real patient data.\n"
    )


def demo_dir(seed: int = 0) -> Path:
    """The demo dataset folder, generated on first use (a few seconds)."""
    dest = cache_dir() / f"demo-v{DEMO_VERSION}-seed{seed}"
    if not dest.exists():
        generate_demo(dest, seed)
    return dest

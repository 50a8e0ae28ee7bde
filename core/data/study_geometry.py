"""The geometry of a DICOM series from its headers alone: split a series that mixes slice sizes or
orientations, order the slices along the slice normal, and check the stack (gaps, duplicates,
gantry tilt). Pure numpy on :class:`FrameHeader` records; nothing here reads a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

PARALLEL = 0.999  # |cos| between two slice normals (or row directions) that count as the same orientation
TILT_DEGREES = 0.5  # stack direction vs slice normal beyond this is a tilted (sheared) stack
GAP = 1.5  # a step above this many median spacings means slices are missing


@dataclass
class FrameHeader:
    """The header facts of one slice (a single-frame file or one frame of a multi-frame file)."""

    name: str
    frame: int | None  # index inside a multi-frame file; None for a single-frame file
    uid: str
    rows: int
    cols: int
    iop: np.ndarray | None  # (6,) row and column direction cosines
    ipp: np.ndarray | None  # (3,) position of the first pixel, mm
    instance: int | None
    modality: str
    syntax_error: str | None


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    return n / (np.linalg.norm(n) or 1.0)


def orientation_name(iop: np.ndarray | None) -> str:
    if iop is None:
        return "unknown"
    n = np.abs(_normal(iop))
    name = ("sagittal", "coronal", "axial")[int(n.argmax())]
    return name if n.max() >= 0.8 else f"oblique (nearest {name})"


def split_series(frames: list[FrameHeader]) -> list[tuple[list[FrameHeader], str]]:
    """Parts of one series with one slice size and one orientation each, with why it was split."""
    parts: list[list[FrameHeader]] = []
    for f in frames:
        for part in parts:
            g = part[0]
            same_size = (g.rows, g.cols) == (f.rows, f.cols)
            same_dir = (g.iop is None) == (f.iop is None) and (
                g.iop is None or (abs(float(np.dot(_normal(g.iop), _normal(f.iop)))) >= PARALLEL
                                  and abs(float(np.dot(g.iop[:3], f.iop[:3]))) >= PARALLEL))
            if same_size and same_dir:
                part.append(f)
                break
        else:
            parts.append([f])
    if len(parts) == 1:
        return [(parts[0], "")]
    sizes = {(p[0].cols, p[0].rows) for p in parts}
    dirs = {orientation_name(p[0].iop) for p in parts}
    why = []
    if len(sizes) > 1:
        why.append("image sizes " + ", ".join(f"{w}×{h}" for w, h in sorted(sizes)))
    if len(dirs) > 1 or len(sizes) == 1:
        why.append("orientations " + ", ".join(sorted(dirs)))
    reason = (f"This series mixes {' and '.join(why)}; it was split into {len(parts)} parts, one per size and "
              "orientation, and each part is read on its own.")
    return [(p, reason) for p in parts]


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def order_frames(frames: list[FrameHeader]) -> tuple[list[FrameHeader], list[float | None], str, list[str], list[str]]:
    """Frames in stack order, their positions along the normal, how ordered, warnings, flags."""
    warnings: list[str] = []
    flags: list[str] = []
    if all(f.iop is not None and f.ipp is not None for f in frames):
        normal = _normal(frames[0].iop)
        pos = [float(np.dot(f.ipp, normal)) for f in frames]
        idx = sorted(range(len(frames)), key=lambda i: pos[i])
        ordered, positions = [frames[i] for i in idx], [pos[i] for i in idx]
        warnings += _geometry_warnings(ordered, positions, normal, flags)
        return ordered, positions, "position", warnings, flags
    flags.append("missing_position")
    if all(f.instance is not None for f in frames):
        warnings.append("Some slices have no position tags (ImagePositionPatient / ImageOrientationPatient); "
                        "the slices were ordered by InstanceNumber instead, which is usually, not always, right.")
        return sorted(frames, key=lambda f: (f.instance, _natural(f.name))), [None] * len(frames), \
            "instance number", warnings, flags
    warnings.append("Some slices have neither position tags nor an InstanceNumber; they were ordered by file "
                    "name, which may not be their order in the body.")
    return sorted(frames, key=lambda f: _natural(f.name)), [None] * len(frames), "file order", warnings, flags


def _geometry_warnings(frames: list[FrameHeader], positions: list[float], normal: np.ndarray, flags: list[str]) -> list[str]:
    out = []
    if len(frames) < 3:
        return out
    steps = np.diff(positions)
    spacing = float(np.median(steps[steps > 1e-3])) if (steps > 1e-3).any() else 0.0
    duplicates = int((steps <= 1e-3).sum())
    if duplicates:
        out.append(f"{duplicates} slice(s) share a position with another slice (repeated acquisitions or copies); "
                   "both are used.")
        flags.append("duplicate_positions")
    if spacing > 0:
        gaps = steps[steps > GAP * spacing]
        missing = int(sum(round(g / spacing) - 1 for g in gaps))
        if missing:
            out.append(f"About {missing} slice(s) appear to be missing: the spacing jumps in {len(gaps)} place(s) "
                       f"(usual spacing {spacing:.2f} mm).")
            flags.append("missing_slices")
    travel = frames[-1].ipp - frames[0].ipp
    length = float(np.linalg.norm(travel))
    if length > 0:
        tilt = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(travel, normal))) / length))))
        if tilt > TILT_DEGREES:
            out.append(f"The stack is tilted by {tilt:.1f}° against its slices (gantry tilt); slices are read as "
                       "they are, without correcting the tilt.")
            flags.append("gantry_tilt")
    return out

"""NIfTI volumes as stacks of axial slices, read one slice at a time.

The orientation is nibabel's closest canonical one (RAS+, what :func:`nibabel.as_closest_canonical`
gives). ``as_closest_canonical`` itself loads the whole array when it must reorient, so for a
non-canonical file the same orientation transform (:func:`nibabel.io_orientation`) is applied
slice by slice to the lazy array proxy instead; a test checks that both give the same pixels.
Intensities are windowed once per volume (0.5-99.5 percentiles of a sample of slices), so slices
keep their relative brightness, as a DICOM series with one window does.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np

from core.data.pixels import DecodedImage, scale_to_uint8
from core.data.study_types import MAX_SLICES, SliceRef, Stack, Study
from core.errors import WorkbenchError

MAX_VOXELS = 1024 * 1024 * MAX_SLICES  # 1024×1024 slices at most
MAX_NIFTI_BYTES = 1536 * 1024**2  # an uploaded .nii.gz inflates to at most this in memory
WINDOW_SAMPLE = 24  # slices sampled for the volume's intensity window


def read_nifti_path(path: Path) -> Study:
    """A NIfTI file on disk (``.nii`` is memory-mapped; ``.nii.gz`` is read as a stream)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on damaged headers
        raise WorkbenchError(f"not a readable NIfTI file ({type(exc).__name__})", path.name) from None
    return _study(img, path.name)


def read_nifti_bytes(data: bytes, name: str) -> Study:
    """An uploaded NIfTI file held in memory (gzip is inflated here, bounded)."""
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(MAX_NIFTI_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise WorkbenchError(f"the gzip stream is damaged ({type(exc).__name__})", name) from None
        if len(data) > MAX_NIFTI_BYTES:
            raise WorkbenchError(f"the volume inflates beyond {MAX_NIFTI_BYTES // 1024**2} MB; refused", name)
    try:
        img = nib.Nifti1Image.from_bytes(data)
    except Exception:  # noqa: BLE001
        try:
            img = nib.Nifti2Image.from_bytes(data)
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types on damaged headers
            raise WorkbenchError(f"not a readable NIfTI file ({type(exc).__name__})", name) from None
    return _study(img, name)


def _study(img: Any, name: str) -> Study:
    import nibabel as nib

    shape = tuple(int(s) for s in img.shape)
    warnings: list[str] = []
    flags: list[str] = []
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise WorkbenchError(f"the volume has shape {shape}; a 3-D volume is needed", name)
    if len(shape) > 4 or (len(shape) == 4 and shape[3] < 1):
        raise WorkbenchError(f"the volume has {len(shape)} dimensions {shape}; 3-D or 4-D (time) is read", name)
    if len(shape) == 4 and shape[3] > 1:
        warnings.append(f"The file holds {shape[3]} volumes (a 4th dimension, e.g. time); only the first was read.")
        flags.append("first_volume_only")
    if int(np.prod(shape[:3], dtype=np.int64)) > MAX_VOXELS or max(shape[:3]) > max(MAX_SLICES, 1024):
        raise WorkbenchError(f"the volume is {shape[0]}×{shape[1]}×{shape[2]} voxels; too large for a brain "
                             "series", name)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise WorkbenchError("the volume's orientation (affine) is damaged", name)
    ornt = nib.io_orientation(affine)  # axis k of the file goes to canonical axis ornt[k, 0], flipped if -1
    axes = [int(a) for a in ornt[:, 0]]
    if len(shape) == 3 and axes == [0, 1, 2] and (ornt[:, 1] > 0).all():
        img = nib.as_closest_canonical(img)  # already canonical: returns the image itself, nothing is loaded
    source_axis = axes.index(2)  # the file axis that runs inferior -> superior
    n = shape[source_axis]
    if n > MAX_SLICES:
        raise WorkbenchError(f"the volume has {n} axial slices; the limit is {MAX_SLICES}", name)
    zooms = img.header.get_zooms()[:3]
    spacing_z = float(zooms[source_axis])
    slicer = _AxialSlicer(img, ornt, shape)
    low, high = slicer.window()
    rows, cols = slicer.plane_shape
    refs = [SliceRef(k + 1, f"axial {k + 1}", round(k * spacing_z, 3)) for k in range(n)]
    stack = Stack(name, "NIfTI volume", refs, (rows, cols), "axial", "", "volume axis (canonical RAS)",
                  warnings, flags)
    stack.loader = lambda ref: DecodedImage(scale_to_uint8(slicer.slice(ref.number - 1), low, high, ref.source),
                                            "NIfTI", "volume", 0.0, {"window": f"{low:g}..{high:g} (volume)"})
    return Study(name, [stack])


class _AxialSlicer:
    """Canonical axial slice ``k`` of a (possibly non-canonical) NIfTI image, from its lazy proxy."""

    def __init__(self, img: Any, ornt: np.ndarray, shape: tuple[int, ...]) -> None:
        self.proxy = img.dataobj
        self.ornt = ornt
        self.shape3 = shape[:3]
        self.four_d = len(shape) == 4
        axes = [int(a) for a in ornt[:, 0]]
        self.source_axis = axes.index(2)
        canon = [0, 0, 0]
        for k in range(3):
            canon[axes[k]] = self.shape3[k]
        self.canon_shape = tuple(canon)
        self.plane_shape = (canon[1], canon[0])  # shown: rows follow y (A-P), columns follow x (R-L)

    def canonical(self, k: int) -> np.ndarray:
        """``as_closest_canonical(img).get_fdata()[:, :, k]`` read from one plane of the file."""
        flip_z = self.ornt[self.source_axis, 1] < 0
        src_k = self.shape3[self.source_axis] - 1 - k if flip_z else k
        index: list[Any] = [slice(None)] * 3
        index[self.source_axis] = src_k
        if self.four_d:
            index.append(0)
        plane = np.asarray(self.proxy[tuple(index)], dtype=np.float64)  # the two remaining file axes, in order
        others = [a for a in range(3) if a != self.source_axis]
        for pos, a in enumerate(others):
            if self.ornt[a, 1] < 0:
                plane = np.flip(plane, axis=pos)
        if int(self.ornt[others[0], 0]) != 0:  # the first remaining file axis is canonical y: swap
            plane = plane.T
        return plane

    def slice(self, k: int) -> np.ndarray:
        """Axial slice ``k`` as shown (radiological: anterior up, patient's right on the left)."""
        return self.canonical(k).T[::-1, ::-1]

    def window(self) -> tuple[float, float]:
        """0.5 and 99.5 percentiles over a strided sample of slices (streamed, bounded memory)."""
        n = self.shape3[self.source_axis]
        picks = np.unique(np.linspace(0, n - 1, min(n, WINDOW_SAMPLE)).round().astype(int))
        sample = []
        for k in picks:
            plane = self.canonical(int(k))
            if not np.isfinite(plane).all():
                raise WorkbenchError("some voxel values are not numbers (NaN or infinity)", f"axial {k + 1}")
            step = max(1, max(plane.shape) // 64)  # ~64×64 values per sampled slice: bounded memory
            sample.append(plane[::step, ::step].ravel())
        values = np.concatenate(sample)
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        return low, (high if high > low else float(values.max()))

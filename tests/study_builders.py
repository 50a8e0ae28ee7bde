"""Synthetic studies for tests and benches: phantom volumes written as DICOM series or NIfTI files.

A volume is a stack of the demo's phantom slices (core.data.demo) shrunk towards the top and bottom
as a head is, with blank slices beyond it, so slice selection has edges to find.
"""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np

PATIENT = "Doe^Jane"  # identifiers written into every file, to check they are never shown
SECRET_ID = "SECRET-123"
FREE_TEXT = "T1 axial Doe Jane"


def phantom_volume(n: int, label: str = "glioma", size: int = 48, seed: int = 0, blank_edges: int = 1) -> np.ndarray:
    """(n, size, size) uint8: phantom slices whose head shrinks towards both ends; ``blank_edges`` empty."""
    from core.data.demo import phantom

    rng = np.random.default_rng(seed)
    vol = np.zeros((n, size, size), np.uint8)
    inner = n - 2 * blank_edges
    for i in range(inner):
        z = (i - (inner - 1) / 2) / max(1.0, inner / 2)
        scale = float(np.sqrt(max(0.0, 1 - 0.85 * z * z)))
        img = phantom(label, rng, size)
        side = max(4, int(round(size * scale)))
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        o = (size - side) // 2
        vol[blank_edges + i, o:o + side, o:o + side] = small
    return vol


def _dataset(pixels: np.ndarray, *, uid: str, instance: int | None, position: tuple[float, float, float] | None,
             orientation: tuple[float, ...] | None, modality: str, syntax: str, frames: int = 1):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = uid
    ds.Modality = modality
    ds.PatientName = PATIENT
    ds.PatientID = SECRET_ID
    ds.SeriesDescription = FREE_TEXT
    ds.StudyDescription = FREE_TEXT
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    if frames > 1:
        ds.NumberOfFrames = frames
    if syntax == ExplicitVRLittleEndian:
        ds.PixelData = (pixels.astype(np.uint16) * 4 + 50).tobytes()
    else:  # bytes that claim a compressed syntax: enough to test "no decoder"
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9" + bytes(64)])
        ds["PixelData"].VR = "OB"
    return ds


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, little_endian=True, implicit_vr=False)
    return buf.getvalue()


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def series_files(vol: np.ndarray, *, uid: str = "1.2.826.0.1.3680043.8.498.1", spacing: float = 5.0,
                 orientation: tuple[float, ...] | None = AXIAL, positions: bool = True, instances: bool = True,
                 modality: str = "MR", syntax: str | None = None, tilt_mm: float = 0.0,
                 prefix: str = "IM") -> list[tuple[str, bytes]]:
    """One DICOM file per slice; slice i at z = i * spacing (shifted in y by i * tilt_mm when tilted)."""
    from pydicom.uid import ExplicitVRLittleEndian

    out = []
    for i, img in enumerate(vol):
        normal = np.cross(orientation[:3], orientation[3:]) if orientation else np.array([0, 0, 1.0])
        pos = tuple(np.array([0.0, i * tilt_mm, 0.0]) + i * spacing * normal) if positions else None
        ds = _dataset(img, uid=uid, instance=i + 1 if instances else None, position=pos, orientation=orientation,
                      modality=modality, syntax=syntax or ExplicitVRLittleEndian)
        out.append((f"{prefix}{i + 1:04d}.dcm", dicom_bytes(ds)))
    return out


def multiframe_bytes(vol: np.ndarray, *, spacing: float = 5.0, reverse: bool = False) -> bytes:
    """One enhanced-style multi-frame file with per-frame positions (stored reversed when asked)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    order = list(range(len(vol)))[::-1] if reverse else list(range(len(vol)))
    ds = _dataset(vol[order], uid="1.2.826.0.1.3680043.8.498.7", instance=1, position=None, orientation=None,
                  modality="MR", syntax=ExplicitVRLittleEndian, frames=len(vol))
    shared = Dataset()
    plane = Dataset()
    plane.ImageOrientationPatient = list(AXIAL)
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in order:
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, k * spacing]
        item.PlanePositionSequence = Sequence([pos])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    return dicom_bytes(ds)


def zip_of(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


def nifti_bytes(vol: np.ndarray, *, affine: np.ndarray | None = None, gz: bool = True, time_points: int = 0) -> bytes:
    """A NIfTI-1 file of the (n, rows, cols) stack, written so that canonical axial slices show it as given."""
    import gzip

    import nibabel as nib

    # Display slice = canonical[:, :, k].T[::-1, ::-1]  =>  canonical[x, y, k] = vol[k, rows-1-y, cols-1-x].
    data = np.transpose(vol[:, ::-1, ::-1], (2, 1, 0)).astype(np.int16)
    if time_points:
        data = np.stack([data] + [data // 2] * (time_points - 1), axis=-1)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 5.0, 1.0]) if affine is None else affine)
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw

"""core.data.study: DICOM series and NIfTI volumes built at test time from the demo's phantoms."""

from __future__ import annotations

import random
import zipfile

import numpy as np
import pytest
from study_builders import (
    FREE_TEXT,
    PATIENT,
    SAGITTAL,
    SECRET_ID,
    multiframe_bytes,
    nifti_bytes,
    phantom_volume,
    series_files,
    zip_of,
)

from core.data import study_files
from core.data.study import open_study
from core.errors import WorkbenchError

N = 10


@pytest.fixture(scope="module")
def vol() -> np.ndarray:
    return phantom_volume(N, size=40)


def _pixels(stack) -> list[np.ndarray]:
    out = []
    for _, img in stack.slices():
        assert not isinstance(img, WorkbenchError), img
        out.append(img.pixels)
    return out


def _same_order(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_shuffled_zip_is_ordered_by_position_and_windowed_by_pydicom(vol):
    files = series_files(vol)
    reference = _pixels(open_study(files).pick())
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    shuffled = [(f"x{i:03d}_{name}", data) for i, (name, data) in enumerate(shuffled)]  # names say nothing
    stack = open_study(("series.zip", zip_of(shuffled))).pick()
    assert stack.order == "position" and stack.n_slices == N and stack.warnings == []
    assert [r.position for r in stack.refs] == sorted(r.position for r in stack.refs)
    assert _same_order(_pixels(stack), reference)
    # Modality LUT (slope 2, intercept -100) and auto-window leave the phantom's ordering of intensities intact.
    assert np.corrcoef(reference[N // 2].ravel(), vol[N // 2].ravel())[0, 1] > 0.99


def test_reversed_positions_sort_along_the_normal(vol):
    files = series_files(vol, spacing=-3.0)  # slice 1 at the top: stack order runs the other way
    stack = open_study(files).pick()
    assert [int(r.source[2:6]) for r in stack.refs] == list(range(N, 0, -1))


def test_missing_slices_are_reported(vol):
    files = series_files(vol)
    del files[4:6]
    stack = open_study(files).pick()
    assert stack.n_slices == N - 2 and "missing_slices" in stack.flags
    assert any("About 2 slice(s) appear to be missing" in w for w in stack.warnings)


def test_two_series_in_one_zip_are_listed_and_picked(vol):
    a = series_files(vol, uid="1.2.3.1", prefix="A")
    b = series_files(vol[:6], uid="1.2.3.2", prefix="B")
    study = open_study(("two.zip", zip_of(a + b)))
    assert sorted(s.key for s in study.stacks) == ["1.2.3.1", "1.2.3.2"]
    with pytest.raises(WorkbenchError, match="holds 2 series"):
        study.pick()
    assert study.pick("1.2.3.2").n_slices == 6
    assert study.pick("1").key == study.stacks[0].key
    with pytest.raises(WorkbenchError, match="no series"):
        study.pick("9")


def test_mixed_orientations_are_split_with_reasons(vol):
    axial = series_files(vol, prefix="A")
    sag = series_files(vol[:4], orientation=SAGITTAL, prefix="S")
    study = open_study(axial + sag)
    assert len(study.stacks) == 2
    for s in study.stacks:
        assert "split_series" in s.flags and "split into 2 parts" in s.warnings[0]
    sagittal = next(s for s in study.stacks if s.orientation == "sagittal")
    assert "not_axial" in sagittal.flags and sagittal.n_slices == 4


def test_mixed_sizes_are_split(vol):
    small = series_files(phantom_volume(4, size=32), prefix="B")
    study = open_study(series_files(vol) + small)
    assert sorted(s.shape for s in study.stacks) == [(32, 32), (40, 40)]
    assert all("image sizes 32×32, 40×40" in s.warnings[0] for s in study.stacks)


def test_missing_position_tags_fall_back_to_instance_number_and_say_so(vol):
    files = series_files(vol, positions=False)
    random.Random(1).shuffle(files)
    stack = open_study(files).pick()
    assert stack.order == "instance number" and "missing_position" in stack.flags
    assert any("InstanceNumber" in w for w in stack.warnings)
    assert [r.source for r in stack.refs] == [f"IM{i:04d}.dcm" for i in range(1, N + 1)]
    bare = open_study(series_files(vol, positions=False, instances=False)).pick()
    assert bare.order == "file order" and any("file name" in w for w in bare.warnings)


def test_non_mr_modality_and_gantry_tilt_are_warned(vol):
    stack = open_study(series_files(vol, modality="CT", tilt_mm=1.0)).pick()
    assert "not_mr" in stack.flags and any("Modality CT" in w for w in stack.warnings)
    assert "gantry_tilt" in stack.flags and any("tilted by 11.3°" in w for w in stack.warnings)


def test_compressed_syntax_without_decoder_is_refused_plainly(vol):
    from pydicom.uid import JPEGLSLossless

    from core.data.dicom import can_decode

    if can_decode(JPEGLSLossless):
        pytest.skip("a JPEG-LS decoder is installed here")
    stack = open_study(series_files(vol[:3], syntax=JPEGLSLossless)).pick()
    assert stack.error and "cannot decode" in stack.error and "JPEG-LS" in stack.error
    with pytest.raises(WorkbenchError, match="cannot decode"):
        next(stack.slices())


def test_multiframe_with_per_frame_positions_is_ordered(vol):
    reference = _pixels(open_study(series_files(vol)).pick())
    stack = open_study(("mf.dcm", multiframe_bytes(vol, reverse=True))).pick()
    assert stack.kind == "multi-frame DICOM" and stack.order == "position" and stack.n_slices == N
    assert _same_order(_pixels(stack), reference)


@pytest.mark.parametrize("gz", [True, False])
def test_nifti_volume_gives_axial_slices_as_drawn(vol, gz):
    stack = open_study(("v.nii.gz" if gz else "v.nii", nifti_bytes(vol, gz=gz))).pick()
    assert stack.kind == "NIfTI volume" and stack.orientation == "axial" and stack.n_slices == N
    for got, want in zip(_pixels(stack), vol):
        if want.std() > 0:
            assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999  # orientation kept: no flip, no transpose


def test_four_d_nifti_reads_the_first_volume_and_says_so(vol):
    stack = open_study(("t.nii.gz", nifti_bytes(vol, time_points=3))).pick()
    assert "first_volume_only" in stack.flags and "only the first was read" in stack.warnings[0]
    assert stack.n_slices == N


def test_nifti_streamed_slices_equal_as_closest_canonical_for_any_orientation():
    import nibabel as nib

    from core.data.study_nifti import _AxialSlicer

    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 6, 7))
    for _ in range(12):
        perm, signs = rng.permutation(3), rng.choice([-1, 1], 3)
        affine = np.eye(4)
        affine[:3, :3] = 0
        for i in range(3):
            affine[perm[i], i] = signs[i] * (i + 1.5)
        img = nib.Nifti1Image(data, affine)
        canonical = nib.as_closest_canonical(img).get_fdata()
        slicer = _AxialSlicer(img, nib.io_orientation(affine), data.shape)
        for k in range(canonical.shape[2]):
            np.testing.assert_allclose(slicer.canonical(k), canonical[:, :, k])


def test_damaged_inputs_are_refused_with_one_error_type(vol):
    with pytest.raises(WorkbenchError, match="not a readable NIfTI"):
        open_study(("v.nii", b"\x00" * 400))
    with pytest.raises(WorkbenchError, match="no DICOM image"):
        open_study([("a.txt", b"hello"), ("b.txt", b"world")])
    with pytest.raises(WorkbenchError, match="not a valid zip"):
        open_study(("s.zip", b"PK\x03\x04 broken"))
    five_d = nifti_bytes(vol, gz=False)
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((8, 8, 8, 2, 2), np.int16), np.eye(4))
    with pytest.raises(WorkbenchError, match="5 dimensions"):
        open_study(("5d.nii", img.to_bytes()))
    assert open_study(("ok.nii", five_d)).pick().n_slices == N


def test_zip_of_ten_thousand_tiny_files_is_refused_before_reading(monkeypatch):
    reads = []
    monkeypatch.setattr(study_files, "check_member", lambda *a: reads.append(a) or None)
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(10_000):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(WorkbenchError, match="10000 files; the limit is 5000"):
        open_study(("many.zip", buf.getvalue()))
    assert reads == []  # refused on the count, before any member was looked at


def test_zip_traversal_is_refused_by_the_dataset_zip_checks(vol):
    data = zip_of([("../evil.dcm", series_files(vol[:1])[0][1])])
    with pytest.raises(WorkbenchError, match="escapes its folder"):
        open_study(("evil.zip", data))


def test_non_image_files_are_noted_and_the_series_still_reads(vol):
    study = open_study([*series_files(vol[:4]), ("notes.txt", b"not dicom")])
    assert study.pick().n_slices == 4 and study.notes == ["1 file(s) skipped: not a DICOM file"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # written on purpose
def test_a_series_uid_that_is_not_a_uid_is_never_shown(vol):
    files = series_files(vol[:3], uid="Doe^Jane MRI")
    stack = open_study(files).pick()
    assert stack.key == "series without a valid UID" and "Doe" not in stack.describe()


def test_patient_names_and_free_text_never_reach_the_stack(vol):
    study = open_study(("s.zip", zip_of(series_files(vol[:4]))))
    stack = study.pick()
    text = repr(stack) + stack.describe() + repr([img.meta for _, img in stack.slices()]) + repr(study.notes)
    for secret in (PATIENT, SECRET_ID, FREE_TEXT, "Doe"):
        assert secret not in text


@pytest.mark.parametrize("gz", [False, True])
def test_volume_slices_stream_in_bounded_memory(tmp_path, gz):
    """Proxy for 512×512×600: a 256×256×120 int16 file (15.7 MB; 63 MB as float64) read slice by slice."""
    import tracemalloc

    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (256, 256, 120), dtype=np.int16)
    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    del data
    tracemalloc.start()
    stack = open_study(path).pick()
    count = 0
    for _, img in stack.slices():
        assert img.pixels.shape == (256, 256)
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 120
    assert peak < 6e6, f"peak {peak / 1e6:.1f} MB: the volume was not streamed"  # one slice is 0.5 MB as float64

"""The bad-input corpus, in one place: every hostile or odd input the workbench must survive.

Everything is generated here (nothing is downloaded). Each case is its own test id and states
the reason it must be refused with. A refusal is always a WorkbenchError that names the file
and the reason, never another exception, and the other inputs of the same batch still work.
Some files decode fine although they look odd (16-bit, CMYK, RGBA): they are here to prove
they are *not* refused, and are converted correctly.

Entry points: core.data.imageio.decode_image, core.inference.predict.predict_files (a batch with good files),
core.data.safezip.extract_zip / core.data.datasets.open_zip, core.data.datasets.open_folder, core.data.scan, the
cache, and the Predict page (AppTest) with all bad images uploaded together with a good one.

Every case has an outcome: *refused with message*, *handled* (used, or skipped with a reason,
while the rest works) or *recovered* (a fault of the server's own state survived and repaired).
:func:`corpus_totals` counts them; the last test prints the totals, and
``PYTHONPATH=.:tests python tests/security/test_bad_input_corpus.py`` lists every case. Add a new case to its group's dict
(or a new group to :func:`corpus_cases`) so that it is both run and counted.
"""

from __future__ import annotations

import functools
import io
import os
import re
import socket
import stat
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, encode, smooth_image, write_class_tree
from PIL import Image
from test_cache_faults import DAMAGE, WRITE_FAULTS, summary_without_timing, tamper_entry
from test_concurrent_sessions import comparable, dataset_zip, in_parallel
from test_dicom import _syntax_without_decoder, make_dicom
from test_edge_datasets import DATASETS as EDGE_DATASETS
from test_imageio import crafted_png
from test_safezip import make_zip
from test_zip_hostile import HOSTILE_ZIPS

from core.data.datasets import open_folder, open_zip
from core.data.imageio import decode_image
from core.data.safezip import ZipLimits, extract_zip
from core.errors import WorkbenchError

SIDE = 40


def _gray_rgb() -> np.ndarray:
    gray = smooth_image(7, SIDE)
    return np.stack([gray, gray, gray], axis=-1)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(smooth_image(i, SIDE)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = encode(_gray_rgb(), "JPEG", quality=95)
    return data[: len(data) // 2]


def _dicom_compressed() -> bytes:
    return make_dicom(transfer_syntax=_syntax_without_decoder())


# --------------------------------------------------------------------------------------------
# Image files: refused (name -> builder, reason the message must give)
# --------------------------------------------------------------------------------------------

BAD_IMAGES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.jpg": (lambda: b"", r"empty \(0 bytes\)"),
    "notes.jpg": (lambda: b"Clinical notes, not a picture.\n" * 8, r"not an image file"),
    "truncated.jpg": (_truncated_jpeg, r"truncated or corrupt"),
    "bomb60k.png": (lambda: crafted_png(60_000, 60_000), r"too large .*decompression bomb"),
    "one-pixel.png": (lambda: encode(np.zeros((1, 1), np.uint8)), r"too small \(1×1 pixels"),
    "animated.gif": (_animated_gif, r"unsupported image format GIF|frames"),
    "no-pixels.dcm": (lambda: make_dicom(with_pixels=False), r"no image \(no pixel data\)"),
    "compressed.dcm": (_dicom_compressed, r"compressed as .* cannot decode"),
}


def _good_batch() -> list[tuple[str, bytes]]:
    return [("good-1.png", encode(smooth_image(1, SIDE))), ("good-2.jpg", encode(_gray_rgb(), "JPEG"))]


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_is_refused_with_file_and_reason(name: str, tmp_path: Path) -> None:
    build, reason = BAD_IMAGES[name]
    data = build()
    path = tmp_path / name
    path.write_bytes(data)
    for source, label in ((data, name), (path, str(path))):
        with pytest.raises(WorkbenchError) as info:
            decode_image(source, name if isinstance(source, bytes) else None)
        assert info.value.source == label
        assert str(info.value).startswith(f"{label}: ")
        assert re.search(reason, info.value.reason), info.value.reason


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_in_a_batch_leaves_the_others_working(name: str, tiny_predictor) -> None:
    from core.inference.predict import predict_files

    build, reason = BAD_IMAGES[name]
    good = _good_batch()
    results = predict_files(tiny_predictor, [good[0], (name, build()), good[1]])
    assert [r.file for r in results] == ["good-1.png", name, "good-2.jpg"]
    bad = results[1]
    assert not bad.ok and bad.label is None and re.search(reason, bad.error), bad.error
    for r in (results[0], results[2]):
        assert r.ok and r.label in tiny_predictor.class_names and 0 < r.confidence <= 1


def test_decompression_bomb_fails_fast_without_allocating() -> None:
    data = crafted_png(60_000, 60_000)  # 3.6 GB of pixels claimed in a ~100-byte file
    assert len(data) < 200
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(WorkbenchError, match="decompression bomb"):
            decode_image(data, "bomb60k.png")
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 5_000_000, f"{peak / 1e6:.0f} MB allocated for a refused header"


# --------------------------------------------------------------------------------------------
# Image files that look odd but must decode (and how)
# --------------------------------------------------------------------------------------------

RAMP16 = np.tile(np.linspace(1000, 3000, SIDE).round().astype(np.uint16), (SIDE, 1))


def _check_16bit(pixels: np.ndarray) -> None:
    expected = np.rint((RAMP16.astype(float) - 1000) * 255 / 2000)
    assert np.abs(pixels.astype(int) - expected).max() <= 1, "linear rescale of min..max onto 0..255"
    # Truncation would clip everything to 255 (Pillow's convert) or wrap around (astype).
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > SIDE // 2


def _check_cmyk(pixels: np.ndarray) -> None:
    original = _gray_rgb()[..., 0].astype(float)
    assert np.corrcoef(original.ravel(), pixels.astype(float).ravel())[0, 1] > 0.95
    assert np.abs(original - pixels).mean() < 12  # not inverted, not shifted


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_gray_rgb()).convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _rgba() -> np.ndarray:
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, : SIDE // 2, 3] = 255  # left half opaque white, right half transparent white
    return rgba


def _check_rgba(pixels: np.ndarray) -> None:
    assert pixels[:, : SIDE // 2].min() == 255 and pixels[:, SIDE // 2:].max() == 0  # composited on black


ODD_IMAGES: dict[str, tuple[Callable[[], bytes], str, Callable[[np.ndarray], None]]] = {
    "16bit.png": (lambda: encode(RAMP16), "I;16", _check_16bit),
    "cmyk.jpg": (_cmyk_jpeg, "CMYK", _check_cmyk),
    "rgba.png": (lambda: encode(_rgba()), "RGBA", _check_rgba),
}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_odd_image_decodes_to_uint8(name: str) -> None:
    build, mode, check = ODD_IMAGES[name]
    img = decode_image(build(), name)
    assert img.source_mode.startswith(mode)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (SIDE, SIDE)
    check(img.pixels)


@pytest.mark.slow
def test_odd_images_are_predicted_in_a_batch_with_bad_ones(tiny_predictor) -> None:
    from core.inference.predict import predict_files

    items = [(name, build()) for name, (build, _, _) in ODD_IMAGES.items()]
    items += [(name, build()) for name, (build, _) in BAD_IMAGES.items()]
    results = predict_files(tiny_predictor, items)
    assert [r.ok for r in results] == [True] * len(ODD_IMAGES) + [False] * len(BAD_IMAGES)


# --------------------------------------------------------------------------------------------
# Zip uploads: refused before a byte is written
# --------------------------------------------------------------------------------------------


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/glioma/a.png", encode(smooth_image(1)))
        link = zipfile.ZipInfo("data/glioma/passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def _many_files_zip(n: int = 100_000) -> bytes:
    """n one-byte stored entries (~11 MB, ~3 s): far above the entry limit, tiny in bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(zipfile.ZipInfo(f"d/glioma/{i:06d}.png", (2026, 1, 1, 0, 0, 0)), b"x")
    return buf.getvalue()


def _good_entries() -> dict[str, bytes]:
    return {f"scans/Training/{label}/{i}.png": encode(smooth_image(10 * k + i))
            for k, label in enumerate(("glioma", "notumor")) for i in range(2)}


BAD_ZIPS: dict[str, tuple[Callable[[], bytes], str]] = {
    "traversal.zip": (lambda: make_zip({**_good_entries(), "scans/../../evil.png": b"pwned"}),
                      r"escapes its folder \('scans/\.\./\.\./evil\.png'\)"),
    "absolute.zip": (lambda: make_zip({**_good_entries(), "/etc/cron.d/evil": b"pwned"}),
                     r"absolute path '/etc/cron\.d/evil'"),
    "symlink.zip": (_symlink_zip, r"symbolic link 'data/glioma/passwd\.png'"),
    "bomb.zip": (lambda: make_zip({"bomb/glioma/zeros.png": b"\0" * (20 * 1024**2)}),
                 r"compresses \d+:1, which looks like a zip bomb"),
    "100k-files.zip": (functools.cache(_many_files_zip),
                       rf"holds 100000 entries; the limit is {ZipLimits().max_files}"),
    **HOSTILE_ZIPS,  # encrypted, 2,000 folders deep, 300-character name, 6 KB path, file/folder clash
}


@pytest.mark.parametrize("name", list(BAD_ZIPS))
def test_bad_zip_is_refused_before_extraction(name: str, tmp_path: Path, isolated_workbench_dirs: dict) -> None:
    build, reason = BAD_ZIPS[name]
    data = build()
    dest = tmp_path / "uploads"
    dest.mkdir()
    start = time.perf_counter()
    with pytest.raises(WorkbenchError) as info:
        extract_zip(data, dest, name)
    assert time.perf_counter() - start < 10.0, "refused from the central directory, not by inflating"
    assert info.value.source == name and str(info.value).startswith(f"{name}: ")
    assert re.search(reason, info.value.reason), info.value.reason
    assert list(dest.iterdir()) == [], "nothing is written for a refused zip"
    assert not (tmp_path / "evil.png").exists()

    # The same through the Explorer's entry point; a good zip uploaded next still opens.
    with pytest.raises(WorkbenchError, match=reason):
        open_zip(data, name)
    uploads = isolated_workbench_dirs["cache"] / "uploads"
    assert [p for p in uploads.iterdir()] == []
    ds = open_zip(make_zip(_good_entries()), "good.zip")
    assert ds.class_names == ["glioma", "notumor"] and len(ds.files) == 4


# --------------------------------------------------------------------------------------------
# Dataset folders
# --------------------------------------------------------------------------------------------

BAD_FOLDERS: dict[str, tuple[dict[str, int], str]] = {
    "one-class": ({"Training/glioma": 3}, r"at least two classes; found 1 \(glioma\)"),
    "unknown-classes": ({"glioma": 2, "cats": 2, "Dogs": 1},
                        r"unknown class folder\(s\) 'Dogs', 'cats'; expected folders named after"),
}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_bad_dataset_folder_is_refused(name: str, tmp_path: Path) -> None:
    layout, reason = BAD_FOLDERS[name]
    write_class_tree(tmp_path / name, layout)
    with pytest.raises(WorkbenchError) as info:
        open_folder(tmp_path / name)
    assert Path(info.value.source).name in (name, "Training")  # the folder the problem is in
    assert str(info.value).startswith(f"{info.value.source}: ")
    assert re.search(reason, info.value.reason), info.value.reason

    write_class_tree(tmp_path / "good", {"glioma": 2, "no_tumor": 2})  # a sibling still opens
    assert open_folder(tmp_path / "good").class_names == ["glioma", "notumor"]


# --------------------------------------------------------------------------------------------
# The Predict page with every bad image uploaded next to a good one
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_predict_page_shows_one_error_per_bad_file(tiny_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py"), default_timeout=180).run()
    good_name, good_bytes = _good_batch()[0]
    uploads = [(good_name, good_bytes, "image/png")]
    uploads += [(name, build(), "application/octet-stream") for name, (build, _) in BAD_IMAGES.items()]
    at.file_uploader(key="predict_uploads").set_value(uploads)
    at.run()
    assert not at.exception, at.exception
    errors = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # read as displayed: escaped marks are literal
    assert len(errors) == len(BAD_IMAGES), errors
    for error, (name, (_, reason)) in zip(errors, BAD_IMAGES.items()):
        assert error.startswith("This file could not be analysed") and re.search(reason, error), (name, error)
    table = at.dataframe[0].value
    assert list(table["File"]) == [good_name, *BAD_IMAGES]
    assert table["Class"].astype(bool).tolist() == [True] + [False] * len(BAD_IMAGES)
    assert table["Problem"].astype(bool).tolist() == [False] + [True] * len(BAD_IMAGES)
    assert any(m.value.startswith("### ") for m in at.markdown), "the good file's class and confidence"


# --------------------------------------------------------------------------------------------
# Data folders: links out of the data roots, non-regular files (handled: skipped with a reason)
# --------------------------------------------------------------------------------------------

OUTSIDE = r"outside the allowed data folders"


def _link(rel: str, target: Callable[[Path], Path | str]) -> Callable[[Path, Path], None]:
    def setup(root: Path, outside: Path) -> None:
        dest = Path(target(outside))
        (root / rel).symlink_to(dest, target_is_directory=dest.is_dir())
    return setup


def _fifo(root: Path, outside: Path) -> None:
    os.mkfifo(root / "Training/glioma/pipe.png")


def _socket(root: Path, outside: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:  # the socket file stays after closing
        sock.bind(str(root / "Training/glioma/sock.png"))


def _device(root: Path, outside: Path) -> None:
    try:
        os.mknod(root / "Training/glioma/zero.png", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except OSError:
        pytest.skip("cannot create device nodes here")


#: name -> (setup(dataset root, folder outside every data root), problem path, reason regex)
HOSTILE_FOLDER_ENTRIES: dict[str, tuple[Callable[[Path, Path], None], str, str]] = {
    "class-folder-linked-outside": (_link("Training/meningioma", lambda o: o / "meningioma"),
                                    "Training/meningioma/", OUTSIDE),
    "etc-as-class-folder": (_link("Training/pituitary", lambda o: "/etc"), "Training/pituitary/", OUTSIDE),
    "split-folder-linked-outside": (_link("Testing", lambda o: o / "Testing"), "Testing/", OUTSIDE),
    "subfolder-linked-outside": (_link("Training/glioma/more", lambda o: o / "meningioma"),
                                 "Training/glioma/more/", OUTSIDE),
    "file-linked-outside": (_link("Training/glioma/leak.png", lambda o: o / "secret.png"),
                            "Training/glioma/leak.png", OUTSIDE),
    "link-to-dev-zero": (_link("Training/glioma/zero.png", lambda o: "/dev/zero"), "Training/glioma/zero.png",
                         OUTSIDE),
    "link-loop": (_link("Training/glioma/loop", lambda o: o.parent / "data" / "ds"), "Training/glioma/loop/",
                  r"a loop"),
    "dangling-link": (_link("Training/glioma/gone.png", lambda o: o / "deleted.png"), "Training/glioma/gone.png",
                      OUTSIDE),
    "fifo-in-class-folder": (_fifo, "Training/glioma/pipe.png", r"named pipe \(FIFO\), not a regular file"),
    "socket-in-class-folder": (_socket, "Training/glioma/sock.png", r"a socket, not a regular file"),
    "device-in-class-folder": (_device, "Training/glioma/zero.png", r"character device, not a regular file"),
}


def _finishes(fn: Callable[[], object], seconds: float = 30.0):
    """fn() in a daemon thread: a hang (a FIFO read, /dev/zero) fails the test instead of the suite."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert "value" in box, "raised (see the thread's traceback above)"
    return box["value"]


@pytest.mark.parametrize("name", list(HOSTILE_FOLDER_ENTRIES))
def test_hostile_folder_entry_is_skipped_with_a_reason(name: str, tmp_path: Path, monkeypatch) -> None:
    from core.data.scan import scan_dataset

    setup, where, reason = HOSTILE_FOLDER_ENTRIES[name]
    data, outside = tmp_path / "data", tmp_path / "outside"
    write_class_tree(data / "ds", {"Training/glioma": 2, "Training/notumor": 2}, seed=1)
    write_class_tree(outside, {"meningioma": 2, "Testing/glioma": 1, "Testing/notumor": 1}, seed=2)
    (outside / "secret.png").write_bytes(encode(smooth_image(3)))
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(data))
    setup(data / "ds", outside)

    ds = _finishes(lambda: open_folder(data / "ds"))
    problems = dict(ds.problems)
    assert where in problems and re.search(reason, problems[where]), ds.problems
    assert len(ds.files) == 4 and set(ds.class_names) == {"glioma", "notumor"}, "only the real images"
    report = _finishes(lambda: scan_dataset(ds, workers=1))
    assert report.files["ok"].all() and where in dict(report.unreadable())


# --------------------------------------------------------------------------------------------
# Paths that are not (plain) image files: refused at once, never read without a cap
# --------------------------------------------------------------------------------------------


def _fifo_path(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.png")
    return tmp / "pipe.png"


def _sparse_huge(tmp: Path) -> Path:
    from core.data.imageio import MAX_FILE_BYTES

    with open(tmp / "huge.png", "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    return tmp / "huge.png"


#: name -> (path builder, reason regex, read cap in bytes to use or None)
BAD_PATHS: dict[str, tuple[Callable[[Path], Path], str, int | None]] = {
    "dev-zero": (lambda tmp: Path("/dev/zero"), r"character device, not a regular file", None),
    "dev-urandom": (lambda tmp: Path("/dev/urandom"), r"character device, not a regular file", None),
    "fifo": (_fifo_path, r"named pipe", None),
    "streams-past-its-size": (lambda tmp: Path("/proc/self/maps"), r"too large \(more than 64 bytes\)", 64),
    "sparse-beyond-the-cap": (_sparse_huge, r"too large", None),
}


@pytest.mark.parametrize("name", list(BAD_PATHS))
def test_bad_path_is_refused_at_once(name: str, tmp_path: Path, monkeypatch) -> None:
    import core.data.imageio

    build, reason, cap = BAD_PATHS[name]
    if cap is not None:
        monkeypatch.setattr(core.data.imageio, "MAX_FILE_BYTES", cap)
    path = build(tmp_path)
    start = time.perf_counter()
    error = _finishes(lambda: pytest.raises(WorkbenchError, decode_image, path).value, 10)
    assert time.perf_counter() - start < 5
    assert error.source == str(path) and re.search(reason, error.reason), error.reason


# --------------------------------------------------------------------------------------------
# Unlucky datasets for the Dataset Explorer (handled: every table keeps its columns)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EDGE_DATASETS))
def test_unlucky_dataset_explores_without_error(name: str, tmp_path: Path) -> None:
    from core.data import explore
    from core.data.scan import scan_dataset

    EDGE_DATASETS[name](tmp_path / name)
    report = scan_dataset(open_folder(tmp_path / name), workers=1)
    for column in ("near_group", "exact_group"):
        dups = explore.duplicate_groups(report, column)
        assert list(dups[dups["spans_splits"]].columns) == list(explore.DUPLICATE_COLUMNS)
    assert explore.class_balance(report)["count"].sum() == len(report.readable)
    assert not explore.size_mode_mix(report).empty and not explore.class_histograms(report).empty
    assert explore.leak_summary(report)["groups"] == []


# --------------------------------------------------------------------------------------------
# Cache faults (recovered: the work goes on, damaged entries are rebuilt, leftovers reclaimed)
# --------------------------------------------------------------------------------------------

def _cache_dataset(tmp_path: Path):
    write_class_tree(tmp_path / "d", {"glioma": 3, "notumor": 3})
    return open_folder(tmp_path / "d")


@pytest.mark.parametrize("fault", list(WRITE_FAULTS))
def test_unwritable_cache_is_recovered_from(fault: str, tmp_path: Path, monkeypatch) -> None:
    from core.cachefs import CacheWriteWarning
    from core.data.scan import scan_dataset

    ds = _cache_dataset(tmp_path)
    with monkeypatch.context() as mp:
        WRITE_FAULTS[fault](mp)
        with pytest.warns(CacheWriteWarning):
            report = scan_dataset(ds, workers=1)
    assert summary_without_timing(report) == summary_without_timing(scan_dataset(ds, use_cache=False))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_recovered_from(damage: str, tmp_path: Path, isolated_workbench_dirs) -> None:
    from core.data.scan import scan_dataset

    ds = _cache_dataset(tmp_path)
    reference = summary_without_timing(scan_dataset(ds, workers=1))
    tamper_entry(isolated_workbench_dirs["cache"], damage)
    again = scan_dataset(ds, workers=1)
    assert not again.from_cache and summary_without_timing(again) == reference


def test_stale_temporaries_are_recovered(tmp_path: Path, isolated_workbench_dirs) -> None:
    from core.data.scan import scan_dataset

    scans = isolated_workbench_dirs["cache"] / "scans"
    scans.mkdir(parents=True)
    stale = scans / ".v3-x.npz.0123456789abcdef.tmp"
    stale.write_bytes(b"\0" * 692_000)  # the size of the one left behind in the report
    os.utime(stale, (time.time() - 7 * 3600,) * 2)
    scan_dataset(_cache_dataset(tmp_path), workers=1)
    assert not stale.exists()


# --------------------------------------------------------------------------------------------
# Sessions at once (handled: same results, nothing left behind)
# --------------------------------------------------------------------------------------------

def test_four_sessions_upload_and_scan_one_zip_at_once(isolated_workbench_dirs) -> None:
    from core.data.scan import scan_dataset

    data = dataset_zip()
    datasets = in_parallel(lambda i: open_zip(data, "scans.zip"))
    reports = in_parallel(lambda i: scan_dataset(datasets[i], workers=1))
    assert len({d.root for d in datasets}) == 1
    assert all(comparable(r) == comparable(reports[0]) for r in reports)
    assert not [p for p in isolated_workbench_dirs["cache"].rglob("*") if ".tmp" in p.name]


# ============================================================================================
# Issue 13, model / card / command-line / input side (defects 2, 5, 6, 9, 10, 11, 12).
# The cases live in their own test modules (named below); here each is run once more through
# one compact check and counted by _model_and_input_groups().
# ============================================================================================

from test_cli_validation import BAD_TRAIN_OPTIONS  # noqa: E402
from test_injection import FORMULAS, HOSTILE_NAMES  # noqa: E402
from test_odd_images import NON_FINITE, float_dicom  # noqa: E402
from test_registry import fake_run  # noqa: E402
from test_registry_rules import BAD_CARDS, bad_run, held_out, keras_run, tiny_keras_file  # noqa: E402, F401

from core.cli import main as cli_main  # noqa: E402


@pytest.fixture
def models_root(isolated_workbench_dirs: dict) -> Path:
    root = isolated_workbench_dirs["models"]
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize("name", list(BAD_CARDS))
def test_malformed_card_is_refused_and_the_others_work(name: str, models_root: Path) -> None:
    from core.models.runs import list_runs, resolve_run

    fake_run(models_root / "good")
    bad_run(models_root, name)
    assert [r.run_id for r in list_runs()] == ["good"]
    with pytest.raises(WorkbenchError, match="model card is damaged") as info:
        resolve_run(name)
    assert BAD_CARDS[name][1] in info.value.reason


#: card changes -> words of the refusal when the model is loaded (the card itself is well formed)
CARD_MISFITS: dict[str, tuple[dict, str]] = {
    "class count edited": ({"class_names": ["glioma", "meningioma", "notumor"]}, "3 classes but the model has 2"),
    "image size edited": ({"image_size": 16}, "16×16 pixels but the model takes"),
    "channels edited": ({"input_channels": 3}, "3 channel(s) but the model takes 1"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CARD_MISFITS))
def test_card_that_does_not_fit_its_model_is_refused(name: str, models_root: Path, tiny_keras_file) -> None:  # noqa: F811
    from core.models.runs import list_runs, load_model

    keras_run(models_root, tiny_keras_file, **CARD_MISFITS[name][0])
    with pytest.raises(WorkbenchError, match="does not fit the model") as info:
        load_model(list_runs()[0])
    assert CARD_MISFITS[name][1] in info.value.reason


def _link_outside(models: Path, tmp: Path) -> str:
    os.symlink(fake_run(tmp / "outside" / "planted", evaluation=held_out(1.0)), models / "planted")
    return "planted"


def _link_to_a_run(models: Path, tmp: Path) -> str:
    os.symlink(models / "good", models / "alias")
    return "alias"


def _linked_card(models: Path, tmp: Path) -> str:
    folder = fake_run(models / "linked-card")
    (tmp / "card.json").write_bytes((folder / "card.json").read_bytes())
    (folder / "card.json").unlink()
    os.symlink(tmp / "card.json", folder / "card.json")
    return "linked-card"


LINKED_RUNS: dict[str, Callable[[Path, Path], str]] = {
    "run folder linked outside the registry": _link_outside,
    "run folder linked to another run": _link_to_a_run,
    "card.json linked elsewhere": _linked_card,
}


@pytest.mark.parametrize("name", list(LINKED_RUNS))
def test_linked_run_is_never_listed_picked_or_resolved(name: str, models_root: Path, tmp_path: Path) -> None:
    from core.models.runs import best_run, list_runs, resolve_run

    fake_run(models_root / "good", evaluation=held_out(0.5))
    linked = LINKED_RUNS[name](models_root, tmp_path)
    assert [r.run_id for r in list_runs()] == ["good"] and best_run(list_runs()).run_id == "good"
    with pytest.raises(WorkbenchError, match="link"):
        resolve_run(linked)


#: name -> extra runs that must not become the default next to run "real" (held-out macro-F1 0.6)
DEFAULT_PICK: dict[str, dict] = {
    "perfect score on another folder": {"evaluation": held_out(1.0, eval_set="folder")},
    "perfect score, trained on synthetic images": {"evaluation": held_out(1.0), "data": {"synthetic": True}},
}


@pytest.mark.parametrize("name", list(DEFAULT_PICK))
def test_default_model_compares_like_with_like(name: str, models_root: Path) -> None:
    from core.evaluation.compare import comparison_table
    from core.models.runs import best_run, list_runs

    fake_run(models_root / "real", data={"synthetic": False}, evaluation=held_out(0.6))
    fake_run(models_root / "other", created="2026-09-01", **DEFAULT_PICK[name])
    assert best_run(list_runs()).run_id == "real"
    assert comparison_table(list_runs()).set_index("run").loc["real", "best"]


def _cli_case(args: list[str], env: dict[str, str] | None = None, words: str = ""):
    return args, env or {}, words


#: name -> (argv, environment changes, words of the one-line error); {tmp} is the test's folder
CLI_CASES: dict[str, tuple[list[str], dict[str, str], str]] = {
    **{f"train {' '.join(a)}": _cli_case(["train", "--data", "{tmp}/d", *a], words=o)
       for a, o, _ in BAD_TRAIN_OPTIONS.values()},
    "scan --threshold 300": _cli_case(["scan", "{tmp}/d", "--threshold", "300"], words="--threshold"),
    "predict --gradcam onto a file": _cli_case(["predict", "{tmp}/x.png", "--gradcam", "{tmp}/file"],
                                               words="a file, not a folder"),
    "WORKBENCH_MODELS_DIR names a file": _cli_case(["predict", "{tmp}/x.png"], {"WORKBENCH_MODELS_DIR": "{tmp}/file"},
                                                   "names a file"),
    "WORKBENCH_CACHE_DIR names a file": _cli_case(["scan", "{tmp}/d"], {"WORKBENCH_CACHE_DIR": "{tmp}/file"},
                                                  "names a file"),
    "mistyped models folder": _cli_case(["predict", "{tmp}/x.png"], {"WORKBENCH_MODELS_DIR": "{tmp}/modles"},
                                        "does not exist"),
    "NUL byte in a typed path": _cli_case(["scan", "{tmp}/d\0x"], words="NUL character"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_input_is_refused_in_one_line(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    args, env, words = CLI_CASES[name]
    write_class_tree(tmp_path / "d", {"glioma": 2, "notumor": 2})
    (tmp_path / "file").write_text("a file")
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    assert cli_main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "modles").exists()


@pytest.mark.parametrize("name", list(NON_FINITE))
def test_non_finite_pixels_are_refused(name: str) -> None:
    with pytest.raises(WorkbenchError, match=r"NaN or infinity") as info:
        decode_image(NON_FINITE[name](), name)
    assert info.value.source == name


def _exif_turned(orientation: int) -> np.ndarray:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored = np.full((40, 60), 30, np.uint8)
    stored[:10, :15] = 230
    Image.fromarray(stored).save(buf, format="PNG", exif=exif)
    return decode_image(buf.getvalue(), "phone.png").pixels


#: handled inputs: name -> check that the input is used correctly
HANDLED_INPUTS: dict[str, Callable[[], None]] = {
    "photo stored sideways (EXIF 6)": lambda: _check(_exif_turned(6).shape == (60, 40) and _exif_turned(6)[0, -1] == 230),
    "photo stored upside down (EXIF 3)": lambda: _check(_exif_turned(3)[-1, -1] == 230),
    "finite float DICOM": lambda: _check(decode_image(float_dicom(np.tile(np.linspace(0, 9, 32), (32, 1))),
                                                      "f.dcm").pixels[:, -1].min() > 245),
    "DICOM free text naming the patient": lambda: _check("SeriesDescription" not in decode_image(
        make_dicom(), "s.dcm").meta),
}


def _check(ok: bool) -> None:
    assert ok


@pytest.mark.parametrize("name", list(HANDLED_INPUTS))
def test_odd_input_is_handled(name: str) -> None:
    HANDLED_INPUTS[name]()


@pytest.mark.parametrize("text", FORMULAS, ids=[repr(f[:12]) for f in FORMULAS])
def test_formula_in_a_file_name_is_neutralised_in_csv(text: str) -> None:
    from core.inference.predict import PredictionResult
    from core.reports.case_report import results_csv

    data = results_csv([PredictionResult(file=text, error="x")], ["glioma", "notumor"]).decode()
    assert data.splitlines()[1].lstrip('"').startswith("'")


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n[:14]) for n in HOSTILE_NAMES])
def test_markdown_in_a_file_name_is_shown_literally(name: str) -> None:
    from core.safetext import escape_markdown

    assert re.sub(r"\\(.)", r"\1", escape_markdown(name)) == name.replace("\n", " ")


def test_closed_stdout_pipe_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_class_tree(tmp_path / "d", {"glioma": 2, "notumor": 2})
    proc = subprocess.Popen([sys.executable, "-m", "core", "scan", str(tmp_path / "d"), "--json"], cwd=PROJECT_ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert b"Traceback" not in proc.communicate(timeout=120)[1]


def _model_and_input_groups() -> list[tuple[str, object, str]]:
    """This block's groups for :func:`corpus_cases` (issue 13, defects 2, 5, 6, 9, 10, 11, 12)."""
    return [
        ("model card", BAD_CARDS, REFUSED),
        ("card against its model", CARD_MISFITS, REFUSED),
        ("linked run", LINKED_RUNS, REFUSED),
        ("default model pick", DEFAULT_PICK, HANDLED),
        ("command line", CLI_CASES, REFUSED),
        ("command line output", ["stdout closed early (| head)"], HANDLED),
        ("pixel values", NON_FINITE, REFUSED),
        ("odd input", HANDLED_INPUTS, HANDLED),
        ("CSV formula in a name", [repr(f) for f in FORMULAS], HANDLED),
        ("Markdown in a name", [repr(n) for n in HOSTILE_NAMES], HANDLED),
    ]


# ============================================================================================
# Issue 23, the second hostile pass (defects 1-5, 7-11). The cases run in test_hostile_pass2.py
# (each class with its failing-first test); here they are counted.
# ============================================================================================

from test_hostile_pass2 import (  # noqa: E402
    DICOM_BOMBS,
    HOSTILE_SOURCES,
    LONG_PATH_CLI,
    READ_ONLY_CASES,
    REFUSED_AFTER_EXTRACTION,
    SIDE_FILE_DAMAGE,
    TRUNCATED_JPEGS,
)


def _second_pass_groups() -> list[tuple[str, object, str]]:
    """Issue 23's groups for :func:`corpus_cases`."""
    return [
        ("Markdown in a name, on all six pages", HOSTILE_SOURCES, HANDLED),
        ("request leaving the server", ["favicon of a deep link fetched from fonts.gstatic.com"], HANDLED),
        ("DICOM header", DICOM_BOMBS, REFUSED),
        ("DICOM frames", ["12-frame object: only the middle frame decoded"], HANDLED),
        ("DICOM modality", ["ultrasound (US) DICOM: warned, not an MRI"], HANDLED),
        ("truncated JPEG", TRUNCATED_JPEGS, REFUSED),
        ("over-long path", {**LONG_PATH_CLI, "?dataset= of 300 characters (every page)": None}, REFUSED),
        ("zip refused after unpacking", REFUSED_AFTER_EXTRACTION, REFUSED),
        ("damaged side file", SIDE_FILE_DAMAGE, HANDLED),
        ("card written meanwhile", ["evaluation stored during calibrate", "8 threads adding evaluations",
                                    "2 processes x 20 updates"], HANDLED),
        ("class order", ["swapped in a new card (predict, calibrate --conformal-only, export)",
                         "swapped in an old card (checked against conformal.npz)"], REFUSED),
        ("read-only destination", READ_ONLY_CASES, REFUSED),
        ("read-only model card", ["evaluate: result printed, 'not stored' said"], HANDLED),
    ]


# --------------------------------------------------------------------------------------------
# The corpus's size: every distinct hostile case above and its outcome
# --------------------------------------------------------------------------------------------

REFUSED, HANDLED, RECOVERED = "refused with message", "handled", "recovered"
OUTCOMES = (REFUSED, HANDLED, RECOVERED)


def corpus_cases() -> dict[str, str]:
    """Every distinct hostile case of this file (group: name) with its outcome.

    refused with message: a WorkbenchError naming the input and the reason, nothing written;
    handled: the input is used or skipped with a reason and everything else still works;
    recovered: a fault of the server's own state (cache) is survived and repaired.
    """
    groups: list[tuple[str, object, str]] = [
        ("image", BAD_IMAGES, REFUSED),
        ("odd image", ODD_IMAGES, HANDLED),
        ("zip", BAD_ZIPS, REFUSED),
        ("dataset folder", BAD_FOLDERS, REFUSED),
        ("folder entry", HOSTILE_FOLDER_ENTRIES, HANDLED),
        ("path", BAD_PATHS, REFUSED),
        ("unlucky dataset", EDGE_DATASETS, HANDLED),
        ("cache write fault", WRITE_FAULTS, RECOVERED),
        ("damaged cache entry", DAMAGE, RECOVERED),
        ("cache leftovers", ["stale temporaries"], RECOVERED),
        ("sessions at once", ["four uploads and scans of one zip"], HANDLED),
        *_model_and_input_groups(),
        *_second_pass_groups(),
    ]
    return {f"{group}: {name}": outcome for group, names, outcome in groups for name in names}


def corpus_totals() -> dict[str, int]:
    """How many distinct hostile cases the corpus holds, in all and per outcome."""
    cases = corpus_cases()
    return {"distinct hostile cases": len(cases), **{o: sum(v == o for v in cases.values()) for o in OUTCOMES}}


def test_the_corpus_reports_its_size(record_property, capsys) -> None:
    cases, totals = corpus_cases(), corpus_totals()
    assert set(cases.values()) <= set(OUTCOMES)
    assert sum(totals[o] for o in OUTCOMES) == totals["distinct hostile cases"] == len(cases)
    record_property("bad_input_corpus", totals)
    with capsys.disabled():
        print("\nbad-input corpus: " + ", ".join(f"{n} {k}" for k, n in totals.items()))


if __name__ == "__main__":  # PYTHONPATH=.:tests python tests/security/test_bad_input_corpus.py: the table and the totals
    for case, outcome in corpus_cases().items():
        print(f"{outcome:22} {case}")
    print(corpus_totals())

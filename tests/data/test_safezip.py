"""core.data.safezip: uploads are validated before a byte is written, and refusals leave nothing."""

from __future__ import annotations

import io
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest

from core.data.datasets import open_zip
from core.data.safezip import ZipLimits, extract_zip
from core.errors import WorkbenchError

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def dataset_zip(encode_image, pixels) -> bytes:
    """A zip of 'MyScans/Training/<class>/img_i.png' (2 per class) plus macOS clutter."""
    entries = {}
    for k, label in enumerate(CLASSES):
        for i in range(2):
            entries[f"MyScans/Training/{label}/img_{i}.png"] = encode_image(pixels(10 * k + i))
    entries["__MACOSX/MyScans/._img_0.png"] = b"resource fork"
    entries["MyScans/.DS_Store"] = b"finder"
    return make_zip(entries)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def _refused(data: bytes, dest: Path, match: str, limits: ZipLimits = ZipLimits()) -> WorkbenchError:
    with pytest.raises(WorkbenchError, match=match) as info:
        extract_zip(data, dest, "upload.zip", limits)
    assert info.value.source == "upload.zip"
    assert list(dest.iterdir()) == [], "a refused zip must leave nothing behind"
    return info.value


def test_normal_zip_extracts_and_root_is_found_through_the_wrapper_folder(
    dataset_zip: bytes, dest: Path
) -> None:
    root = extract_zip(dataset_zip, dest)
    assert root.name == "MyScans"
    assert sorted(p.name for p in (root / "Training").iterdir()) == list(CLASSES)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert len(files) == 8 and all(f.endswith(".png") for f in files)
    assert not (root.parent / "__MACOSX").exists(), "macOS resource forks are not data"
    assert not (root / ".DS_Store").exists()
    assert not [p for p in dest.iterdir() if ".tmp" in p.name], "no temporary folder is left"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["Wrap/Inner/glioma/a.png", "Wrap/Inner/notumor/b.png"], "Inner"),  # two wrappers
        (["glioma/a.png", "notumor/b.png"], None),  # class folders at the top: the root itself
        (["Data/Training/glioma/a.png"], "Data"),  # a lone split folder is part of the dataset
        (["Data/glioma_tumor/a.png"], "Data"),  # so is a lone class folder
    ],
)
def test_dataset_root_stops_at_split_and_class_folders(
    entries: list[str], expected: str | None, dest: Path
) -> None:
    root = extract_zip(make_zip(dict.fromkeys(entries, b"x")), dest)
    assert root.name == expected if expected else root.parent == dest


def test_same_upload_twice_reuses_the_extraction(dataset_zip: bytes, dest: Path) -> None:
    first = extract_zip(dataset_zip, dest)
    marker = first / "Training" / "glioma" / "img_0.png"
    mtime = marker.stat().st_mtime_ns
    assert extract_zip(dataset_zip, dest) == first
    assert marker.stat().st_mtime_ns == mtime
    assert len(list(dest.iterdir())) == 1


def test_open_zip_lists_the_dataset_inside(dataset_zip: bytes, isolated_workbench_dirs: dict) -> None:
    ds = open_zip(dataset_zip, "MyScans.zip")
    assert ds.kind == "zip" and ds.name == "MyScans"
    assert ds.class_names == list(CLASSES)
    assert len(ds.files) == 8
    assert ds.layout == "splits" and set(ds.files["source_split"]) == {"train"}
    assert isolated_workbench_dirs["cache"] in ds.root.parents


@pytest.mark.parametrize(
    "name",
    ["../evil.png", "data/../../evil.png", "..\\..\\evil.png", "a/b/../../../evil.png"],
)
def test_path_traversal_is_refused(name: str, dest: Path) -> None:
    data = make_zip({"ok/glioma/a.png": b"x", name: b"pwned"})
    _refused(data, dest, "escapes its folder")
    assert not (dest.parent / "evil.png").exists()


@pytest.mark.parametrize("name", ["/etc/evil.png", "/tmp/evil.png", "C:/evil.png", "C:\\evil.png"])
def test_absolute_paths_are_refused(name: str, dest: Path) -> None:
    _refused(make_zip({name: b"pwned"}), dest, "absolute path")


def test_symlink_entries_are_refused(dest: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/glioma/a.png", b"x")
        link = zipfile.ZipInfo("data/glioma/passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    _refused(buf.getvalue(), dest, "symbolic link")


def test_zip_bomb_is_refused_by_its_compression_ratio(dest: Path) -> None:
    data = make_zip({"bomb/glioma/zeros.png": b"\0" * (20 * 1024**2)})
    assert len(data) < 100_000  # ~1000:1
    start = time.perf_counter()
    _refused(data, dest, "zip bomb")
    assert time.perf_counter() - start < 1.0, "the bomb must be refused from its header, not inflated"


def test_many_small_members_are_refused_by_total_size(dest: Path) -> None:
    entries = {f"d/glioma/{i}.png": bytes(range(256)) * 40 for i in range(5)}  # ~10 KB each
    _refused(make_zip(entries, zipfile.ZIP_STORED), dest, "inflates to", ZipLimits(max_total_bytes=30_000))


def test_one_oversized_member_is_refused(dest: Path) -> None:
    data = make_zip({"d/glioma/big.png": bytes(range(256)) * 100}, zipfile.ZIP_STORED)
    _refused(data, dest, "inflates to", ZipLimits(max_member_bytes=10_000))


def test_too_many_entries_are_refused(dest: Path) -> None:
    entries = {f"d/glioma/{i}.png": b"x" for i in range(6)}
    _refused(make_zip(entries), dest, "holds 6 entries; the limit is 5", ZipLimits(max_files=5))


def test_default_entry_limit_with_a_genuinely_large_count(dest: Path) -> None:
    limit = ZipLimits().max_files
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(limit + 1):
            zf.writestr(f"d/glioma/{i}.png", b"")
    start = time.perf_counter()
    _refused(buf.getvalue(), dest, f"the limit is {limit}")
    assert time.perf_counter() - start < 5.0


def test_header_that_understates_the_size_is_caught_while_inflating(dest: Path) -> None:
    payload = bytes(range(256)) * 64  # 16 KB, stored
    data = bytearray(make_zip({"d/glioma/liar.png": payload}, zipfile.ZIP_STORED))
    # Claim 100 bytes in the local header (offset 22) and the central directory entry (offset 24).
    data[22:26] = struct.pack("<I", 100)
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 100)
    with pytest.raises(WorkbenchError) as info:
        extract_zip(bytes(data), dest, "upload.zip")
    assert info.value.source == "upload.zip"
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x03\x04 but then nothing", b"%PDF-1.7 a report, not a zip", b"\x89PNG\r\n\x1a\n" + b"\0" * 64],
    ids=["empty", "truncated", "pdf", "png"],
)
def test_not_a_zip_is_refused(data: bytes, dest: Path) -> None:
    _refused(data, dest, "not a valid zip")


def test_zip_with_only_folders_or_clutter_is_refused(dest: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("empty/", b"")
        zf.writestr("__MACOSX/._x", b"fork")
    _refused(buf.getvalue(), dest, "no files")


def test_corrupt_member_data_is_refused_and_cleaned_up(dest: Path) -> None:
    data = bytearray(make_zip({"d/glioma/a.png": b"hello world " * 100}))
    data[40:60] = b"\xff" * 20  # inside the deflate stream of the only member
    with pytest.raises(WorkbenchError) as info:
        extract_zip(bytes(data), dest, "upload.zip")
    assert info.value.source == "upload.zip"
    assert list(dest.iterdir()) == []

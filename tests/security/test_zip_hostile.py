"""Hostile zip uploads beyond traversal and bombs: encryption, deep nesting, long names, clashes.

Each is refused with a WorkbenchError whose message names the upload and the rule, never
shows a server path and never a raw RuntimeError/RecursionError; nothing is left on disk,
through extract_zip and through the Explorer's entry point (open_zip).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import encode, smooth_image

from core.data.datasets import open_zip
from core.data.safezip import ZipLimits, extract_zip
from core.errors import WorkbenchError


def good_entries() -> dict[str, bytes]:
    return {f"d/{label}/{i}.png": encode(smooth_image(10 * k + i)) for k, label in enumerate(("glioma", "notumor"))
            for i in range(2)}


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def encrypted_zip() -> bytes:
    """The 'encrypted' bit set on one member, in its local header and the central directory,
    as a password-protected (ZipCrypto) zip has it. zipfile cannot write one, so patch the bytes."""
    name = "d/glioma/secret.png"
    data = bytearray(zip_of({**good_entries(), name: encode(smooth_image(99))}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    data[info.header_offset + 6] |= 0x1  # local file header: general purpose flags at +6
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        if data[central + 46: central + 46 + len(name)] == name.encode():
            data[central + 8] |= 0x1  # central directory header: flags at +8
        central = data.find(b"PK\x01\x02", central + 4)
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name).flag_bits & 0x1
    return bytes(data)


def deep_zip(depth: int = 2000) -> bytes:
    return zip_of({**good_entries(), "d/glioma/" + "a/" * depth + "x.png": encode(smooth_image(5))})


def long_name_zip(chars: int = 300) -> bytes:
    return zip_of({**good_entries(), f"d/glioma/{'n' * chars}.png": encode(smooth_image(6))})


def long_path_zip() -> bytes:
    """Every component legal (200 chars) but the path as a whole 6 KB long."""
    return zip_of({**good_entries(), "d/glioma/" + ("p" * 200 + "/") * 30 + "x.png": encode(smooth_image(7))})


def clash_zip() -> bytes:
    """'d/glioma/x' is a file and also a folder holding 'y.png'."""
    return zip_of({**good_entries(), "d/glioma/x": b"file", "d/glioma/x/y.png": encode(smooth_image(8))})


#: name -> (builder, reason regex)
HOSTILE_ZIPS: dict[str, tuple[Callable[[], bytes], str]] = {
    "encrypted.zip": (encrypted_zip, r"'d/glioma/secret\.png' is encrypted \(password-protected\)"),
    "2000-deep.zip": (deep_zip, r"is nested 2002 folders deep; the limit is 32"),
    "300-char-name.zip": (long_name_zip, r"has a file or folder name of 304 bytes; the limit is 255"),
    "6kb-path.zip": (long_path_zip, r"has a path of \d{4} bytes; the limit is 1024"),
    "file-folder-clash.zip": (clash_zip, r"'d/glioma/x' is both a file and a folder"),
}


def _no_server_path(message: str, *paths: Path) -> None:
    for path in paths:
        assert str(path) not in message, message
    assert "/tmp" not in message and "/root" not in message and "/home" not in message, message


@pytest.mark.parametrize("name", list(HOSTILE_ZIPS))
def test_hostile_zip_is_refused_cleanly(name, tmp_path, isolated_workbench_dirs):
    build, reason = HOSTILE_ZIPS[name]
    data = build()
    dest = tmp_path / "uploads"
    dest.mkdir()
    with pytest.raises(WorkbenchError) as info:
        extract_zip(data, dest, name)
    assert info.value.source == name and re.search(reason, info.value.reason), info.value.reason
    assert len(str(info.value)) < 400, "a hostile name is shortened in the message"
    _no_server_path(str(info.value), dest, tmp_path)
    assert list(dest.iterdir()) == [], "nothing left behind"

    with pytest.raises(WorkbenchError, match=reason) as info:
        open_zip(data, name)
    uploads = isolated_workbench_dirs["cache"] / "uploads"
    _no_server_path(str(info.value), uploads)
    assert list(uploads.iterdir()) == []
    assert open_zip(zip_of(good_entries()), "good.zip").class_names == ["glioma", "notumor"]


def test_limits_are_configurable(tmp_path):
    data = zip_of({**good_entries(), "d/glioma/a/b/c/x.png": encode(smooth_image(3))})
    with pytest.raises(WorkbenchError, match="nested 5 folders deep; the limit is 4"):
        extract_zip(data, tmp_path, "z.zip", ZipLimits(max_depth=4))
    assert extract_zip(data, tmp_path, "z.zip").is_dir()


def test_a_write_error_while_extracting_names_no_server_path(tmp_path, monkeypatch):
    """An OSError (disk full) during extraction: a clear refusal, the server path withheld."""
    import errno

    import core.data.safezip

    real_open = open

    def failing_open(path, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(core.data.safezip, "open", failing_open, raising=False)
    with pytest.raises(WorkbenchError, match="No space left on device") as info:
        extract_zip(zip_of(good_entries()), tmp_path, "z.zip")
    _no_server_path(str(info.value), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_upload_folder_is_a_clear_refusal(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(WorkbenchError, match="cannot be stored on the server") as info:
        open_zip(zip_of(good_entries()), "good.zip")
    assert info.value.source == "good.zip"
    _no_server_path(str(info.value), tmp_path)

"""Data folders: links, non-regular files and read caps (the data-roots rule beyond the typed path).

* A link inside a dataset (class folder, split folder, subfolder or file) is followed only
  when its target lies inside the dataset itself or under a data root (WORKBENCH_DATA_ROOTS).
  Otherwise it is listed among the dataset's problems and never read.
* Anything that is not a regular file (named pipe, socket, device) is skipped with a reason;
  it is never opened, so a FIFO cannot hang a scan.
* Reading is capped: a file that claims 0 bytes but streams forever is cut off.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import write_class_tree, write_image

from core.data.datasets import open_folder
from core.data.imageio import decode_image
from core.data.scan import scan_dataset
from core.errors import WorkbenchError

OUTSIDE_REASON = "outside the allowed data folders"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data root with a dataset, a second data root, and a folder outside every root."""
    data, other, outside = tmp_path / "data", tmp_path / "other-root", tmp_path / "outside"
    write_class_tree(data / "brain", {"glioma": 2, "notumor": 2}, seed=1)
    write_class_tree(other, {"shared/meningioma": 2}, seed=2)
    write_class_tree(outside, {"meningioma": 2, "Testing/glioma": 1, "Testing/notumor": 1}, seed=3)
    write_image(outside / "secret.png", seed=4)
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", os.pathsep.join([str(data), str(other)]))
    return {"brain": data / "brain", "other": other, "outside": outside}


def problems(ds) -> dict[str, str]:
    return dict(ds.problems)


def run_with_timeout(fn, seconds: float):
    """Run fn in a thread; fail (instead of hanging the suite) if it does not finish in time."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not finish within {seconds} s (hangs on a non-regular file?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- links ------------------------------------------------------------------------------------


def test_a_class_folder_linked_outside_every_root_is_not_followed(roots):
    (roots["brain"] / "meningioma").symlink_to(roots["outside"] / "meningioma", target_is_directory=True)
    ds = open_folder(roots["brain"])
    assert ds.class_names == ["glioma", "notumor"]
    assert not any(p.startswith("meningioma") for p in ds.files["path"])
    assert OUTSIDE_REASON in problems(ds)["meningioma/"]


def test_etc_linked_as_a_class_folder_is_never_listed(roots):
    (roots["brain"] / "pituitary").symlink_to("/etc", target_is_directory=True)
    ds = open_folder(roots["brain"])
    assert not any(p.startswith("pituitary") for p in ds.files["path"])
    assert OUTSIDE_REASON in problems(ds)["pituitary/"]
    assert not any("passwd" in p for p, _ in ds.problems)


def test_a_file_linked_outside_is_listed_as_a_problem_and_never_read(roots):
    (roots["brain"] / "glioma" / "leak.png").symlink_to(roots["outside"] / "secret.png")
    ds = open_folder(roots["brain"])
    assert "glioma/leak.png" not in set(ds.files["path"])
    assert OUTSIDE_REASON in problems(ds)["glioma/leak.png"]
    report = scan_dataset(ds, workers=1)
    assert "glioma/leak.png" in dict(report.unreadable())


def test_a_split_folder_linked_outside_is_not_followed(roots, tmp_path, monkeypatch):
    kaggle = tmp_path / "data" / "kaggle"
    write_class_tree(kaggle, {"Training/glioma": 2, "Training/notumor": 2}, seed=5)
    (kaggle / "Testing").symlink_to(roots["outside"] / "Testing", target_is_directory=True)
    ds = open_folder(kaggle)
    assert set(ds.files["source_split"]) == {"train"}
    assert OUTSIDE_REASON in problems(ds)["Testing/"]


def test_a_subfolder_linked_outside_is_not_followed(roots):
    (roots["brain"] / "glioma" / "more").symlink_to(roots["outside"] / "meningioma", target_is_directory=True)
    ds = open_folder(roots["brain"])
    assert not any(p.startswith("glioma/more/") for p in ds.files["path"])
    assert OUTSIDE_REASON in problems(ds)["glioma/more/"]


def test_links_inside_the_dataset_or_to_another_data_root_are_followed(roots):
    brain = roots["brain"]
    (brain / "glioma" / "alias.png").symlink_to(brain / "glioma" / "img_000.png")
    (brain / "meningioma").symlink_to(roots["other"] / "shared" / "meningioma", target_is_directory=True)
    (brain / "notumor" / "extra").symlink_to(brain / "glioma", target_is_directory=True)
    ds = open_folder(brain)
    listed = set(ds.files["path"])
    assert {"glioma/alias.png", "meningioma/img_000.png", "notumor/extra/img_000.png"} <= listed
    assert ds.class_names == ["glioma", "meningioma", "notumor"]
    assert not any(OUTSIDE_REASON in r for _, r in ds.problems)
    report = scan_dataset(ds, workers=1)
    assert report.files["ok"].all()


def test_a_link_loop_is_listed_once_and_reported(roots):
    (roots["brain"] / "glioma" / "loop").symlink_to(roots["brain"], target_is_directory=True)
    ds = run_with_timeout(lambda: open_folder(roots["brain"]), 20)
    assert len(ds.files) < 50
    assert "loop" in problems(ds)["glioma/loop/"]


def test_a_dangling_link_is_a_problem_not_a_crash(roots):
    (roots["brain"] / "glioma" / "gone.png").symlink_to(roots["brain"] / "nowhere.png")
    ds = open_folder(roots["brain"])
    assert "glioma/gone.png" in problems(ds)


def test_the_scan_rechecks_links_at_read_time(roots):
    """A file swapped for a link to the outside after listing is still not read."""
    ds = open_folder(roots["brain"])
    victim = roots["brain"] / "glioma" / "img_000.png"
    victim.unlink()
    victim.symlink_to(roots["outside"] / "secret.png")
    report = scan_dataset(ds, use_cache=False, workers=1)
    row = report.files.set_index("path").loc["glioma/img_000.png"]
    assert not row["ok"] and OUTSIDE_REASON in row["error"]
    assert not isinstance(row["sha256"], str) or not row["sha256"], "the outside file's content was never read"


# --- non-regular files ------------------------------------------------------------------------


def test_a_fifo_in_a_class_folder_is_skipped_and_never_opened(roots):
    os.mkfifo(roots["brain"] / "glioma" / "pipe.png")
    ds = run_with_timeout(lambda: open_folder(roots["brain"]), 20)
    assert "glioma/pipe.png" not in set(ds.files["path"])
    assert "named pipe" in problems(ds)["glioma/pipe.png"]
    report = run_with_timeout(lambda: scan_dataset(ds, workers=1), 30)
    assert "glioma/pipe.png" in dict(report.unreadable())


def test_a_socket_in_a_class_folder_is_skipped(roots):
    path = roots["brain"] / "glioma" / "sock.png"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        ds = open_folder(roots["brain"])
    assert "socket" in problems(ds)["glioma/sock.png"]


def test_a_device_node_in_a_class_folder_is_skipped(roots):
    path = roots["brain"] / "glioma" / "zero.png"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except (PermissionError, OSError):
        pytest.skip("cannot create device nodes here")
    ds = open_folder(roots["brain"])
    assert "device" in problems(ds)["glioma/zero.png"]


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_a_device_is_never_read(roots, target):
    (roots["brain"] / "glioma" / "zero.png").symlink_to(target)
    ds = run_with_timeout(lambda: open_folder(roots["brain"]), 20)
    assert "glioma/zero.png" in problems(ds)
    report = run_with_timeout(lambda: scan_dataset(ds, workers=1), 30)
    assert len(report.files) == 4


# --- reading: regular files only, and capped ----------------------------------------------------


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_decoding_a_device_is_refused_at_once(target):
    start = time.perf_counter()
    with pytest.raises(WorkbenchError, match="not a regular file"):
        run_with_timeout(lambda: decode_image(target), 10)
    assert time.perf_counter() - start < 5


def test_decoding_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(WorkbenchError, match="named pipe"):
        run_with_timeout(lambda: decode_image(fifo), 10)


def test_a_file_that_claims_zero_bytes_but_streams_is_cut_off(monkeypatch):
    """/proc files are 'regular' with st_size 0 yet hold data: only the cap stops such a read."""
    import core.data.imageio

    monkeypatch.setattr(core.data.imageio, "MAX_FILE_BYTES", 64)
    with pytest.raises(WorkbenchError, match="too large"):
        decode_image("/proc/self/maps")


def test_a_sparse_file_beyond_the_cap_is_refused_without_reading(tmp_path):
    from core.data.imageio import MAX_FILE_BYTES

    big = tmp_path / "huge.png"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    start = time.perf_counter()
    with pytest.raises(WorkbenchError, match="too large"):
        decode_image(big)
    assert time.perf_counter() - start < 2


def test_the_predict_cli_refuses_a_fifo_without_hanging(tmp_path):
    from core.cli.predict import _read

    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    reason = run_with_timeout(lambda: _read(str(fifo)), 10)
    assert isinstance(reason, str) and "named pipe" in reason
    assert "not a regular file" in run_with_timeout(lambda: _read("/dev/zero"), 10)

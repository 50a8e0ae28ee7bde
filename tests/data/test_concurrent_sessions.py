"""Several sessions of one server at once: uploading one zip and scanning one dataset.

Temporary files used to be named by process id only, so threads of one server shared them:
15 of 20 concurrent uploads failed and parallel scans raised FileNotFoundError. Every session
must now succeed with identical results and leave no temporary behind.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import encode, smooth_image

from core.data.datasets import open_folder, open_zip
from core.data.scan import scan_dataset

SESSIONS = 4


def dataset_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, label in enumerate(("glioma", "meningioma", "notumor", "pituitary")):
            for i in range(6):
                zf.writestr(f"scans/Training/{label}/{i}.png", encode(smooth_image(10 * k + i, 48)))
    return buf.getvalue()


def in_parallel(fn, n: int = SESSIONS) -> list:
    """Run fn(i) in n threads released together; return results in order, re-raising any error."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name)


def comparable(report) -> dict:
    return {k: v for k, v in report.summary().items() if k not in ("seconds", "from_cache")}


@pytest.mark.parametrize("round_", range(3))
def test_sessions_upload_the_same_zip_and_scan_it_at_once(round_, isolated_workbench_dirs):
    cache = isolated_workbench_dirs["cache"]
    data = dataset_zip()

    datasets = in_parallel(lambda i: open_zip(data, "scans.zip"))
    assert len({d.root for d in datasets}) == 1, "one extraction, shared"
    assert len({d.fingerprint for d in datasets}) == 1
    assert all(len(d.files) == 24 for d in datasets)
    uploads = [p.name for p in (cache / "uploads").iterdir()]
    assert len(uploads) == 1 and not uploads[0].startswith("."), uploads

    reports = in_parallel(lambda i: scan_dataset(datasets[i], workers=2))
    first = comparable(reports[0])
    assert all(comparable(r) == first for r in reports)
    assert first["n_images"] == 24
    assert temporaries(cache) == [], "no temporary left behind"
    assert scan_dataset(datasets[0]).from_cache  # a complete entry was published


def test_sessions_scan_one_folder_cold_and_warm(tmp_path, isolated_workbench_dirs):
    from conftest import write_class_tree

    write_class_tree(tmp_path / "d", {"glioma": 8, "notumor": 8}, size=48)
    ds = open_folder(tmp_path / "d")
    cold = in_parallel(lambda i: scan_dataset(open_folder(tmp_path / "d"), workers=1), 8)
    warm = in_parallel(lambda i: scan_dataset(ds, workers=1), 8)
    expected = comparable(cold[0])
    assert all(comparable(r) == expected for r in cold + warm)
    assert all(r.from_cache for r in warm)
    assert temporaries(isolated_workbench_dirs["cache"]) == []

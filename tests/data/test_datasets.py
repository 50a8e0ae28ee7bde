"""core.data.datasets: layouts, class-name variants, listing problems, fingerprints, read-only access."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.classes import CANONICAL_CLASSES
from core.data.datasets import SOURCES, open_default, open_demo, open_folder
from core.data.demo import DEMO_COUNTS, PLANTED_EXACT, PLANTED_NEAR
from core.data.scan import scan_dataset
from core.errors import WorkbenchError


def test_kaggle_layout(kaggle_tree: Path) -> None:
    ds = open_folder(kaggle_tree)
    assert ds.layout == "splits" and ds.kind == "folder" and not ds.synthetic
    assert ds.class_names == list(CANONICAL_CLASSES)
    assert len(ds.files) == 4 * 3 + 4 * 2
    assert list(ds.files.columns) == ["path", "label", "source_split"]
    counts = ds.files.groupby(["source_split", "label"]).size()
    assert counts["train"].tolist() == [3, 3, 3, 3]
    assert counts["test"].tolist() == [2, 2, 2, 2]
    for rel, label in ds.files[["path", "label"]].itertuples(index=False):
        assert not Path(rel).is_absolute() and ds.abspath(rel).is_file()
        assert Path(rel).parent.name == label
    assert ds.problems == []


def test_flat_layout(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 2, "notumor": 3})
    ds = open_folder(tmp_path, name="mine")
    assert ds.layout == "flat" and ds.name == "mine"
    assert ds.class_names == ["glioma", "notumor"]
    assert set(ds.files["source_split"]) == {""}
    assert ds.files["label"].value_counts().to_dict() == {"notumor": 3, "glioma": 2}


def test_demo_layout_matches_its_documentation(demo_root: Path) -> None:
    ds = open_folder(demo_root, kind="demo", synthetic=True, name="Demo")
    assert ds.title.endswith("(SYNTHETIC demo)")
    per_split = ds.files["source_split"].value_counts().to_dict()
    assert per_split["train"] == DEMO_COUNTS["Training"] * 4 + PLANTED_EXACT
    assert per_split["test"] == DEMO_COUNTS["Testing"] * 4 + PLANTED_NEAR


def test_open_demo_and_open_default(
    demo_root: Path, kaggle_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.data.demo

    monkeypatch.setattr(core.data.demo, "demo_dir", lambda seed=0: demo_root)
    demo = open_demo()
    assert demo.synthetic and demo.kind == "demo"
    assert open_default().root == demo_root  # no WORKBENCH_DATA_DIR: the demo
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(kaggle_tree))
    chosen = open_default()
    assert chosen.root == kaggle_tree and not chosen.synthetic
    assert set(SOURCES) == {"demo", "folder", "zip"}


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"], list(CANONICAL_CLASSES)),
        (["Glioma", "MENINGIOMA", "No Tumour", "PITUITARY_TUMOR"], list(CANONICAL_CLASSES)),
        (["glioma-tumour", "normal"], ["glioma", "notumor"]),
    ],
)
def test_class_name_variants_map_to_canonical(folders, expected, tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path / "Training", dict.fromkeys(folders, 1))
    ds = open_folder(tmp_path)
    assert ds.class_names == expected
    assert set(ds.files["label"]) == set(expected)


def test_unknown_class_folder_is_an_error(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 1, "notumor": 1, "astrocytoma": 1, "misc": 1})
    with pytest.raises(WorkbenchError, match="unknown class folder") as info:
        open_folder(tmp_path)
    assert "'astrocytoma'" in info.value.reason and "'misc'" in info.value.reason
    assert info.value.source == str(tmp_path)


def test_two_folders_meaning_one_class_is_an_error(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 1, "glioma_tumor": 1, "notumor": 1})
    with pytest.raises(WorkbenchError, match="both mean class 'glioma'"):
        open_folder(tmp_path)


def test_one_class_only_is_an_error(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 3})
    with pytest.raises(WorkbenchError, match="at least two classes"):
        open_folder(tmp_path)


def test_two_class_folders_but_one_empty_is_an_error(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 3})
    (tmp_path / "notumor").mkdir()
    with pytest.raises(WorkbenchError, match=r"found 1 \(glioma\)"):
        open_folder(tmp_path)


def test_no_class_subfolders_is_an_error(tmp_path: Path, image_writer) -> None:
    image_writer(tmp_path / "a.png")
    with pytest.raises(WorkbenchError, match="no class subfolders"):
        open_folder(tmp_path)


def test_split_folder_without_class_subfolders_is_an_error(tmp_path: Path, image_writer) -> None:
    image_writer(tmp_path / "Training" / "a.png")
    with pytest.raises(WorkbenchError, match="no class subfolders") as info:
        open_folder(tmp_path)
    assert info.value.source.endswith("Training")


def test_testing_only_is_an_error(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path / "Testing", {"glioma": 1, "notumor": 1})
    with pytest.raises(WorkbenchError, match="no Training/ folder"):
        open_folder(tmp_path)


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path, image_writer) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        open_folder(tmp_path / "nowhere")
    with pytest.raises(WorkbenchError, match="a file, not a folder"):
        open_folder(image_writer(tmp_path / "a.png"))


def test_empty_class_folder_is_a_problem_and_the_rest_loads(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 2, "notumor": 2, "pituitary": 2})
    (tmp_path / "meningioma").mkdir()
    ds = open_folder(tmp_path)
    assert ds.class_names == ["glioma", "notumor", "pituitary"]
    assert len(ds.files) == 6
    assert ("meningioma/", "empty class folder: no images") in ds.problems


def test_non_image_files_are_skipped_and_recorded(tmp_path: Path, class_tree) -> None:
    class_tree(tmp_path, {"glioma": 2, "notumor": 2})
    (tmp_path / "glioma" / "notes.txt").write_text("reading notes")
    (tmp_path / "glioma" / "labels.csv").write_text("a,b")
    (tmp_path / "notumor" / ".DS_Store").write_bytes(b"x")  # hidden: silently ignored
    (tmp_path / "notumor" / "IM0001").write_bytes(b"no suffix: may be DICOM")
    ds = open_folder(tmp_path)
    reasons = dict(ds.problems)
    assert reasons["glioma/notes.txt"] == "skipped: '.txt' is not an image type"
    assert reasons["glioma/labels.csv"].startswith("skipped")
    assert not any(".DS_Store" in p for p, _ in ds.problems)
    assert "notumor/IM0001" in set(ds.files["path"])  # suffix-less files are candidates
    assert len(ds.files) == 5


def test_nested_subfolders_inside_a_class_are_listed(tmp_path: Path, class_tree, image_writer) -> None:
    class_tree(tmp_path, {"glioma": 1, "notumor": 1})
    image_writer(tmp_path / "glioma" / "patient7" / "slice1.png", seed=99)
    ds = open_folder(tmp_path)
    assert "glioma/patient7/slice1.png" in set(ds.files["path"])
    assert ds.files.set_index("path").loc["glioma/patient7/slice1.png", "label"] == "glioma"


def test_fingerprint_is_stable_and_tracks_every_change(tmp_path: Path, class_tree, image_writer) -> None:
    paths = class_tree(tmp_path, {"glioma": 2, "notumor": 2})
    first = open_folder(tmp_path).fingerprint
    assert open_folder(tmp_path).fingerprint == first
    assert len(first) == 20

    seen = {first}

    def changed() -> str:
        fp = open_folder(tmp_path).fingerprint
        assert fp not in seen
        seen.add(fp)
        return fp

    image_writer(paths[0], seed=1234)  # same name, new content
    changed()
    st = paths[1].stat()  # same size, only the modification time moves
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed()
    image_writer(tmp_path / "notumor" / "new.png", seed=555)  # added
    changed()
    paths[2].rename(paths[2].with_name("renamed.png"))  # renamed
    changed()
    paths[3].unlink()  # removed
    after = changed()
    assert open_folder(tmp_path).fingerprint == after


def test_open_and_scan_change_nothing_on_disk(demo_root: Path, tmp_path: Path, disk_snapshot) -> None:
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    (root / "Training" / "glioma" / "broken.png").write_bytes(b"not a png")
    (root / "Training" / "glioma" / "notes.txt").write_text("skip me")
    before = disk_snapshot(root)
    ds = open_folder(root)
    report = scan_dataset(ds)
    scan_dataset(open_folder(root))  # the cached path too
    assert report.unreadable()
    assert disk_snapshot(root) == before

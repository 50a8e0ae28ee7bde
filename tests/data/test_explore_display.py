"""Issue 14, items 15 and 17: thumbnail names that never break mid-word, and what a re-split moved."""

from __future__ import annotations

from core.data.datasets import open_folder
from core.data.explore import moved_across_test_folder, short_file_name
from core.data.scan import scan_dataset
from core.data.splits import make_split


def test_short_names_keep_their_ends() -> None:
    assert short_file_name("Tr-gl_0012.jpg") == "Tr-gl_0012.jpg"
    long = short_file_name("Te-meningioma_scan_000123.jpg")
    assert len(long) == 16 and long.startswith("Te-meni") and long.endswith("123.jpg") and "…" in long


def test_folder_split_moves_nothing_and_leakage_free_says_how_much_it_moved(demo_root) -> None:
    report = scan_dataset(open_folder(demo_root))
    own = moved_across_test_folder(report, make_split(report, mode="dataset"))
    assert own == {"n_test_folder": 83, "test_moved_out": 0, "moved_into_test": 0}
    moved = moved_across_test_folder(report, make_split(report, mode="leakage_free"))
    assert moved["n_test_folder"] == 83 and 0 < moved["test_moved_out"] <= 83 and moved["moved_into_test"] > 0

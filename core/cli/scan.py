"""``python -m core scan``: counts, unreadable files, duplicates and the shortcut check of a dataset folder."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from core.errors import WorkbenchError


def register(sub: Any) -> None:
    """Add the ``scan`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("scan", help="scan a dataset folder: counts, unreadable files, duplicates")
    p.add_argument("data_dir")
    p.add_argument("--threshold", type=int, default=20, help="near-duplicate Hamming threshold (bits of 256)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the whole command: opening, scanning (or reading the cache), the shortcut check
    from core.config import DataConfig
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.data.shortcut import dataset_shortcut

    try:
        DataConfig(near_dup_threshold=args.threshold)  # the declared range, checked before any work
    except WorkbenchError as exc:
        raise WorkbenchError(exc.reason, "--threshold") from None
    ds = open_folder(args.data_dir)
    report = scan_dataset(ds, threshold=args.threshold)
    summary = report.summary()
    shortcut = dataset_shortcut(ds, report)
    summary.update(shortcut_accuracy=shortcut.accuracy, shortcut_chance=shortcut.chance,
                   shortcut_verdict=shortcut.verdict, shortcut_file_accuracy=shortcut.file_accuracy,
                   total_seconds=round(time.perf_counter() - started, 3))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Dataset: {ds.root}  ({ds.layout} layout, fingerprint {ds.fingerprint})")
    print(f"Classes: {', '.join(summary['classes'])}")
    for split, counts in summary["counts"].items():
        print(f"  {split:6s} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
    print(f"Readable images: {summary['n_images']} of {summary['n_files']} files")
    for item in summary["unreadable"]:
        print(f"  UNREADABLE {item['path']}: {item['reason']}")
    ex, near = summary["exact_duplicate_groups"], summary["near_duplicate_groups"]
    print(f"Exact-duplicate groups: {len(ex)} ({sum(map(len, ex))} files)")
    print(f"Near-duplicate groups (<= {args.threshold} of 256 bits): {len(near)} ({sum(map(len, near))} files)")
    print(f"Label conflicts: {len(summary['label_conflicts'])}")
    print(f"Groups crossing the folder's own splits: {len(summary['cross_split_leaks'])}")
    print(f"Shortcut check: {shortcut.verdict}")
    how = "read from the cache" if summary["from_cache"] else "no cache yet"
    print(f"Took {summary['total_seconds']:.1f} s in all (the file scan itself {summary['seconds']:.2f} s, {how})")
    return 0

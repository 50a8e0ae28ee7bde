"""Command-line interface sharing the engine the app uses."""

from __future__ import annotations

import argparse
import json
import sys

from core.errors import WorkbenchError


def _cmd_scan(args: argparse.Namespace) -> int:
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
                   shortcut_verdict=shortcut.verdict)
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
    print(f"Scan took {summary['seconds']:.2f} s ({'cache' if summary['from_cache'] else 'cold'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scan", help="scan a dataset folder: counts, unreadable files, duplicates")
    p.add_argument("data_dir")
    p.add_argument("--threshold", type=int, default=20, help="near-duplicate Hamming threshold (bits of 256)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_scan)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Other modules add their sub-commands here (train, evaluate, predict, export) to keep this file small.
_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    _load_extra_commands()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`... --json | head`): stop quietly, as other command-line tools do.
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests): nothing left to flush


def _load_extra_commands() -> None:
    import importlib

    for module in ("core.cli.train", "core.cli.evaluate", "core.cli.predict", "core.cli.export"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)

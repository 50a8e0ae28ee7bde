"""``python -m core predict STUDY``: one answer per DICOM series or NIfTI volume.

core.cli.predict hands its inputs here when they are studies (a folder, a zip, a NIfTI file, a
multi-frame DICOM); single images keep their own path and output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.errors import WorkbenchError


def add_study_options(p: Any) -> None:
    """The study options of ``predict`` (ignored for single images)."""
    from core.inference.study_rules import DEFAULT_RULE, STUDY_RULES

    p.add_argument("--series", default=None, metavar="UID_OR_NUMBER",
                   help="for a zip or folder holding several series: the SeriesInstanceUID or its number in the list")
    p.add_argument("--rule", default=DEFAULT_RULE, choices=list(STUDY_RULES),
                   help="how slice answers become the study answer (default: the one measured best)")


def is_study(path: str) -> bool:
    from core.data.study import looks_like_study

    try:
        return looks_like_study(Path(path))
    except (OSError, ValueError):
        return False


def run_studies(args: argparse.Namespace, predictor: Any, coverage: float, out_dir: Path | None = None) -> int:
    """Predict each study; print one JSON object per study (a list for several) or plain text.

    With ``out_dir`` (--gradcam), the strip's slices get heat maps, written there as PNG overlays.
    """
    from core.data.study import open_study
    from core.inference.study import StudyResult, predict_study

    results: list[StudyResult] = []
    for item in args.files:
        label = Path(item).name
        try:
            stack = open_study(Path(item)).pick(args.series)
            results.append(predict_study(predictor, stack, rule=args.rule, coverage=coverage,
                                         gradcam=out_dir is not None, method=args.method, source=label))
        except WorkbenchError as exc:
            results.append(StudyResult(study={"source": label}, rule=args.rule, error=exc.reason))
    objects = [r.to_dict() for r in results]
    if out_dir is not None:
        used: set[str] = set()
        for r, obj in zip(results, objects):
            obj["overlays"] = [_write_strip_overlay(out_dir, r, n, args, used) for n in r.strip if r.ok]
    if args.json:
        print(json.dumps(objects[0] if len(objects) == 1 else objects, indent=2, ensure_ascii=False))
    else:
        for r in results:
            _print_plain(r, predictor)
    return 0 if all(r.ok for r in results) else 2


def _write_strip_overlay(out_dir: Path, result: Any, number: int, args: argparse.Namespace, used: set[str]) -> str:
    from dataclasses import replace

    from core.atomic import write_bytes
    from core.reports.case_report import overlay_filename, overlay_for, png_bytes

    r = result.slice(number)
    named = replace(r, file=f"{Path(str(result.study.get('source') or 'study')).stem}_slice{number:04d}")
    target = out_dir / overlay_filename(named, used)
    write_bytes(target, png_bytes(overlay_for(r, args.alpha, args.colormap)))
    return str(target)


def _print_plain(r: Any, predictor: Any) -> None:
    from core.classes import display_name
    from core.inference.predict import format_probability
    from core.reports.conformal import describe_set

    s = r.study
    if r.error and r.label is None:
        print(f"{s.get('source', '')}: error: {r.error}")
        for text in r.warnings:
            print(f"  warning: {text}")
        return
    print(f"{s['source']}: {s['kind']} {s['series']}, {s['n_slices']} slices ({s['orientation']}, ordered by "
          f"{s['order']})")
    evidence = ", ".join(f"{display_name(c)} {format_probability(p)}" for c, p in r.probabilities.items())
    print(f"  study answer: {display_name(r.label)}  [{evidence}]  rule: {s.get('rule_title', r.rule)}")
    if r.coverage is not None:
        print(f"  {describe_set(r.prediction_set, r.coverage, len(r.probabilities))}")
    print(f"  used {len(r.used)} of {s['n_slices']} slices; strongest: "
          + ", ".join(str(n) for n in r.driving[:4]))
    for text in r.warnings:
        print(f"  warning: {text}")
    for i, sl in enumerate(r.slices, 1):
        what = f"{display_name(sl.label)} {format_probability(sl.confidence)}" if sl.label else sl.error
        print(f"    slice {i:>4} {sl.file}: {what}")

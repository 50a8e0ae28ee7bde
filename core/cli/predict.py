"""``python -m core predict``: classify files with a registered model, as the Predict page does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.atomic import check_writable
from core.cli.conformal import add_coverage_option, parse_coverage
from core.cli.study import add_study_options, is_study, run_studies
from core.data.imageio import MAX_FILE_BYTES
from core.errors import WorkbenchError
from core.inference.conformal import with_refit_advice
from core.inference.gradcam import CAM_METHODS, DEFAULT_CAM_METHOD
from core.inference.notices import MIN_IMAGES, SITE_SHIFT
from core.inference.overlay import COLORMAPS
from core.paths import check_path_text, models_dir
from core.reports.disclaimer import DISCLAIMER

STUDY_AMONG_IMAGES = ("this is a study (a folder, zip, NIfTI volume or multi-frame DICOM); give studies in a call of "
                      "their own to get one answer per study")


def register(sub: Any) -> None:
    """Add the ``predict`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("predict", help="classify image files (JPEG/PNG/BMP/TIFF/DICOM), or whole studies (a folder "
                       "or zip of a DICOM series, a multi-frame DICOM, a NIfTI volume), with a registered model")
    p.add_argument("files", nargs="+", metavar="FILE_OR_STUDY")
    p.add_argument("--model", default=None, help="run id or run folder (default: the best registered run)")
    p.add_argument("--gradcam", metavar="OUT_DIR", default=None, help="write a heatmap overlay PNG per file here")
    p.add_argument("--method", default=DEFAULT_CAM_METHOD, choices=list(CAM_METHODS))
    p.add_argument("--target-class", default=None, help="class the heatmap explains (default: the predicted one)")
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity in the overlay (0..1)")
    p.add_argument("--colormap", default="jet", choices=list(COLORMAPS))
    add_coverage_option(p)
    p.add_argument("--no-site-check", action="store_true",
                   help=f"skip the site check that runs on {MIN_IMAGES} or more images (does the batch look like "
                        "the training images? if not, every slice gets the warning 'site_shift')")
    add_study_options(p)
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (a list, one object per file; for studies one object per study)")
    p.set_defaults(func=run)


def _read(path: str) -> bytes | str:
    """The file's bytes, or the reason it cannot be read."""
    from core.data.safeio import read_regular_file  # regular files only (a FIFO would hang), capped

    try:
        return read_regular_file(path, path, MAX_FILE_BYTES)
    except WorkbenchError as exc:
        return exc.reason
    except ValueError:  # os.stat refuses a NUL character
        return "the path contains a NUL character, which no file name can hold"


def _write_overlay(out_dir: Path, result: Any, alpha: float, colormap: str, used: set[str]) -> str:
    from core.atomic import write_bytes
    from core.reports.case_report import overlay_filename, overlay_for, png_bytes

    target = out_dir / overlay_filename(result, used)
    write_bytes(target, png_bytes(overlay_for(result, alpha, colormap)))  # a reader never sees half a PNG
    return str(target)


def _overlay_folder(path: str) -> Path:
    """The --gradcam folder, created if needed; refused (before any work) when it cannot be one."""
    check_path_text(path, "--gradcam")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise WorkbenchError("this is a file, not a folder; give a folder for the overlay images", f"--gradcam {path}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"the folder cannot be created ({exc.strerror or exc})", f"--gradcam {path}") from None
    check_writable(folder, f"--gradcam {path}")  # before the model loads and the images are analysed
    return folder


def _batch_check(run_: Any, results: list) -> str | None:
    """With MIN_IMAGES or more analysed images, the site check of the batch, carried onto every slice
    (``mark_batch``); its verdict in words, or None when the batch is too small to judge.

    It reads the images and network features the prediction already has (``check_results``). A check that
    cannot run (no training sample kept with the model, no training images here) costs the predictions
    nothing: it is said as a warning on stderr and no slice is marked.
    """
    from core.evaluation.site_check import check_results, mark_batch

    if sum(r.error is None for r in results) < MIN_IMAGES:
        return None
    try:
        check = check_results(run_, results)
    except WorkbenchError as exc:
        print(f"warning: site check not run: {exc}", file=sys.stderr)
        return None
    mark_batch(results, check)
    return check.advice


def run(args: argparse.Namespace) -> int:
    """Predict every file; exit 0 when all were analysed, 2 when any input was rejected."""
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import PredictionResult, format_probability, predict_files
    from core.reports.conformal import GUARANTEE_NOTE, describe_set

    if not 0.0 <= args.alpha <= 1.0:  # NaN fails both comparisons and is refused too
        raise WorkbenchError(f"must be between 0 and 1, got {args.alpha}", "--alpha")
    coverage = parse_coverage(args.coverage)
    out_dir = _overlay_folder(args.gradcam) if args.gradcam else None
    if args.model is None and not models_dir().is_dir():
        raise WorkbenchError("no trained model yet: the model registry folder does not exist (check "
                             "WORKBENCH_MODELS_DIR if models were trained)", str(models_dir()))
    studies = [is_study(f) for f in args.files]
    # The files first: nothing is loaded for files that are not there.
    raw = [(f, STUDY_AMONG_IMAGES if study else _read(f)) for f, study in zip(args.files, studies)]
    readable = [(f, data) for f, data in raw if isinstance(data, bytes)]
    if not all(studies) and not readable:
        for f, reason in raw:
            print(f"error: {f}: {reason}", file=sys.stderr)
        return 2
    predictor = load_predictor(args.model)  # WorkbenchError -> "error: ..." and exit 2 (core.cli)
    for text in predictor.disabled:  # a damaged side file: that feature is off, the prediction still runs
        print(f"warning: {text}", file=sys.stderr)
    if all(studies):
        return run_studies(args, predictor, coverage, out_dir)
    predicted = iter(predict_files(predictor, readable, gradcam=out_dir is not None, method=args.method,
                                   target_class=args.target_class, coverage=coverage))
    results = [next(predicted) if isinstance(data, bytes) else PredictionResult(file=f, error=data)
               for f, data in raw]
    verdict = None if args.no_site_check else _batch_check(predictor.run, results)
    rows, used = [], set()
    for r in results:
        row = r.to_dict()
        row["overlay"] = None
        if out_dir is not None and r.heatmap is not None:
            try:
                row["overlay"] = _write_overlay(out_dir, r, args.alpha, args.colormap, used)
            except OSError as exc:  # the folder turned read-only (or full) during the run: keep the result
                r.warnings.append(f"The heat-map overlay was not stored ({exc.strerror or type(exc).__name__}).")
                row["warnings"] = list(r.warnings)
        rows.append(row)
    run_ = predictor.run
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        if verdict:  # stdout stays one JSON document; the batch's verdict is in each row's flags
            print(f"site check: {verdict}", file=sys.stderr)
    else:
        print(f"model {run_.run_id} ({run_.card.title})" + (" [SYNTHETIC training data]" if run_.synthetic else ""))
        print(DISCLAIMER)
        if verdict:
            print(f"site check: {verdict}")
        print(GUARANTEE_NOTE if predictor.conformal is not None else
              f"no prediction sets: {with_refit_advice(predictor.conformal_problem, run_.run_id, 'cli')}")
        for row in rows:
            if row["error"]:
                print(f"{row['file']}: error: {row['error']}")
                continue
            probs = ", ".join(f"{c} {format_probability(p)}" for c, p in row["probabilities"].items())
            print(f"{row['file']}: {row['label']} {format_probability(row['confidence'])}  [{probs}]")
            sets = describe_set(row["prediction_set"], coverage, len(row["probabilities"]), row["set_problem"],
                                SITE_SHIFT in row["flags"])
            print(f"  {sets}")
            if row["flags"]:
                print(f"  flags: {', '.join(row['flags'])}")
            for text in row["warnings"]:
                print(f"  warning: {text}")
            for text in row["notes"]:
                print(f"  note: {text}")
            if row["overlay"]:
                print(f"  overlay: {row['overlay']}")
    return 2 if any(r.error for r in results) else 0

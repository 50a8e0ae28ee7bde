"""``python -m core export``: a registered model as a verified bundle (zip) in one format.

Exit status 0 on success, 2 on bad input or a failed verification (the WorkbenchError is
printed by :func:`core.cli.main`); no file is written then.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.export.formats import EXPORT_FORMATS


def register(sub: Any) -> None:
    """Add the ``export`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("export", help="export a registered model (Keras, SavedModel, TFLite, ONNX) as a verified zip")
    p.add_argument("--model", required=True, help="run id or run folder inside the model registry")
    p.add_argument("--format", dest="fmt", required=True, choices=list(EXPORT_FORMATS),
                   help="keras: .keras file; savedmodel: TensorFlow SavedModel; tflite: LiteRT; onnx: ONNX")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="the zip to write (ending in .zip), or an existing folder (named <run>-<format>.zip)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at --out")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.export.bundle import bundle_target
    from core.export.ensemble import export_any
    from core.models.runs import resolve_run

    model_run = resolve_run(args.model)
    bundle_target(args.out, model_run, args.fmt, args.overwrite)  # a bad --out fails before the model loads
    result = export_any(model_run, args.fmt, args.out, overwrite=args.overwrite)  # an ensemble: one Keras file
    summary = {"path": str(result.path), "format": result.format, "bytes": result.path.stat().st_size,
               "verified_on": result.image_source, "max_abs_diff": result.max_abs_diff,
               "seconds": round(result.seconds, 2)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Exported {model_run.run_id} as {EXPORT_FORMATS[args.fmt].title}: {result.path} "
          f"({summary['bytes'] / 1e6:.1f} MB, {result.seconds:.1f} s)")
    print(f"Verified on {result.image_source}: probabilities within {result.max_abs_diff:.1e} of the Keras model")
    return 0

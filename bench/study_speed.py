"""Time and memory of a whole study: 512×512 DICOM series and NIfTI volumes to the study answer.

Run: ``python -m bench.study_speed [--slices 150] [--repeats 3]``

- Time: a folder of 150 uncompressed 512×512 DICOM files (phantom slices) read, ordered, decoded,
  head-found, prepared, scored by the default model and aggregated, with heat maps for the strip's
  slices only. The model is loaded and traced once before timing (as the app's cached predictor is).
- Memory: Python-heap peak (tracemalloc; NumPy's buffers are counted) of the same path on .nii
  volumes of 50 and 150 slices; the growth per slice extrapolates to 600 slices. TensorFlow's own
  allocations are not in tracemalloc: they depend on the batch (32 slices of 128 px), not the study.
Writes bench/study_speed.json and section 12 of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from bench.sections import write_section

BEGIN, END = "<!-- study-speed:begin -->", "<!-- study-speed:end -->"
HERE = Path(__file__).resolve().parent
SIDE = 512
CPU: list[float] = []  # CPU seconds (all threads) of each answer(): the work itself, apart from waiting for cores


def volume(n: int, seed: int = 0) -> np.ndarray:
    import sys

    sys.path.insert(0, str(HERE.parent / "tests"))
    from study_builders import phantom_volume

    small = phantom_volume(n, label="glioma", size=128, seed=seed, blank_edges=2)
    return np.stack([cv2.resize(s, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) for s in small])


def write_series(vol: np.ndarray, folder: Path) -> None:
    import sys

    sys.path.insert(0, str(HERE.parent / "tests"))
    from study_builders import series_files

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in series_files(vol):
        (folder / name).write_bytes(data)


def answer(predictor, path: Path) -> tuple[float, object]:
    from core.data.study import open_study
    from core.inference.study import predict_study

    t0, c0 = time.perf_counter(), time.process_time()
    result = predict_study(predictor, open_study(path).pick(), source=path.name)
    CPU.append(time.process_time() - c0)
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import nibabel as nib

    from core.inference.predict import Predictor
    from core.models.runs import resolve_run

    run = resolve_run(str(HERE.parent / "models" / "20261201-135406-custom_cnn-a305"), root=HERE.parent / "models")
    predictor = Predictor(run)
    out: dict = {"slices": args.slices, "side": SIDE, "cpus": os.cpu_count(),
                 "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        vol = volume(args.slices)
        write_series(vol, tmp_path / "series")
        answer(predictor, tmp_path / "series")  # warm-up: traces the model and the CAM graph once
        times = []
        CPU.clear()
        for _ in range(args.repeats):
            seconds, result = answer(predictor, tmp_path / "series")
            times.append(seconds)
        out["dicom_seconds"] = times
        out["dicom_cpu_seconds"] = list(CPU)
        out["load_average_1min"] = os.getloadavg()[0]
        out["dicom_median_s"] = statistics.median(times)
        out["label"], out["used"] = result.label, len(result.used)
        peaks = {}
        for n in (50, args.slices):
            path = tmp_path / f"v{n}.nii"
            data = np.transpose(volume(n)[:, ::-1, ::-1], (2, 1, 0)).astype(np.int16)
            nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 1.0, 1.0])), str(path))
            del data
            tracemalloc.start()
            seconds, _ = answer(predictor, path)
            peaks[n] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            out[f"nifti_{n}_seconds"] = seconds
        per_slice = (peaks[args.slices] - peaks[50]) / (args.slices - 50)
        out["heap_peak_mb"] = {str(n): p / 1e6 for n, p in peaks.items()}
        out["heap_per_slice_kb"] = per_slice / 1e3
        out["heap_600_slices_mb_extrapolated"] = (peaks[args.slices] + per_slice * (600 - args.slices)) / 1e6
        out["whole_volume_600_int16_mb"] = SIDE * SIDE * 600 * 2 / 1e6
    (HERE / "study_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    write_section(render(out), HERE / "RESULTS.md", BEGIN, END)
    print(render(out))
    return 0


def render(o: dict) -> str:
    peaks = ", ".join(f"{n} slices {mb:.0f} MB" for n, mb in o["heap_peak_mb"].items())
    return "\n".join([
        BEGIN, "## 12. Whole studies: time and memory", "",
        f"`python -m bench.study_speed` on {o['affinity']} CPU cores, default model (128 px), heat maps for the "
        "strip's 4 slices only, model loaded and traced beforehand.", "",
        f"- {o['slices']}-slice {o['side']}×{o['side']} DICOM series (folder, uncompressed) to the study answer: "
        f"median **{o['dicom_median_s']:.1f} s** of {len(o['dicom_seconds'])} runs "
        f"({', '.join(f'{t:.1f}' for t in o['dicom_seconds'])} s); answer {o['label']}, {o['used']} slices used. "
        f"CPU time per run {', '.join(f'{t:.1f}' for t in o['dicom_cpu_seconds'])} s (all threads); the "
        f"machine's 1-minute load average was {o['load_average_1min']:.1f} on its cores (shared), so wall time "
        "includes waiting for a core.",
        f"- Python-heap peak (tracemalloc) reading .nii volumes: {peaks}; {o['heap_per_slice_kb']:.0f} kB more per "
        f"slice, so about **{o['heap_600_slices_mb_extrapolated']:.0f} MB** for 600 slices, against "
        f"{o['whole_volume_600_int16_mb']:.0f} MB for the 512×512×600 int16 volume held whole "
        "(slices are streamed; each keeps a 128-px model input and a 256-px display copy).",
        END])


if __name__ == "__main__":
    raise SystemExit(main())

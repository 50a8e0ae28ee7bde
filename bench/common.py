"""What every benchmark shares: where the repository and the data are, medians, and the machine.

Kept apart from :mod:`bench.run` (the suite) so that single benchmarks, such as
:mod:`bench.time_to_accuracy`, do not import the suite that imports them.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri"


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": round(mem_gb, 1), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}

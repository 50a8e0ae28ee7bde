"""What this machine can do fast: the CPU's bfloat16 instructions and any GPU.

The Train page offers the bfloat16 precision only where it pays: a CPU with AVX512-BF16 or
AMX runs bfloat16 matrix products natively (oneDNN uses them), a GPU has its own units.
Elsewhere bfloat16 is emulated and slower than float32, so the choice is not shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of the native bfloat16 instructions


@dataclass(frozen=True)
class Hardware:
    """The fast-precision features found on this machine."""

    cpu_bf16_flags: tuple[str, ...]  # which of BF16_FLAGS the CPU reports
    gpus: int  # GPUs TensorFlow can see (0 when not asked or none)

    @property
    def bf16_fast(self) -> bool:
        """True when bfloat16 training is native here (and so worth offering)."""
        return bool(self.cpu_bf16_flags) or self.gpus > 0

    def describe(self) -> str:
        """One line for people: what the machine supports."""
        parts = []
        if self.cpu_bf16_flags:
            parts.append("CPU with " + " and ".join(f.upper().replace("_", "-") for f in self.cpu_bf16_flags))
        if self.gpus:
            parts.append(f"{self.gpus} GPU" + ("s" if self.gpus > 1 else ""))
        if not parts:
            return "no native bfloat16 on this machine (no AVX512-BF16, AMX or GPU): float32 only"
        return "bfloat16 runs natively here: " + ", ".join(parts)


def cpu_flags(cpuinfo_text: str) -> set[str]:
    """Every flag named on the ``flags`` lines of /proc/cpuinfo text (x86; ARM calls them ``Features``)."""
    flags: set[str] = set()
    for line in cpuinfo_text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def detect_hardware(cpuinfo_text: str | None = None, gpus: int | None = None) -> Hardware:
    """The machine's fast-precision features.

    Args:
        cpuinfo_text: /proc/cpuinfo's text; read from the file when None (empty where it is absent).
        gpus: the GPU count; when None, asked of TensorFlow if it is already loaded, else of the
            NVIDIA driver's /proc folder (the Train page calls this before TensorFlow has loaded).
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo_text = ""
    flags = cpu_flags(cpuinfo_text)
    if gpus is None:
        gpus = _visible_gpus()
    return Hardware(tuple(f for f in BF16_FLAGS if f in flags), gpus)


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the NVIDIA driver sees


def _visible_gpus() -> int:
    import sys

    if "tensorflow" not in sys.modules:  # don't load TensorFlow just to look
        try:
            return sum(1 for _ in NVIDIA_GPUS.iterdir())
        except OSError:
            return 0
    try:
        return len(sys.modules["tensorflow"].config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU, not a failed page
        return 0

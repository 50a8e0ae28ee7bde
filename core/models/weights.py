"""ImageNet weight files: where Keras caches them, whether they are there, and how to add one.

Keras downloads ``include_top=False`` weights on first use into ``$KERAS_HOME/models``
(default ``~/.keras/models``). Hospitals are often air-gapped, so the Train page shows the
status per backbone and lets a user place the file themselves. A user-supplied file is
copied *into that cache* under Keras's own file name (after checking Keras's hash), and the
model is then built with ``weights="imagenet"``: for EfficientNet this matters, because only
that path also restores the built-in input normalisation.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.atomic import write_bytes
from core.errors import WorkbenchError
from core.models.architectures import get_arch

_REACH_CACHE: dict[str, tuple[float, bool]] = {}


@dataclass(frozen=True)
class WeightStatus:
    state: str  # cached | damaged | will download | unreachable | not needed
    message: str
    path: Path | None = None


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/models`` (Keras's own rule), falling back to ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


#: Where keras.applications downloads every backbone's weights from (a test checks Keras agrees).
#: A constant, not read from Keras: asking would import TensorFlow just to paint a status line.
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _download_host() -> str:
    return urlparse(KERAS_WEIGHTS_URL).hostname or ""


def download_reachable(timeout: float = 1.5) -> bool:
    """Whether the Keras weight server answers a TCP connect (cached for a minute)."""
    host = _download_host()
    now = time.time()
    cached = _REACH_CACHE.get(host)
    if cached and now - cached[0] < 60:
        return cached[1]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _REACH_CACHE[host] = (now, ok)
    return ok


_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _file_md5(path: Path) -> str:
    """md5 of a weights file, remembered per (path, size, mtime): the Train page asks on every rerun."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _MD5_CACHE:
        digest = hashlib.md5()  # noqa: S324 - Keras publishes md5 for these files
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _MD5_CACHE[key] = digest.hexdigest()
    return _MD5_CACHE[key]


def weight_status(arch: str, check_network: bool = True) -> WeightStatus:
    """Where the ImageNet weights of ``arch`` stand on this machine."""
    spec = get_arch(arch)
    if not spec.transfer or not spec.weights_file:
        return WeightStatus("not needed", "trained from scratch; no download needed")
    path = keras_cache_dir() / spec.weights_file
    if path.is_file():
        if spec.weights_md5 and _file_md5(path) != spec.weights_md5:
            # Keras would try to download it again (and fail offline), so say so now.
            return WeightStatus(
                "damaged", f"the file in the Keras cache ({path}) does not match Keras's checksum (an "
                f"interrupted download?); delete it and place or upload a fresh copy of '{spec.weights_file}'",
                path)
        return WeightStatus("cached", f"found in the Keras cache ({path})", path)
    if check_network and download_reachable():
        return WeightStatus("will download", f"about {spec.weights_mb:.0f} MB will be downloaded on first use", path)
    return WeightStatus(
        "unreachable",
        f"offline: the weights ({spec.weights_mb:.0f} MB) cannot be downloaded. Copy '{spec.weights_file}' "
        f"into {path.parent} (or upload it on the Train page), or train from random initialisation.",
        path,
    )


def install_weights(arch: str, data: bytes, filename: str = "upload.h5") -> Path:
    """Check an uploaded weights file against Keras's published hash and place it in the cache.

    Raises:
        WorkbenchError: not a weights file for this architecture.
    """
    spec = get_arch(arch)
    if not spec.transfer or not spec.weights_file:
        raise WorkbenchError(f"{spec.title} does not use pretrained weights", filename)
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise WorkbenchError("not an HDF5 (.h5) weights file", filename)
    if spec.weights_md5:
        digest = hashlib.md5(data).hexdigest()  # noqa: S324 - Keras publishes md5 for these files
        if digest != spec.weights_md5:
            raise WorkbenchError(
                f"this is not the expected '{spec.weights_file}' (its checksum differs); download that exact "
                "file from the Keras applications page on a connected machine", filename)
    target = keras_cache_dir() / spec.weights_file
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(target, data)
    return target

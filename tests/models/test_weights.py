"""ImageNet weight files: status per backbone, offline instructions, and checked installation.

KERAS_HOME points at a fresh folder in every test; nothing touches the network (the
reachability probe is monkeypatched) and nothing imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

import core.models.weights as weights
from core.errors import WorkbenchError
from core.models.architectures import ARCHITECTURES

TRANSFER = [key for key, spec in ARCHITECTURES.items() if spec.transfer]
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
REAL_DOWNLOAD_REACHABLE = weights.download_reachable


@pytest.fixture(autouse=True)
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(weights, "download_reachable", lambda timeout=1.5: pytest.fail("network probed"))
    return tmp_path / "keras"


def online(monkeypatch: pytest.MonkeyPatch, reachable: bool) -> None:
    monkeypatch.setattr(weights, "download_reachable", lambda timeout=1.5: reachable)


def test_cache_dir_follows_keras_home(keras_home):
    assert weights.keras_cache_dir() == keras_home / "models"


@pytest.mark.parametrize("arch", TRANSFER)
def test_cached_when_the_file_in_the_keras_cache_matches_its_checksum(arch, keras_home, extend_registry):
    data = HDF5_MAGIC + arch.encode()
    spec = dataclasses.replace(ARCHITECTURES[arch], weights_md5=hashlib.md5(data).hexdigest())
    extend_registry(ARCHITECTURES, spec)
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / spec.weights_file).write_bytes(data)
    status = weights.weight_status(arch)
    assert status.state == "cached" and status.path == keras_home / "models" / spec.weights_file


@pytest.mark.parametrize("arch", TRANSFER)
def test_a_damaged_cached_file_is_reported_not_trusted(arch, keras_home):
    spec = ARCHITECTURES[arch]  # the real checksum: a truncated download cannot match it
    (keras_home / "models").mkdir(parents=True)
    path = keras_home / "models" / spec.weights_file
    path.write_bytes(HDF5_MAGIC + b"cut short")
    status = weights.weight_status(arch)
    assert status.state == "damaged" and "delete it" in status.message and spec.weights_file in status.message


@pytest.mark.parametrize("arch", TRANSFER)
def test_unreachable_offline_says_where_to_put_the_file(arch, keras_home, monkeypatch):
    online(monkeypatch, False)
    spec = ARCHITECTURES[arch]
    status = weights.weight_status(arch)
    assert status.state == "unreachable"
    assert spec.weights_file in status.message and str(keras_home / "models") in status.message
    assert status.path == keras_home / "models" / spec.weights_file


def test_will_download_when_online_shows_the_size(monkeypatch):
    online(monkeypatch, True)
    status = weights.weight_status("resnet50")
    assert status.state == "will download" and "95 MB" in status.message


def test_status_without_network_check_never_probes():
    assert weights.weight_status("efficientnetb0", check_network=False).state == "unreachable"


@pytest.mark.parametrize("arch", [k for k, s in ARCHITECTURES.items() if not s.transfer])
def test_models_trained_from_scratch_need_no_weights(arch):
    assert weights.weight_status(arch).state == "not needed"
    with pytest.raises(WorkbenchError, match="does not use pretrained weights"):
        weights.install_weights(arch, HDF5_MAGIC)


# --- installing an uploaded file -------------------------------------------------------------------

def test_install_rejects_a_file_that_is_not_hdf5(keras_home):
    with pytest.raises(WorkbenchError, match="not an HDF5"):
        weights.install_weights("resnet50", b"PK\x03\x04 a zip, not weights", "resnet.h5")
    assert not (keras_home / "models").exists() or not any((keras_home / "models").iterdir())


def test_install_rejects_a_wrong_checksum(keras_home):
    with pytest.raises(WorkbenchError, match="checksum differs") as err:
        weights.install_weights("resnet50", HDF5_MAGIC + b"some other network", "resnet.h5")
    assert err.value.source == "resnet.h5"
    assert not (keras_home / "models").exists() or not any((keras_home / "models").iterdir())


def test_install_places_a_matching_file_under_keras_own_name(keras_home, extend_registry):
    data = HDF5_MAGIC + b"pretend these are the weights"
    spec = dataclasses.replace(ARCHITECTURES["mobilenetv3small"], weights_md5=hashlib.md5(data).hexdigest())
    extend_registry(ARCHITECTURES, spec)
    path = weights.install_weights(spec.key, data, "my download (1).h5")
    assert path == keras_home / "models" / spec.weights_file and path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == [spec.weights_file]  # no temporary file left
    assert weights.weight_status(spec.key).state == "cached"


# --- agreement with Keras ------------------------------------------------------------------------------

def _keras_application_sources() -> str:
    """The text of keras.applications' modules, read without importing TensorFlow."""
    root = Path(importlib.util.find_spec("keras").submodule_search_locations[0]) / "src" / "applications"
    return "\n".join(p.read_text() for p in sorted(root.glob("*.py")))


@pytest.mark.parametrize("arch", TRANSFER)
def test_file_names_and_checksums_are_the_ones_keras_uses(arch):
    spec = ARCHITECTURES[arch]
    source = _keras_application_sources()
    assert spec.weights_md5 in source  # Keras compares the cached file against this hash
    assert spec.weights_file.endswith(("_notop.h5", "_no_top_v2.h5")) and spec.weights_mb > 0


def test_download_host_is_the_one_keras_downloads_from():
    hosts = {urlparse(url).hostname for url in re.findall(r'"(https://[^"]+)"', _keras_application_sources())
             if "keras-applications" in url}
    assert hosts == {urlparse(weights.KERAS_WEIGHTS_URL).hostname}


def test_reachability_is_probed_once_a_minute(monkeypatch):
    monkeypatch.setattr(weights, "download_reachable", REAL_DOWNLOAD_REACHABLE)  # with a fake socket
    calls = []

    class Conn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout):
        calls.append(address)
        return Conn()

    monkeypatch.setattr(weights.socket, "create_connection", connect)
    monkeypatch.setattr(weights, "_REACH_CACHE", {})
    assert weights.download_reachable() and weights.download_reachable()
    assert calls == [(urlparse(weights.KERAS_WEIGHTS_URL).hostname, 443)]

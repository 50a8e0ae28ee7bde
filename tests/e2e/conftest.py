"""Fixtures for the browser tests: one real `streamlit run Home.py` server and one headless Chromium.

The server runs on a free local port while this package's tests run (package scope, so it does
not sit on TensorFlow's memory through the rest of the suite), with its own empty model registry
and cache and without WORKBENCH_DATA_DIR, so it opens the synthetic demo dataset. Chromium is
Debian's (/usr/bin/chromium), driven by Playwright; the tests are skipped when it is absent.
Screenshots go to test-artifacts/e2e/, next to the server's log.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STARTUP_TIMEOUT_S = 120  # the first request imports pandas/altair; the machine may be busy
ACTION_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Server:
    """The running app: its address and the folders it writes to."""

    url: str
    models: Path
    cache: Path
    log: Path
    data: Path  # the only data root: holds a tiny flat dataset, "tiny-folder" (open it from the Explorer)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _tiny_folder(root: Path) -> None:
    """A flat two-class dataset of smooth random 64-px PNGs: scans in a second."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    for label in ("glioma", "notumor"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            small = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(root / label / f"{label}_{i}.png")


@pytest.fixture(scope="package")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="package")
def server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`streamlit run Home.py` on a free port; terminated (only this process) after the last browser test."""
    base = tmp_path_factory.mktemp("e2e_server")
    models, cache, data = base / "models", base / "cache", base / "data"
    _tiny_folder(data / "tiny-folder")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.iterdir():  # screenshots of an earlier session would mislead
        if old.is_file():
            old.unlink()
    log = ARTIFACTS / "streamlit.log"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_DATA_DIR", "WORKBENCH_DATA_ROOTS")}
    env.update(WORKBENCH_MODELS_DIR=str(models), WORKBENCH_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", WORKBENCH_DATA_ROOTS=str(data))
    cmd = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # no reloads if someone edits a file meanwhile
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with status {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit was not healthy within {STARTUP_TIMEOUT_S} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield Server(url, models, cache, log, data)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="package")
def browser(chromium_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_REPORT] = report


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
def page(browser, server: Server, request: pytest.FixtureRequest):
    """A fresh browser tab (own Streamlit session) with generous timeouts; a failure leaves a screenshot."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
            try:
                tab.screenshot(path=str(ARTIFACTS / f"FAILED-{name}.png"), full_page=True)
            except Exception:  # noqa: BLE001 - a dead page must not hide the test's own error
                pass
        context.close()

"""Issue 23, defect 1 in a real browser: a hostile dataset name in a shared link and a hostile zip
name draw no link, no image and no banner, and the browser makes no request that leaves the
server (every request of the session is recorded and its host checked).
"""

from __future__ import annotations

import io
import zipfile
from urllib.parse import quote, urlparse

import pytest

from .conftest import Server
from .test_browser import assert_no_exception, key, nav, shot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHISHING = "[Session expired - sign in again](https://evil.example/login)"
PAYLOAD = f"{PHISHING} :red-background[Account locked] ![x](https://evil.example/a.png)"
#: A file name cannot hold "/", so the zip's name carries its link and image without one.
ZIP_NAME = "[Sign in again](http:evil.example) :red-background[Account locked] ![x](http:evil.example?a.png).zip"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _zip() -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(buf, "w") as zf:
        for label in ("glioma", "notumor"):
            for i in range(3):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(png, format="PNG")
                zf.writestr(f"{label}/{i}.png", png.getvalue())
    return buf.getvalue()


def _no_live_markdown(page) -> None:
    main = page.locator('[data-testid="stMain"]')
    assert main.locator('a[href*="evil"]').count() == 0, "a hostile name became a link"
    assert main.locator('img[src*="evil"]').count() == 0, "a hostile name became an image"
    assert main.locator('[style*="background"]', has_text="Account locked").count() == 0, "a banner was drawn"


def test_hostile_names_render_literally_and_nothing_leaves_localhost(page, server: Server) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    # A shared link whose ?dataset= names a hostile folder under the data root.
    hostile_path = f"{server.data}/{PAYLOAD}"
    page.goto(f"{server.url}/Dataset_Explorer?dataset={quote(hostile_path)}")
    page.locator("h1", has_text="Dataset Explorer").first.wait_for(timeout=120_000)
    wait_idle(page)
    assert_no_exception(page)
    assert page.get_by_text("[Session expired - sign in again](", exact=False).count() >= 1, "shown as plain text"
    _no_live_markdown(page)
    shot(page, "hostile-link")

    # A zip upload with a hostile name: the active dataset's name on every page.
    page.locator(key("explorer_source")).get_by_text("Upload a .zip").click()
    wait_idle(page)
    page.locator(f'{key("explorer_zip")} input[type="file"]').set_input_files(
        [{"name": ZIP_NAME, "mimeType": "application/zip", "buffer": _zip()}])
    wait_idle(page)
    button = page.locator(f'{key("explorer_open_zip")} button')
    button.wait_for(timeout=60_000)
    button.click()
    # The name as plain text (not "sign in again", which the shared link's warning above already shows)
    page.get_by_text("[Sign in again](http:evil.example)", exact=False).first.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    _no_live_markdown(page)
    assert page.get_by_text("[Sign in again](http:evil.example)", exact=False).count() >= 1, "plain text"
    for link, title in (("Home", "MRI Workbench"), ("Augmentation Preview", "Augmentation Preview"),
                        ("Train", "Train"), ("Evaluate", "Evaluate"), ("Predict & Explain", "Predict & Explain")):
        nav(page, link, title)  # the same session: the zip stays the active dataset
        assert_no_exception(page)
        _no_live_markdown(page)
    shot(page, "hostile-zip")

    outside = sorted({url for url in requests
                      if urlparse(url).scheme not in ("data", "blob") and urlparse(url).hostname not in LOCAL_HOSTS})
    assert requests and not outside, outside

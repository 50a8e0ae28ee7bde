"""Screenshots of each persona's main screens for the README (headless Chromium via Playwright).

    streamlit run Home.py --server.headless true --server.port 8597 &   # with the data and model to show
    python docs/screenshots/take.py http://127.0.0.1:8597 IMAGE   # IMAGE: a held-out slice to predict

Writes PNGs next to this file. Each page is captured once its run has finished (no greyed elements).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent
IDLE_JS = """() => { const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-stale="true"]') && !document.querySelector('[data-testid="stStatusWidget"]'); }"""


def idle(page, ms: int = 300_000) -> None:
    page.wait_for_timeout(600)
    page.wait_for_function(IDLE_JS, timeout=ms)
    page.wait_for_timeout(1500)


def save(page, name: str, full: bool = False) -> None:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(path, path.stat().st_size // 1024, "KB")


def main(url: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(300_000)
        for path, name in (("", "home"), ("Train", "trainer-train"),
                           ("Augmentation_Preview", "instructor-augmentation")):
            page.goto(f"{url}/{path}")
            idle(page)
            save(page, name)
        page.goto(f"{url}/Dataset_Explorer")
        idle(page)
        page.get_by_text("Data quality", exact=True).click()
        idle(page)
        page.get_by_text("Train/test leakage").first.scroll_into_view_if_needed()
        save(page, "instructor-leakage")
        page.goto(f"{url}/Evaluate")
        idle(page)
        start = page.locator(".st-key-evaluate_start button")
        if page.get_by_text("Not evaluated on this set yet").count():
            start.click()
            page.get_by_role("heading", name="Confusion matrix").wait_for(timeout=600_000)
            idle(page)
        page.get_by_role("heading", name="Confusion matrix").scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        save(page, "trainer-evaluate")
        page.goto(f"{url}/Predict_and_Explain")
        idle(page)
        sample = Path(sys.argv[2])  # a held-out test image of the model shown
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(sample))
        idle(page)
        page.wait_for_timeout(3000)
        save(page, "clinician-predict")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1])

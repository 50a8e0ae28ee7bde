"""The workbench proven in a real browser: `streamlit run Home.py` driven by headless Chromium.

The scenarios run in file order against one server on the synthetic demo dataset (the model
trained in the Train scenario is used by Evaluate and Predict). Each saves a screenshot under
test-artifacts/e2e/. Streamlit marks widgets with data-testid attributes and keyed widgets with
a ``st-key-<key>`` class, which is how elements are found here.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from .conftest import ARTIFACTS, PROJECT_ROOT, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = {  # URL path -> page title (Home.py's st.navigation; paths come from the file names)
    "": "MRI Workbench",
    "Dataset_Explorer": "Dataset Explorer",
    "Augmentation_Preview": "Augmentation Preview",
    "Train": "Train",
    "Evaluate": "Evaluate",
    "Predict_and_Explain": "Predict & Explain",
}
TRAIN_TIMEOUT_MS = 240_000
# Idle: the script has finished, no element is stale (greyed while a rerun replaces it), and the
# "Running…" status widget is gone.
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelector('[data-stale="true"]') === null
        && document.querySelector('[data-testid="stStatusWidget"]') === null;
}"""
PROGRESS_JS = """() => [...document.querySelectorAll('[data-testid="stProgress"] [role="progressbar"]')]
    .map(e => Number(e.getAttribute('aria-valuenow')))"""


# --- helpers --------------------------------------------------------------------------------------


def wait_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished the current run and drawn its result."""
    page.wait_for_timeout(400)  # a rerun triggered just now may not have started yet
    page.wait_for_function(IDLE_JS, timeout=timeout_ms)
    page.wait_for_timeout(300)  # images and charts mount just after the run ends


def open_page(page, server: Server, path: str, timeout_ms: int = 120_000) -> None:
    page.goto(f"{server.url}/{path}")
    page.locator("h1", has_text=PAGES[path]).first.wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def assert_no_exception(page) -> None:
    """Streamlit draws an uncaught exception as an stException box with the traceback."""
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in text, text[-2000:]


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def key(name: str) -> str:
    """CSS selector of the element container of the widget with this Streamlit key."""
    return f".st-key-{name}"


def set_number(page, widget_key: str, value: float) -> None:
    box = page.locator(f"{key(widget_key)} input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)
    assert float(box.input_value()) == float(value)


def progress_values(page) -> list[float]:
    return page.evaluate(PROGRESS_JS)


def progress_step(page) -> int | None:
    """Batches done so far, read from the progress bar's label (None before the first batch)."""
    labels = page.locator('[data-testid="stProgress"]').all_inner_texts()
    match = re.search(r"epoch (\d+)/\d+ · batch (\d+)/(\d+)", " ".join(labels))
    return (int(match[1]) - 1) * int(match[3]) + int(match[2]) if match else None


def image_sources(page, scope: str = "") -> list[str]:
    return page.eval_on_selector_all(f'{scope} [data-testid="stImage"] img', "els => els.map(e => e.src)")


def nav(page, link: str, title: str) -> None:
    """Go to a page the way a user does: its sidebar link (same browser session)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
    page.locator("h1", has_text=title).first.wait_for()
    wait_idle(page)


def completed_runs(server: Server) -> list:
    from core.models.runs import list_runs

    return list_runs(server.models)


def require_model(server: Server) -> None:
    if not completed_runs(server):
        pytest.skip("needs the model trained by test_train_a_tiny_model_to_the_end")


def demo_png(server: Server, label: str = "glioma", index: int = 0) -> bytes:
    """A test image from the server's own demo dataset, re-encoded as PNG."""
    files = sorted(server.cache.rglob(f"Testing/{label}/*.png"))
    assert files, f"no demo images under {server.cache}"
    buf = io.BytesIO()
    Image.open(files[index]).save(buf, format="PNG")
    return buf.getvalue()


def open_options(page, widget_key: str, option: str | None = None):
    """Open a selectbox's list (a react-aria combobox); return the option (or the first one)."""
    wanted = page.get_by_role("option", name=option, exact=True) if option else page.get_by_role("option").first
    for _ in range(3):  # a rerun that lands just after the click closes the list again
        page.locator(f"{key(widget_key)} button[aria-label='Open']").click()
        try:
            wanted.wait_for(timeout=5_000)
            return wanted
        except PlaywrightTimeout:
            wait_idle(page)
    pytest.fail(f"the options of '{widget_key}' did not open")


def choose(page, widget_key: str, option: str) -> None:
    """Pick an option of a selectbox (again if a rerun swallowed the click)."""
    box = page.locator(f"{key(widget_key)} input")
    for _ in range(3):
        open_options(page, widget_key, option).click()
        wait_idle(page)
        if box.input_value() == option:
            return
    pytest.fail(f"'{widget_key}' shows '{box.input_value()}', not '{option}'")


def start_training(page, epochs: int, patience: int | None = None) -> None:
    """Smallest settings the page allows: 32 px, width 0.25, no augmentation."""
    set_number(page, "train_size_custom_cnn", 32)
    set_number(page, "train_epochs", epochs)
    if patience is not None:
        set_number(page, "train_patience", patience)
    width = page.locator(f"{key('train_width')} input[type=range]")
    width.focus()
    width.press("Home")  # the select_slider's first option
    wait_idle(page)
    assert page.locator(key("train_width")).get_by_text("0.25").count() >= 1
    choose(page, "train_aug_preset", "none")
    page.locator(f"{key('train_start')} button").click()


# --- 0. a deep link as the server's first request -----------------------------------------------


def test_a_deep_link_as_the_first_request_runs_through_home(page, server):
    """First in file order, so it is the server's first page run: Streamlit still serves its legacy
    pages/-folder mode then (the page alone, its own navigation), until a st.navigation call; the
    page must come back through Home.py: its sections, titles and icons, and the address kept."""
    page.goto(f"{server.url}/Predict_and_Explain?dataset=demo")
    page.locator("h1", has_text=PAGES["Predict_and_Explain"]).first.wait_for(timeout=120_000)
    wait_idle(page)
    assert_no_exception(page)
    nav = page.locator('[data-testid="stSidebarNav"]')
    links = [text.split() for text in nav.locator("a").all_inner_texts()]  # [material icon name, title words]
    assert [(words[0], " ".join(words[1:])) for words in links] == [
        ("home", "Home"), ("dataset", "Dataset Explorer"), ("tune", "Augmentation Preview"),
        ("model_training", "Train"), ("analytics", "Evaluate"), ("neurology", "Predict & Explain")]
    for section in ("Overview", "Data", "Models"):  # Home.py's sections, not the legacy flat list
        assert nav.get_by_text(section, exact=True).count() == 1
    assert page.url.endswith("/Predict_and_Explain?dataset=demo"), page.url
    shot(page, "0-deep-link-first")


# --- 1. every page loads --------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PAGES), ids=[p or "Home" for p in PAGES])
def test_every_page_loads_without_an_exception(page, server, path):
    open_page(page, server, path)
    assert_no_exception(page)
    assert page.locator('[data-testid="stSidebarNav"] a').count() == len(PAGES)  # Home.py's navigation ran
    shot(page, f"1-page-{path or 'Home'}")


# --- 2. Dataset Explorer ------------------------------------------------------------------------


def test_explorer_shows_class_counts_and_a_sample_grid(page, server):
    open_page(page, server, "Dataset_Explorer")
    main = page.locator('[data-testid="stMain"]')
    assert re.search(r"Demo phantoms · \d+ images · 4 classes", main.inner_text())
    page.locator(f'{key("explorer_section")} button', has_text="Class balance").wait_for()
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()  # the per-split class counts chart
    page.locator('[data-testid="stDataFrame"]').first.wait_for()  # and the counts table
    assert main.get_by_text("Classes are balanced").count() == 1
    assert_no_exception(page)
    shot(page, "2-explorer-balance")

    page.locator(f'{key("explorer_section")} button', has_text="Samples").click()
    wait_idle(page)
    page.locator('[data-testid="stImage"] img').nth(6 * 4 - 1).wait_for()  # 6 per class × 4 classes
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    for label in ("Glioma", "Meningioma", "No tumour", "Pituitary"):
        assert any(label.lower() in c.lower() for c in captions), (label, captions[:8])
    assert_no_exception(page)
    shot(page, "2-explorer-samples")


# --- 3. Augmentation Preview ----------------------------------------------------------------------


def test_augmentation_slider_redraws_the_variants(page, server):
    open_page(page, server, "Augmentation_Preview")
    page.locator('[data-testid="stImage"] img').nth(8).wait_for()  # original + 8 variants
    before = image_sources(page)
    caption = page.get_by_text(re.compile(r"pixel checksum [0-9a-f]{12}"))
    fingerprint = caption.inner_text()
    shot(page, "3-augment-before")

    slider = page.locator(f"{key('aug_rotation_deg')} input[type=range]")
    start = float(slider.input_value())
    slider.focus()
    for _ in range(5):
        slider.press("ArrowRight")
    page.wait_for_function("([sel, want]) => Number(document.querySelector(sel).value) === want",
                           arg=[f"{key('aug_rotation_deg')} input[type=range]", start + 5])
    wait_idle(page)
    page.wait_for_function(
        "old => { const now = [...document.querySelectorAll('[data-testid=\"stImage\"] img')].map(e => e.src);"
        " return now.length === old.length && now.slice(1).every((s, i) => s !== old[i + 1]); }",
        arg=before, timeout=60_000)
    after = image_sources(page)
    assert float(slider.input_value()) == start + 5
    assert after[0] == before[0], "the original is unchanged"
    assert all(a != b for a, b in zip(after[1:], before[1:])), "every variant is redrawn"
    assert caption.inner_text() != fingerprint
    assert_no_exception(page)
    shot(page, "3-augment-after")


# --- 4 and 5. Train: finish, reattach after navigating, cancel ---------------------------------------


def test_train_a_tiny_model_to_the_end(page, server):
    open_page(page, server, "Train")
    start_training(page, epochs=1)
    seen: list[tuple[float, int | None]] = []  # (bar value, batches done) while it runs
    done = page.get_by_text("Finished: validation accuracy")
    deadline = time.monotonic() + TRAIN_TIMEOUT_MS / 1000
    while not done.count() and time.monotonic() < deadline:
        if values := progress_values(page):
            seen.append((values[0], progress_step(page)))
        page.wait_for_timeout(250)
    done.wait_for(timeout=5_000)
    (ARTIFACTS / "4-train-progress.txt").write_text("\n".join(f"{v} {s}" for v, s in seen))
    assert seen, "a progress bar was shown while training"
    bars = [v for v, _ in seen]
    assert bars == sorted(bars), "the bar never goes back"
    assert len(set(bars)) >= 2 or len(seen) < 3, "the bar moves while training"
    assert_no_exception(page)
    shot(page, "4-train-finished")
    (run,) = completed_runs(server)
    assert run.card.image_size == 32 and run.card.train_config["epochs"] == 1
    assert run.card.train_config["width"] == 0.25
    assert page.get_by_text(run.run_id).count() >= 1  # "Saved as model run <run id>" and the Past runs table


def test_training_reattaches_after_navigation_and_cancels_cleanly(page, server):
    require_model(server)
    open_page(page, server, "Train")
    start_training(page, epochs=500, patience=100)  # the page's maxima: long enough to cancel
    # The fragment redraws every second; during a redraw the old button may still be in the DOM.
    cancel = page.locator(f"{key('train_cancel')} button:visible").first
    cancel.wait_for(timeout=TRAIN_TIMEOUT_MS)

    def advancing(after: int, timeout_s: float = 120) -> int:
        """Wait until the bar's 'epoch E/N · batch B/M' counter passes ``after``; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (step := progress_step(page)) is not None and step > after:
                return step
            page.wait_for_timeout(300)
        pytest.fail(f"training did not advance beyond batch {after} in {timeout_s} s")

    first = advancing(0)
    second = advancing(first)
    shot(page, "4-train-running")

    nav(page, "Home", PAGES[""])  # away: this session's Train page is gone from the screen...
    # (a redraw of the Train page's fragment already in flight may land once before it goes)
    expect(page.locator('[data-testid="stProgress"]')).to_have_count(0, timeout=10_000)
    page.wait_for_timeout(1500)
    nav(page, "Train", PAGES["Train"])  # ...and back: the page finds the job in the process-wide registry
    page.locator('[data-testid="stProgress"]').wait_for(timeout=30_000)
    assert page.get_by_text(re.compile(r"Job: Custom CNN|Job: .* on Demo phantoms")).count() >= 1
    third = advancing(second)
    assert_no_exception(page)
    shot(page, "5-train-reattached")

    cancel.click()
    cancelled = page.get_by_text("Training was cancelled: nothing was saved.")
    cancelled.first.wait_for(timeout=120_000)
    # The fragment shows the message, then one full rerun redraws the page without the bar (while it
    # runs, the fragment's message and the new page's may both be on screen); after it, one message.
    expect(page.locator('[data-testid="stProgress"]')).to_have_count(0, timeout=10_000)
    expect(cancelled).to_have_count(1, timeout=10_000)
    assert third > second > first
    assert_no_exception(page)
    shot(page, "4-train-cancelled")

    runs = completed_runs(server)
    entries = sorted(p.name for p in server.models.iterdir())
    assert len(runs) == 1, [r.run_id for r in runs]
    assert entries == [runs[0].run_id], f"the cancelled run left {entries} in the registry"


# --- 6. Evaluate ------------------------------------------------------------------------------------


def test_evaluate_shows_the_confusion_matrix(page, server):
    require_model(server)
    open_page(page, server, "Evaluate")
    (run,) = completed_runs(server)
    assert page.locator(key("evaluate_runs")).get_by_text(run.run_id).count() == 1
    page.locator(f"{key('evaluate_start')} button").click()
    page.get_by_role("heading", name="Confusion matrix").wait_for(timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    # The chart's key carries the model and set (a new one forgets the old click): match its prefix.
    chart = page.locator('[class*="st-key-evaluate_cm_"] [data-testid="stVegaLiteChart"]')
    chart.wait_for()
    chart.locator("canvas, svg").first.wait_for()
    assert_no_exception(page)
    chart.scroll_into_view_if_needed()
    shot(page, "6-evaluate")


# --- 7. Predict & Explain ------------------------------------------------------------------------------


# "model probability 97.4 %", or "> 99.9 %" / "< 0.1 %" at the extremes (never "100.0 %").
PROBABILITY = re.compile(r"model probability (> 99\.9 %|< 0\.1 %|\d+\.\d %)")


def upload(page, files: list[tuple[str, bytes, str]]) -> None:
    page.locator(f'{key("predict_uploads")} input[type="file"]').set_input_files(
        [{"name": n, "mimeType": m, "buffer": b} for n, b, m in files])


def test_predict_shows_class_confidence_and_heatmap_and_survives_a_corrupt_file(page, server):
    require_model(server)
    open_page(page, server, "Predict_and_Explain")
    (run,) = completed_runs(server)
    open_options(page, "predict_model")
    options = page.get_by_role("option").all_inner_texts()
    assert len(options) == 1 and run.run_id in options[0], options  # the cancelled run is not offered
    page.keyboard.press("Escape")

    upload(page, [("slice.png", demo_png(server, "glioma"), "image/png")])
    page.get_by_text("Results: 1 analysed").wait_for(timeout=120_000)
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    headline = main.locator("h3").filter(has_text=PROBABILITY).first
    assert re.fullmatch(r"(Glioma|Meningioma|No tumour|Pituitary( tumour)?) · " + PROBABILITY.pattern,
                        headline.inner_text().strip())
    page.locator('[data-testid="stImage"] img').nth(2).wait_for()  # input, heatmap, overlay
    heatmap = page.locator('[data-testid="stImageCaption"]').filter(
        has_text=re.compile(r"Regions that pushed the score towards .* \((LayerCAM|Grad-CAM)\): heat map"))
    heatmap.first.wait_for()
    assert_no_exception(page)
    shot(page, "7-predict-good")

    upload(page, [("broken.png", b"\x89PNG\r\n\x1a\n this is not really an image", "image/png")])
    page.get_by_text(re.compile(r"Results: 1 analysed, 1 rejected")).wait_for(timeout=120_000)
    wait_idle(page)
    error = page.locator('[data-testid="stAlert"]').filter(has_text="could not be analysed")
    assert error.count() == 1 and "broken.png" in main.inner_text()
    assert re.search(r"truncated or corrupt|not an image", error.inner_text())
    assert_no_exception(page)
    shot(page, "7-predict-corrupt")

    upload(page, [("second.png", demo_png(server, "pituitary"), "image/png")])
    page.get_by_text(re.compile(r"Results: 2 analysed, 1 rejected")).wait_for(timeout=120_000)
    wait_idle(page)
    assert main.locator("h3").filter(has_text=PROBABILITY).count() == 2
    assert_no_exception(page)
    shot(page, "7-predict-after-corrupt")


# --- 8. A refresh keeps the user's work (issue 14, item 10) --------------------------------------------


def test_refresh_keeps_the_dataset_and_the_settings(page, server):
    open_page(page, server, "Dataset_Explorer")
    page.locator(key("explorer_source")).get_by_text("Folder on the server").click()
    wait_idle(page)
    folder = page.locator(f"{key('explorer_folder')} input")
    folder.fill(str(server.data / "tiny-folder"))
    folder.press("Enter")
    wait_idle(page)
    page.locator(f"{key('explorer_open_folder')} button").click()
    wait_idle(page)
    badge = page.get_by_text(re.compile(r"Active dataset: tiny-folder · 16 images"))
    badge.first.wait_for(timeout=60_000)

    nav(page, "Train", PAGES["Train"])
    set_number(page, "train_epochs", 7)
    set_number(page, "train_batch", 8)
    choose(page, "train_aug_preset", "light")
    assert "dataset=" in page.url and "train_epochs=7" in page.url, page.url
    shot(page, "8-refresh-before")

    page.reload()
    page.locator("h1", has_text=PAGES["Train"]).first.wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_text(re.compile(r"Active dataset: tiny-folder · 16 images")).count() >= 1
    assert float(page.locator(f"{key('train_epochs')} input").input_value()) == 7
    assert float(page.locator(f"{key('train_batch')} input").input_value()) == 8
    assert page.locator(f"{key('train_aug_preset')} input").input_value() == "light"
    assert_no_exception(page)
    shot(page, "8-refresh-after")

    nav(page, "Home", PAGES[""])  # the dataset is kept on the other pages too
    assert page.get_by_text(re.compile(r"Active dataset: tiny-folder")).count() >= 1


def test_no_stray_files_from_uploads(server):
    """Uploads stay in memory: neither the server's cache nor its working folder holds one."""
    uploaded = {"slice.png", "broken.png", "second.png"}
    assert not {p.name for p in server.cache.rglob("*") if p.is_file()} & uploaded
    assert not {p.name for p in PROJECT_ROOT.iterdir()} & uploaded


def test_server_log_has_no_traceback(server):
    """Errors in background jobs and scripts never reach the page as tracebacks, nor the log."""
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


"""Issue 24 in a real browser: cancel shows on screen within 2 s of the click, and no text is cut at
tablet width (768 px) on any page. Timings and what was found go to test-artifacts/e2e/."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import ARTIFACTS
from .test_browser import (
    PAGES,
    assert_no_exception,
    key,
    open_page,
    progress_step,
    shot,
    start_training,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CANCEL_LIMIT_S = 2.0
TABLET = {"width": 768, "height": 1024}

# Text that the browser had to cut: an element that clips its own text (overflow hidden or an
# ellipsis) and whose text is wider than the element. Canvas tables (st.dataframe) are not DOM text:
# their columns are given widths in the pages instead.
CUT_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="stMain"] *')) {
    if (!el.childNodes.length || ![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const s = getComputedStyle(el);
    const clips = s.textOverflow === 'ellipsis' || s.overflow === 'hidden' || s.overflowX === 'hidden';
    if (!clips || el.offsetParent === null) continue;
    if (el.scrollWidth > el.clientWidth + 2) out.push(el.textContent.trim().slice(0, 80));
  }
  return out;
}"""


def test_cancel_shows_on_screen_within_two_seconds(page, server):
    open_page(page, server, "Train")
    start_training(page, epochs=500, patience=100)
    cancel = page.locator(f"{key('train_cancel')} button:visible").first
    cancel.wait_for(timeout=240_000)
    deadline = time.monotonic() + 240
    while (progress_step(page) or 0) < 2 and time.monotonic() < deadline:  # past compilation, batches running
        page.wait_for_timeout(300)
    batches_running = (progress_step(page) or 0) >= 2
    clicked = time.monotonic()
    cancel.click()
    page.get_by_text("Training was cancelled").first.wait_for(timeout=60_000)
    on_screen = time.monotonic() - clicked
    record = {"click_to_cancelled_on_screen_s": round(on_screen, 2), "batches_were_running": batches_running}
    (ARTIFACTS / "cancel-on-screen.json").write_text(json.dumps(record))
    shot(page, "ux-train-cancelling")
    assert on_screen <= CANCEL_LIMIT_S, f"'cancelled' showed {on_screen:.1f} s after the click"
    # The engine's own stop (measured, for the report): the final state replaces the notice.
    page.get_by_text("Training was cancelled: nothing was saved.").first.wait_for(timeout=300_000)
    record["click_to_job_stopped_on_screen_s"] = round(time.monotonic() - clicked, 2)
    (ARTIFACTS / "cancel-on-screen.json").write_text(json.dumps(record))
    wait_idle(page)
    assert_no_exception(page)


def test_no_text_is_cut_at_tablet_width(browser, server):
    context = browser.new_context(viewport=TABLET)
    context.set_default_timeout(120_000)
    tab = context.new_page()
    found: dict[str, list[str]] = {}
    try:
        for path in PAGES:
            open_page(tab, server, path)
            assert_no_exception(tab)
            found[path or "Home"] = tab.evaluate(CUT_JS)
            shot(tab, f"ux-768-{path or 'Home'}")
    finally:
        (ARTIFACTS / "tablet-768-cut-text.json").write_text(json.dumps(found, indent=1, ensure_ascii=False))
        context.close()
    assert not any(found.values()), found

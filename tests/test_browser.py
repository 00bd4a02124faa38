"""A real browser (Debian's Chromium via Playwright): both tabs, one chat, one small preset run.

Screenshots go to screenshots/ in the project folder; any JavaScript error in the console, and any
error toast the app shows, fails.
"""

from __future__ import annotations

import contextlib
import re
import shutil

import pytest
from conftest import ADMIN, ROOT
from playwright.sync_api import expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
SHOTS.mkdir(exist_ok=True)


INK = """(sel) => {  // pixels of a chart's canvas that are not background
  const c = document.querySelector(sel + ' canvas');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) n++;
  return n;
}"""

# Gradio's toasts vanish after a while: record every one as it appears.
TOASTS = """
window.__toasts = [];
new MutationObserver(() => {
  for (const t of document.querySelectorAll('[data-testid="toast-body"]')) {
    if (!t.dataset.seen) { t.dataset.seen = '1'; window.__toasts.push(t.innerText.replace(/\\s+/g, ' ')); }
  }
}).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture
def page(app_url):
    with browser_page(app_url) as pg:
        yield pg


@contextlib.contextmanager
def browser_page(app_url: str):
    """A page of the app in Chromium; fails on any JavaScript error and on any error toast."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1300, "height": 1400})
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.add_init_script(TOASTS)
        pg.goto(app_url)
        yield pg
        toasts = pg.evaluate("window.__toasts")
        browser.close()
    assert not errors, f"JavaScript errors in the console: {errors}"
    assert not [t for t in toasts if "error" in t.lower()], f"the app showed errors: {toasts}"


def test_both_tabs_chat_once_and_run_a_small_preset(page):
    SHOTS.mkdir(exist_ok=True)
    expect(page.locator("#server-status")).to_contain_text("ready", timeout=30_000)
    expect(page.locator("#model-warning")).to_contain_text("gibberish")

    page.get_by_placeholder("Type a message…").fill("Say hello in **bold**.")
    page.get_by_role("button", name="Send").click()
    stats = re.compile(r"first token [0-9.]+ s · [0-9]+ tokens · [0-9.]+ tokens/s")
    expect(page.locator("#chatbot")).to_contain_text(stats, timeout=60_000)
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

    page.get_by_role("tab", name="Benchmark").click()
    expect(page.locator("#plot-concurrency canvas")).to_be_visible(timeout=20_000)
    # Axes, the article's diamonds and the physical limit are drawn (waited for, not slept on).
    page.wait_for_function(f"({INK})('#plot-concurrency') > 2000", timeout=20_000)
    before = page.evaluate(INK, "#plot-concurrency")
    page.locator("#w-concurrency textarea, #w-concurrency input").first.fill("1, 2")
    page.locator("#w-num-requests input").fill("3")
    page.locator("#w-output-len input").fill("8")
    page.get_by_label("Admin password").fill(ADMIN)
    page.locator("#start").click()
    expect(page.locator("#bench-progress")).to_contain_text("completed", timeout=180_000)
    expect(page.locator("#summary")).to_contain_text("output tok/s", timeout=20_000)
    # The measured series (lines, points, legend) was drawn into the chart.
    page.wait_for_function(f"({INK})('#plot-concurrency') > {before} + 500", timeout=20_000)
    assert page.evaluate(INK, "#plot-input-length") > 2000
    assert page.evaluate(INK, "#plot-time-parts") > 2000  # vLLM's own histograms: where the time went
    page.get_by_text("The article's numbers beside the physical limit").click()
    expect(page.get_by_text("exceeds_bound").locator("visible=true").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "benchmark.png"), full_page=True)


def test_the_chat_folds_a_reasoning_models_thinking_above_its_answer(stub, tmp_path):
    import app
    from showcase import coordinator, presets, server, sources

    srv = server.VLLMServer(sources.detect_device(), endpoint=stub(ttft_ms=50, itl_ms=10, reasoning_tokens=12),
                            api_key="key")
    srv.start()
    demo = app.build_demo(srv, coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path), presets.load_all(),
                          admin_password=ADMIN)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=server.free_port(), quiet=True)
    try:
        with browser_page(url.rstrip("/")) as pg:
            expect(pg.locator("#server-status")).to_contain_text("ready", timeout=30_000)
            pg.get_by_placeholder("Type a message…").fill("Why is the sky blue?")
            pg.get_by_role("button", name="Send").click()
            chat = pg.locator("#chatbot")
            expect(chat).to_contain_text(re.compile(r"Thinking \(0\.[0-9] s\)"), timeout=30_000)
            expect(chat).to_contain_text(re.compile(r"first token [0-9.]+ s \(thinking\) · first answer token"),
                                         timeout=30_000)
            expect(chat).to_contain_text("tok tok")
            expect(chat.get_by_text(re.compile(r"think think"))).to_be_hidden()  # folded once done
            pg.screenshot(path=str(SHOTS / "chat-thinking.png"), full_page=True)
            chat.get_by_text(re.compile(r"Thinking \(")).first.click()  # unfolds on a click
            expect(chat.get_by_text(re.compile(r"think think")).first).to_be_visible()
    finally:
        demo.close()

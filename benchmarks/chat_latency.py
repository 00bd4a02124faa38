"""What the Chat tab adds between the server's first token and the first text a person sees.

The app runs (`app.py --endpoint`) against the stub server (TTFT 150 ms, 20 ms a token), each a
process of its own. Each chat message is timed twice over: through gradio_client (the app's
`/chat` API, as a script would use it) and through Chromium typing into the Chat tab (a
MutationObserver stamps the first text of the answer as it is drawn). The stub stamps the
instant it wrote its first token (CLOCK_MONOTONIC, shared by the processes; the browser's wall
clock is mapped onto it), so what is printed is only what lies between: the SDK, the app's
handler, Gradio's queue, the websocket or SSE to the client and, in the browser, the render.
Run from the project folder:

    .venv/bin/python -m benchmarks.chat_latency [--messages 20]

This is a benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from showcase import ROOT, server

STUB_TTFT_MS, STUB_ITL_MS = 150, 20
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Stamps (wall-clock ms) the moment the newest answer in the chat first shows text.
OBSERVER = """
window.__first = null;
new MutationObserver(() => {
  const bots = document.querySelectorAll('#chatbot .message.bot, #chatbot [data-testid="bot"]');
  const last = bots[bots.length - 1];
  if (window.__first === null && window.__armed && last && last.innerText.trim().length > 0
      && last.innerText.includes('tok')) { window.__first = Date.now(); }
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s")


def first_token_at(stub: str) -> float:
    """The perf_counter instant the stub wrote the first token of its latest reply."""
    served = json.loads(urllib.request.urlopen(stub + "/stub/served").read())
    return served[-1]["t_received"] + served[-1]["ttft_s"]


def by_client(app: str, stub: str, n: int) -> list[float]:
    from gradio_client import Client

    client = Client(app, verbose=False)
    added = []
    for i in range(n):
        job = client.submit(f"hello {i}", "", 16, 0.7, api_name="/chat")
        seen = None
        while seen is None:
            if job.status().code.name in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"the chat failed: {job.status()}")
            outputs = job.outputs()
            if outputs and outputs[-1]:
                seen = time.perf_counter()
            else:
                time.sleep(0.001)
        job.result()
        added.append(1000 * (seen - first_token_at(stub)))
        time.sleep(0.2)
    return added


def by_browser(app: str, stub: str, n: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    added = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page()
        page.add_init_script(OBSERVER)
        page.goto(app)
        box = page.get_by_placeholder("Type a message…")
        box.wait_for()
        for i in range(n):
            page.evaluate("window.__first = null; window.__armed = false")
            box.fill(f"hello {i}")
            page.evaluate("window.__armed = true")
            box.press("Enter")
            page.wait_for_function("window.__first !== null", timeout=30_000)
            # The browser's wall clock onto perf_counter: both read now, here.
            offset = time.time() - time.perf_counter()
            shown = page.evaluate("window.__first") / 1000 - offset
            page.wait_for_function("!document.querySelector('#chatbot .pending, #chatbot [data-testid=\"pending\"]')",
                                   timeout=30_000)
            added.append(1000 * (shown - first_token_at(stub)))
            time.sleep(0.3)
        browser.close()
    return added


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20)
    args = p.parse_args()
    logs = Path("/tmp/chat-latency")
    logs.mkdir(exist_ok=True)
    stub_port, app_port = server.free_port(), server.free_port()
    stub = f"http://127.0.0.1:{stub_port}"
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--port", str(stub_port),
                               "--ttft-ms", str(STUB_TTFT_MS), "--itl-ms", str(STUB_ITL_MS)],
                              stdout=(logs / "stub.log").open("w"), stderr=subprocess.STDOUT)]
    try:
        wait_for(stub + "/health")
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--endpoint", stub, "--api-key", "x",
                                       "--port", str(app_port)], cwd=ROOT,
                                      stdout=(logs / "app.log").open("w"), stderr=subprocess.STDOUT))
        app = f"http://127.0.0.1:{app_port}/"
        wait_for(app)
        time.sleep(3)  # the app's status poll finds the server ready
        rows = [("gradio_client (the /chat API)", by_client(app, stub, args.messages)),
                ("Chromium (the Chat tab, drawn)", by_browser(app, stub, args.messages))]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    print(f"\nstub: TTFT {STUB_TTFT_MS} ms, {STUB_ITL_MS} ms a token; {args.messages} messages each, one at a time\n")
    print("| from the server's first token to the first text seen | median ms | min ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, added in rows:
        print(f"| {name} | {statistics.median(added):.1f} | {min(added):.1f} | {max(added):.1f} |")


if __name__ == "__main__":
    main()

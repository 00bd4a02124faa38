"""What the Chat tab adds to the server's time to first token, before and after the server.

The app runs (`app.py --endpoint`) against the stub server (TTFT 150 ms, 20 ms a token), each a
process of its own. Each chat message is timed twice over: through gradio_client (the app's
`/chat` API, as a script would use it) and through Chromium typing into the Chat tab (a
MutationObserver stamps the first text of the answer as it is drawn). The stub stamps the
instant it wrote its first token (CLOCK_MONOTONIC, shared by the processes; the browser's wall
clock is mapped onto it), so what is printed is what the app adds: from sending (the API call, or
the key press) to the first text seen, less the stub's own TTFT, and its two parts: before the
request reaches the server (Gradio's queue, the app's handler, the SDK, a connection) and after the
server's first token (the SDK's stream, Gradio's queue, the SSE to the client, the render).
Run from the project folder:

    .venv/bin/python -m benchmarks.chat_latency [--messages 10]

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
# Stamps (wall-clock ms) the moment a new answer (one more than when armed) first shows text.
OBSERVER = """
window.__first = null; window.__before = null;
const bots = () => document.querySelectorAll('#chatbot .message.bot');
new MutationObserver(() => {
  if (window.__first !== null || window.__before === null) return;
  const all = bots();
  if (all.length > window.__before && all[all.length - 1].innerText.includes('tok')) window.__first = Date.now();
}).observe(document, {subtree: true, childList: true, characterData: true});
window.__arm = () => { window.__first = null; window.__before = bots().length; };
document.addEventListener('keydown', (e) => { if (e.key === 'Enter') window.__sent = Date.now(); }, true);
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


def served(stub: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(stub + "/stub/served").read())


def reply(stub: str, count: int) -> dict:
    """The stub's `count`-th reply, once it has finished it (the stub lists a reply when it ends):
    when it received the request and how long it took to its first token, by its own clock."""
    while len(done := served(stub)) < count:
        time.sleep(0.05)
    return done[count - 1]


def added(sent: float, seen: float, truth: dict) -> tuple[float, float, float]:
    """What the app added (ms): in all (from sending to the first text seen, less the stub's own
    TTFT), before the server (sending to the stub's receipt), after (its first token to seen)."""
    first = truth["t_received"] + truth["ttft_s"]
    return 1000 * (seen - sent - truth["ttft_s"]), 1000 * (truth["t_received"] - sent), 1000 * (seen - first)


def by_client(app: str, stub: str, n: int) -> list[tuple[float, float, float]]:
    from gradio_client import Client

    client = Client(app, verbose=False)
    out = []
    for i in range(n):
        count = len(served(stub)) + 1
        sent = time.perf_counter()
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
        out.append(added(sent, seen, reply(stub, count)))
        time.sleep(0.2)
    return out


def by_browser(app: str, stub: str, n: int) -> list[tuple[float, float, float]]:
    from playwright.sync_api import sync_playwright

    out = []
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
            count = len(served(stub)) + 1
            box.fill(f"hello {i}")
            page.evaluate("window.__arm()")
            box.press("Enter")
            page.wait_for_function("window.__first !== null", timeout=30_000)
            # The browser's wall clock onto perf_counter: both read now, here.
            offset = time.time() - time.perf_counter()
            sent, shown = (t / 1000 - offset for t in page.evaluate("[window.__sent, window.__first]"))
            out.append(added(sent, shown, reply(stub, count)))
            time.sleep(0.3)
        browser.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--app-root", type=Path, nargs="+", default=[ROOT], help="the checkouts whose app.py runs, in "
                   "turn (add an earlier commit's `git worktree` for a before/after in one run)")
    args = p.parse_args()
    logs = Path("/tmp/chat-latency")
    logs.mkdir(exist_ok=True)
    stub_port = server.free_port()
    stub = f"http://127.0.0.1:{stub_port}"
    stub_proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--port", str(stub_port),
                                  "--ttft-ms", str(STUB_TTFT_MS), "--itl-ms", str(STUB_ITL_MS)],
                                 stdout=(logs / "stub.log").open("w"), stderr=subprocess.STDOUT)
    rows = []
    try:
        wait_for(stub + "/health")
        for root in args.app_root:  # each app in turn, against the same stub, in this one run
            app_port = server.free_port()
            proc = subprocess.Popen([sys.executable, str(root / "app.py"), "--endpoint", stub, "--api-key", "x",
                                     "--port", str(app_port)], cwd=root,
                                    stdout=(logs / f"app-{app_port}.log").open("w"), stderr=subprocess.STDOUT)
            try:
                app = f"http://127.0.0.1:{app_port}/"
                wait_for(app)
                time.sleep(3)  # the app's status poll finds the server ready
                rows += [(root, "gradio_client (the /chat API)", by_client(app, stub, args.messages)),
                         (root, "Chromium (the Chat tab, drawn)", by_browser(app, stub, args.messages))]
            finally:
                proc.terminate()
                proc.wait()
    finally:
        stub_proc.terminate()
        stub_proc.wait()
    print(f"\nstub: TTFT {STUB_TTFT_MS} ms, {STUB_ITL_MS} ms a token; {args.messages} messages each, one at a time\n")
    print("| app | client | added in all, median ms | before the server | after its first token | all, min–max ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for root, name, times in rows:
        total, before, after = (statistics.median(t[k] for t in times) for k in range(3))
        print(f"| {root.name} | {name} | {total:.1f} | {before:.1f} | {after:.1f} | "
              f"{min(t[0] for t in times):.1f}–{max(t[0] for t in times):.1f} |")


if __name__ == "__main__":
    main()

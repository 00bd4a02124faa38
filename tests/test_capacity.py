"""The capacity search, chat users, over-saturation and cost: pure parts on fakes, the whole
path against the stub (whose time per token grows with the streams running, so the answer is known)."""

from __future__ import annotations

import json
import math
import random

import pytest

from showcase.bench import capacity, metrics
from showcase.bench import run as bench
from showcase.bench.capacity import Capacity, CapacityPlan, Probe, Search
from showcase.bench.loadgen import Target
from showcase.bench.workload import Chat, SLOs, Workload, WorkloadError


def search_with(measure, upper: int) -> tuple[Search, list[int]]:
    """Run the search on a fake measurement function; the levels it probed, in order."""
    s, probed = Search(upper), []
    while (level := s.next()) is not None:
        probed.append(level)
        s.record(level, measure(level))
    return s, probed


@pytest.mark.parametrize("answer", [1, 2, 3, 7, 8, 9, 39, 100, 255])
def test_the_search_finds_the_largest_passing_level_of_a_monotone_curve(answer):
    s, probed = search_with(lambda level: level <= answer, upper=256)
    assert s.max_passing == answer and s.min_failing == answer + 1
    assert len(probed) == len(set(probed))  # no level twice
    assert len(probed) <= 2 * math.ceil(math.log2(answer + 1)) + 2


def test_the_search_is_exact_on_noisy_but_separable_measurements():
    # A TPOT that grows with the level plus noise that never crosses the SLO's line.
    rng = random.Random(7)
    for answer in (5, 21, 64):
        def measure(level: int, answer: int = answer) -> bool:
            tpot = 10 + level + (rng.uniform(-0.4, 0.4))
            return tpot <= 10 + answer + 0.5
        s, _ = search_with(measure, upper=256)
        assert s.max_passing == answer


def test_a_first_level_that_fails_has_no_answer():
    s, probed = search_with(lambda level: False, upper=256)
    assert probed == [1] and s.max_passing is None and s.min_failing == 1
    fail = Probe(level=1, load=1, point=0, values_ms={"ttft_ms": 812.0}, failed_share=0, passed=False,
                 binding="ttft_ms")
    cap = Capacity(plan=CapacityPlan(), slos=SLOs(ttft_ms=500), min_failing=1, probes=[fail], done=True)
    assert capacity.sentence(cap) == ("does not meet p90 TTFT ≤ 500 ms even at 1 concurrent stream: "
                                      "p90 TTFT is 812.0 ms")
    assert capacity.missed(fail, cap.plan) == "p90 TTFT is 812.0 ms"


def test_an_upper_bound_reached_without_a_failure_is_the_answer_and_said_so():
    s, probed = search_with(lambda level: True, upper=100)
    assert probed == [1, 2, 4, 8, 16, 32, 64, 100] and s.max_passing == 100 and s.min_failing is None
    cap = Capacity(plan=CapacityPlan(upper=100), slos=SLOs(ttft_ms=500), max_passing=100, done=True,
                   probes=[Probe(level=100, load=100, point=7, values_ms={"ttft_ms": 80}, failed_share=0,
                                 passed=True)])
    assert "at least 100 concurrent streams" in capacity.sentence(cap) and "upper bound" in capacity.sentence(cap)


def test_the_verdict_names_the_slo_missed_by_the_widest_margin_and_failures_first():
    slos = SLOs(ttft_ms=500, tpot_ms=50)
    assert capacity.judge({"ttft_ms": 400, "tpot_ms": 49}, 0.0, slos, 0.0) == (True, None)
    assert capacity.judge({"ttft_ms": 600, "tpot_ms": 80}, 0.0, slos, 0.0) == (False, "tpot_ms")
    assert capacity.judge({"ttft_ms": 100, "tpot_ms": 10}, 0.1, slos, 0.05) == (False, "failures")
    assert capacity.judge({"ttft_ms": math.nan, "tpot_ms": math.nan}, 0.0, slos, 0.0) == (False, "ttft_ms")


def test_the_answer_is_one_sentence_with_the_failing_level_and_the_cost():
    probes = [Probe(level=39, load=39, point=5, values_ms={"ttft_ms": 300, "tpot_ms": 49.0}, failed_share=0,
                    passed=True),
              Probe(level=40, load=40, point=6, values_ms={"ttft_ms": 310, "tpot_ms": 51.2}, failed_share=0,
                    passed=False, binding="tpot_ms")]
    cap = Capacity(plan=CapacityPlan(), slos=SLOs(ttft_ms=500, tpot_ms=50), max_passing=39, min_failing=40,
                   binding_slo="tpot_ms", probes=probes, usd_per_m_output_tokens=0.4212, done=True)
    assert capacity.sentence(cap) == ("serves up to 39 concurrent streams with p90 TTFT ≤ 500 ms and p90 TPOT ≤ "
                                      "50 ms; at 40, p90 TPOT is 51.2 ms, at $0.42 per million output tokens")


def test_a_search_needs_an_slo_and_the_right_workload():
    w = Workload(concurrency=[1], input_len=[64], output_len=8)
    with pytest.raises(WorkloadError, match="at least one SLO"):
        bench.run_meta("x", w, SLOs(), capacity=CapacityPlan())
    with pytest.raises(WorkloadError, match="users"):
        bench.run_meta("x", w, SLOs(ttft_ms=100), capacity=CapacityPlan(by="users"))
    assert bench.run_meta("x", w, SLOs(ttft_ms=100), capacity=CapacityPlan()).points == ()


def test_rate_levels_are_steps_of_the_resolution_without_a_cap():
    w = Workload(concurrency=[1], input_len=[64], output_len=8, num_requests=20)
    plan = CapacityPlan(by="rate", resolution=0.25)
    p = plan.point(w, 6, 3)
    assert p.request_rate == 1.5 and p.concurrency is None and p.index == 3 and p.num_requests == 20
    assert CapacityPlan().point(w, 16, 0).num_requests == 32  # two requests per stream at least


# -- over-saturation and cost -------------------------------------------------------------------------


def test_a_growing_queue_or_rising_ttft_is_oversaturated_and_a_steady_point_is_not():
    steady_ttft = [100 + (i % 5) for i in range(30)]
    assert not metrics.oversaturated(steady_ttft, [3.0] * 20)
    assert metrics.oversaturated(steady_ttft, [float(i) for i in range(20)])  # the queue kept growing
    assert metrics.oversaturated([100 + 20 * i for i in range(30)], [])  # TTFT kept rising
    # A closed loop's first burst: early requests wait longest, then it settles: not over-saturated.
    assert not metrics.oversaturated([400, 380, 350] + [120] * 27, [8.0, 8.0] + [0.0] * 18)
    assert not metrics.oversaturated([100, 200, 300], [1.0, 2.0, 3.0])  # too little to judge


def test_cost_per_million_tokens_and_per_user_hour():
    price = bench.Price(usd_per_gpu_hour=3.6, gpus=2)
    assert price.per_m_output_tokens(1000.0) == pytest.approx(2.0)  # $7.2/h for 3.6M tokens
    assert price.per_user_hour(36) == pytest.approx(0.2)
    assert math.isnan(price.per_m_output_tokens(0.0)) and math.isnan(price.per_m_output_tokens(math.nan))


# -- against the stub ---------------------------------------------------------------------------------


def test_chat_users_send_growing_histories_with_exact_new_messages(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=2)
    chat = Chat(turns=3, system_prompt_len=50, think_time_s=0.05, think_time="exponential")
    w = Workload(users=[2], input_len=[20], output_len=6, chat=chat, warmup_requests=0)
    result = bench.run_sync(bench.run_meta("chat", w), Target(url, "stub"), out_root=tmp_path)
    row, reqs = result.summary.iloc[0], result.requests
    assert row["completed"] == 6 and row["failed"] == 0 and "input_len_mismatch" not in str(row["flags"])
    assert sorted(zip(reqs["conversation"], reqs["turn"])) == [(u, t) for u in (0, 1) for t in (0, 1, 2)]
    # The stub counts a word a token plus 8 for the template: system 50, then 20 + 6 a turn.
    for t, expected in enumerate((8 + 50 + 20, 8 + 50 + 20 + 6 + 20, 8 + 50 + 2 * (20 + 6) + 20)):
        turn = reqs[reqs["turn"] == t]
        assert (turn["prompt_tokens"] == expected).all() and (turn["expected_prompt_tokens"] == expected).all()


def test_the_capacity_search_finds_the_known_answer_of_a_loaded_server(stub, tmp_path):
    # Each token's gap is 5 ms + 6 ms per other stream: TPOT at c streams is 6c − 1 ms, so
    # p90 TPOT ≤ 32 ms holds up to 5 streams (29 ms) and fails at 6 (35 ms): 3 ms either side.
    url = stub(ttft_ms=10, itl_ms=5, itl_per_stream_ms=6)
    w = Workload(concurrency=[1], input_len=[32], output_len=16, num_requests=8, warmup_requests=0)
    meta = bench.run_meta("capacity", w, SLOs(tpot_ms=32), capacity=CapacityPlan(upper=64),
                      price=bench.Price(usd_per_gpu_hour=2.0))
    result = bench.run_sync(meta, Target(url, "stub"), out_root=tmp_path)
    cap = result.capacity
    assert cap.done and cap.max_passing == 5 and cap.min_failing == 6 and cap.binding_slo == "tpot_ms"
    assert [p.level for p in cap.probes] == [1, 2, 4, 8, 6, 5]
    assert len(result.summary) == 6 and list(result.summary["max_concurrency"]) == [1, 2, 4, 8, 6, 5]
    saved = json.loads((result.folder / "capacity.json").read_text())
    assert saved["max_passing"] == 5 and saved["binding_slo"] == "tpot_ms" and saved["percentile"] == 90
    assert saved["min_failing"] == 6 and saved["slos"]["tpot_ms"] == 32 and saved["reason"] == ""
    assert [(p["level"], p["passed"]) for p in saved["probes"]][-2:] == [(6, False), (5, True)]
    assert cap.sentence.startswith("serves up to 5 concurrent streams with p90 TPOT ≤ 32 ms; at 6, p90 TPOT is")
    assert "per million output tokens" in cap.sentence
    assert bench.read_meta(result.folder).points[-1].concurrency == 5


def test_with_repeats_each_level_is_judged_on_the_upper_bound_of_its_repeats(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=5, itl_per_stream_ms=6)  # as above: 5 streams pass, 6 fail
    w = Workload(concurrency=[1], input_len=[32], output_len=16, num_requests=8, warmup_requests=0, repeats=2)
    result = bench.run_sync(bench.run_meta("capacity", w, SLOs(tpot_ms=32), capacity=CapacityPlan(upper=64)),
                            Target(url, "stub"), out_root=tmp_path)
    cap = result.capacity
    assert cap.done and cap.repeats == 2 and cap.max_passing == 5
    assert all(len(p.points) == 2 for p in cap.probes) and len(result.summary) == 2 * len(cap.probes)
    assert list(result.summary["repeat"]) == [0, 1] * len(cap.probes)  # each level's repeats
    five = next(p for p in cap.probes if p.level == 5)
    assert five.upper_ms["tpot_ms"] >= five.values_ms["tpot_ms"]
    assert "each level measured 2 times; a level passes when the upper end" in cap.sentence
    saved = json.loads((result.folder / "capacity.json").read_text())
    assert saved["max_passing"] == 5 and isinstance(saved["max_passing"], int)  # a whole level, written as one


def test_a_level_is_judged_on_the_upper_end_of_its_interval_not_its_mean():
    plan, slos = CapacityPlan(), SLOs(tpot_ms=30)
    tight = capacity.judge_repeats(4, plan, [{"tpot_ms": 27.0}, {"tpot_ms": 27.5}, {"tpot_ms": 26.5}], [8, 8, 8],
                                   [0, 0, 0], [0, 1, 2], slos)
    wide = capacity.judge_repeats(4, plan, [{"tpot_ms": 20.0}, {"tpot_ms": 34.0}, {"tpot_ms": 27.0}], [8, 8, 8],
                                  [0, 0, 0], [0, 1, 2], slos)
    assert tight.passed and not wide.passed and wide.binding == "tpot_ms"
    assert wide.values_ms["tpot_ms"] == pytest.approx(27.0) and wide.upper_ms["tpot_ms"] > 30


def test_a_level_whose_load_was_never_applied_does_not_pass_whatever_its_latencies(stub, tmp_path, monkeypatch):
    # As if our client could not keep 4 or more requests in flight: the flag, not the SLO, fails the level.
    url = stub(ttft_ms=5, itl_ms=1)
    real = metrics.LoadApplied.under_loaded
    monkeypatch.setattr(metrics.LoadApplied, "under_loaded",
                        lambda self, point: point.concurrency >= 4 or real(self, point))
    w = Workload(concurrency=[1], input_len=[16], output_len=4, num_requests=8, warmup_requests=0)
    meta = bench.run_meta("capacity", w, SLOs(e2el_ms=10_000), capacity=CapacityPlan(upper=16))
    cap = bench.run_sync(meta, Target(url, "stub"), out_root=tmp_path).capacity
    assert cap.max_passing == 3 and cap.min_failing == 4 and cap.binding_slo == "under_loaded"
    assert "at 4, the load was never applied" in cap.sentence


def test_the_load_a_point_really_applied():
    def rec(i: int, scheduled: float, start: float, end: float) -> metrics.RequestRecord:
        return metrics.RequestRecord(0, i, False, True, 8, 4, scheduled=scheduled, start=start, end=end,
                                     chunk_times=[start + 0.01, end], chunk_tokens=[1, 3], prompt_tokens=8,
                                     output_tokens=4)

    closed = Workload(concurrency=[4], input_len=[8], output_len=4).points()[0]
    four = [rec(i, 0.0, 0.0, 1.0) for i in range(4)] + [rec(4 + i, 1.0, 1.0, 2.0) for i in range(4)]
    two = [rec(i, i // 2, i // 2, i // 2 + 1.0) for i in range(8)]  # only ever 2 at once
    applied = metrics.load_applied(four)
    assert (applied.mean_in_flight, applied.max_in_flight) == (4.0, 4)
    assert applied.achieved_rate == pytest.approx(7.0) and applied.scheduled_rate == pytest.approx(7.0)
    assert not metrics.load_applied(four).under_loaded(closed)
    assert metrics.load_applied(two).max_in_flight == 2 and metrics.load_applied(two).under_loaded(closed)
    rate = Workload(concurrency=[100], request_rate=[10.0], input_len=[8], output_len=4).points()[0]
    on_time = [rec(i, i / 10, i / 10 + 0.001, i / 10 + 0.05) for i in range(20)]
    behind = [rec(i, i / 10, i / 10 * 1.5, i / 10 * 1.5 + 0.05) for i in range(20)]  # sent at 2/3 of the rate
    assert not metrics.load_applied(on_time).under_loaded(rate)
    assert metrics.load_applied(behind).under_loaded(rate)
    assert metrics.load_applied(behind).achieved_rate == pytest.approx(10 / 1.5)
    row = metrics.summarize(rate, behind, 3.0)
    assert "under_loaded" in row.flags and row.achieved_rate == pytest.approx(10 / 1.5)
    # Our count can reach the concurrency while the server never held it (requests waiting unread in
    # its socket): its own running + waiting says so; a few between two requests are allowed.
    wide = Workload(concurrency=[1024], input_len=[8], output_len=4).points()[0]
    assert metrics.server_under_loaded(wide, 575) and not metrics.server_under_loaded(wide, 1000)
    assert not metrics.server_under_loaded(wide, math.nan)  # a server without /metrics: our count alone
    assert not metrics.server_under_loaded(rate, 3)  # an open loop's in flight is what its arrivals make

"""Worker processes: a point split over them, merged back into one, and a worker that dies."""

from __future__ import annotations

import asyncio
import os
import signal

from showcase.bench import loadgen, workers
from showcase.bench import run as bench
from showcase.bench.loadgen import Prompt, Target
from showcase.bench.workload import Chat, Workload


def few(n: int) -> list[Prompt]:
    return [Prompt([{"role": "user", "content": "x"}], 64, 8)] * n


def point(**kw):
    return Workload(**({"input_len": [64], "output_len": 8, "warmup_requests": 0} | kw)).points()[0]


def test_a_closed_loop_splits_its_streams_and_requests_in_proportion():
    shares = workers.split(point(concurrency=[10], num_requests=25), few(25), 3)
    assert [s.streams for s in shares] == [4, 3, 3]
    assert sorted(i for s in shares for i in s.indices) == list(range(25))
    assert [len(s.indices) for s in shares] == [10, 8, 7]
    assert len(workers.split(point(concurrency=[2], num_requests=8), few(8), 4)) == 2  # never a worker with nothing


def test_a_rate_schedule_split_over_workers_keeps_every_arrival_time():
    p = point(concurrency=[100], num_requests=50, request_rate=[20.0])
    whole = loadgen.schedule(p, few(50))
    shares = workers.split(p, few(50), 3)
    assert sorted(a for s in shares for a in s.arrivals) == sorted(whole)
    assert [s.streams for s in shares] == [34, 33, 33]  # the cap on requests in flight, split too


def test_chat_users_are_dealt_to_workers_whole():
    p = point(users=[5], chat=Chat(turns=2))
    assert [s.users for s in workers.split(p, few(0), 2)] == [(0, 2, 4), (1, 3)]


def test_small_runs_get_one_worker_and_large_ones_one_per_256_streams():
    assert workers.auto_workers(point(concurrency=[64]), cores=16) == 1
    assert workers.auto_workers(point(concurrency=[1024]), cores=16) == 4
    assert workers.auto_workers(point(concurrency=[4096]), cores=8) == 8


def test_records_from_several_workers_merge_to_the_same_point_as_one_worker(stub, tmp_path):
    url = stub(ttft_ms=30, itl_ms=5)
    rows, reqs = [], []
    for n in (1, 3):
        result = bench.run_sync(bench.run_meta(f"w{n}", Workload(concurrency=[6], input_len=[32], output_len=8,
                                                             num_requests=18, warmup_requests=2, workers=n)),
                                Target(url, "stub"), out_root=tmp_path)
        rows.append(result.summary.iloc[0])
        reqs.append(result.requests)
    for row, req in zip(rows, reqs):
        measured = req[~req["warmup"]]
        assert row["completed"] == 18 and row["failed"] == 0 and sorted(measured["index"]) == list(range(18))
        assert req["warmup"].sum() == 2
    # The stub's 30 ms and 5 ms, as a busy 2-core machine lets them through (its tokens keep to
    # deadlines: a late first token makes the next gaps shorter, so TPOT can dip under 5 ms).
    for row in rows:
        assert 28 <= row["mean_ttft_ms"] < 100 and 4 <= row["mean_tpot_ms"] < 10


def test_a_rate_over_workers_sends_each_request_at_its_scheduled_time(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=2)
    w = Workload(concurrency=[50], request_rate=[20.0], input_len=[32], output_len=4, num_requests=30,
                 warmup_requests=0, workers=2)
    result = bench.run_sync(bench.run_meta("rate", w), Target(url, "stub"), out_root=tmp_path)
    req = result.requests.sort_values("index")
    offsets = [t for _, t in loadgen.schedule(w.points()[0], few(30))]
    sched = (req["scheduled"] - req["scheduled"].min()) / 1000
    assert result.summary.iloc[0]["completed"] == 30
    assert max(abs(a - b) for a, b in zip(sched, offsets)) < 0.005  # one clock, the same schedule
    assert ((req["start"] - req["scheduled"]) < 50).all()  # sent on time (ms)


def test_a_killed_worker_counts_its_requests_as_failed_and_the_point_goes_on(stub):
    url = stub(ttft_ms=50, itl_ms=20)
    p = point(concurrency=[4], num_requests=16, output_len=20, input_len=[32])
    prompts = [Prompt([{"role": "user", "content": "word " * 20}], 28, 20)] * 16
    pids: list[int] = []

    def kill_one(started: list[int]) -> None:
        pids.extend(started)

    def on_done(_: object) -> None:  # worker 0 dies once requests are done, with its others in flight
        if len(pids) == 2 and not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    killed: list[int] = []
    records, duration, _ = asyncio.run(workers.run_point(Target(url, "stub"), p, prompts, on_done,
                                                         lambda: False, 2, on_started=kill_one))
    failed = [r for r in records if not r.ok]
    assert len(pids) == 2 and len(records) == 16 and sorted(r.index for r in records) == list(range(16))
    assert failed and all("worker 0 died (exit code -9)" in r.error for r in failed)
    assert sum(r.ok for r in records) >= 8  # the other worker's share completed
    assert duration > 0


def test_chat_users_over_workers(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=2)
    w = Workload(users=[4], input_len=[16], output_len=4, warmup_requests=0, chat=Chat(turns=2), workers=2)
    result = bench.run_sync(bench.run_meta("chat", w), Target(url, "stub"), out_root=tmp_path)
    req = result.requests
    assert result.summary.iloc[0]["completed"] == 8
    assert (req["prompt_tokens"] == req["expected_prompt_tokens"]).all()
    assert sorted(zip(req["conversation"], req["turn"])) == [(u, t) for u in range(4) for t in range(2)]

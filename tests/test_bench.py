"""Benchmark runs: fidelity against a stub with known latencies, failures, and real vLLM (CPU)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable

import pandas as pd
import pytest

import engine
from showcase import ROOT
from showcase.api import ServerAPIError
from showcase.bench import child
from showcase.bench import run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import SLOs, Workload, WorkloadError


def workload(**kw) -> Workload:
    base = dict(concurrency=[1], input_len=[64], output_len=20, num_requests=8, warmup_requests=1)
    return Workload(**(base | kw))


def quiet_machine(timeout_s: float = 5) -> float:
    """Wait (a little) for other work to settle, e.g. processes of the previous test still ending:
    on two cores it would land in the client's timing. Returns the CPU use last seen, in %. (Among
    parallel tests the machine is never quiet: the bounds below hold on a busy one too.)"""
    import psutil

    deadline = time.monotonic() + timeout_s
    busy = psutil.cpu_percent(interval=0.5)
    while busy > 25 and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=0.5)
    return busy


@pytest.mark.parametrize("concurrency", [1, 32])
def test_measured_latencies_match_the_stubs_truth(stub, tmp_path, concurrency):
    url = stub(ttft_ms=100, itl_ms=20)
    busy = quiet_machine()
    # One warm-up per stream opens the connections, as a real run's warm-up does.
    run_plan = bench.run_meta("fidelity", workload(concurrency=[concurrency], num_requests=concurrency * 2, output_len=30,
                                               warmup_requests=concurrency))
    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert result.status == "completed" and row["completed"] == concurrency * 2 and row["failed"] == 0
    assert row["mean_tpot_ms"] == pytest.approx(20, abs=1)
    assert row["median_itl_ms"] == pytest.approx(20, abs=1)
    assert row["mean_input_tokens"] == 64 and row["mean_output_tokens"] == 30
    assert row["max_concurrency"] == concurrency
    # The truth is what the stub really did, timed on its side (same requests, warm-ups included).
    # Our excess over it is the request's trip to the stub, delivery and our parsing; at 32
    # streams most of it is a burst of 32 requests passing through two Python processes on 2 cores.
    served = pd.DataFrame(json.loads(urllib.request.urlopen(url + "/stub/served").read()))
    assert served["ttft_s"].mean() * 1000 == pytest.approx(100, abs=5)  # the stub kept close to its setting
    # At 32 streams the E2E excess measured 8.7–10.7 ms here, before and after the package layout
    # (benchmarks print it): 10 ms was the edge itself, not a margin.
    slack = 3 if concurrency == 1 else 15
    ours = result.requests
    excess_ttft = ours["ttft_ms"].mean() - served["ttft_s"].mean() * 1000
    excess_e2el = ours["e2el_ms"].mean() - served["e2el_s"].mean() * 1000
    context = (f"(machine busy {busy:.0f}% before the run; slowest TTFTs, ours: "
               f"{ours['ttft_ms'].nlargest(5).round(1).to_list()} ms, the stub's: "
               f"{(served['ttft_s'].nlargest(5) * 1000).round(1).to_list()} ms)")
    assert 0 <= excess_ttft <= slack, \
        f"TTFT: ours {ours['ttft_ms'].mean():.1f} ms, stub's {served['ttft_s'].mean() * 1000:.1f} ms {context}"
    assert 0 <= excess_e2el <= slack, \
        f"E2E: ours {ours['e2el_ms'].mean():.1f} ms, stub's {served['e2el_s'].mean() * 1000:.1f} ms {context}"


def test_points_are_measured_with_the_heap_frozen_out_of_collections(stub, tmp_path, monkeypatch):
    # A full collection of this test process's heap (the app lives here too) stops everything for
    # about half a second; in the fidelity test above it landed in the TTFT of a dozen requests.
    import gc

    from showcase.bench import loadgen

    frozen = []
    real = loadgen.run_point

    thresholds = []

    async def spy(*args, **kwargs):
        frozen.append(gc.get_freeze_count())
        thresholds.append(gc.get_threshold()[0])
        return await real(*args, **kwargs)

    before = gc.get_threshold()
    monkeypatch.setattr(loadgen, "run_point", spy)
    result = bench.run_sync(bench.run_meta("gc", workload(concurrency=[1, 2], num_requests=2)), Target(stub(), "stub"),
                            out_root=tmp_path)
    assert result.status == "completed" and len(frozen) == 2
    assert all(n > 10_000 for n in frozen)  # everything alive before the point
    assert thresholds == [loadgen.GC_GEN0] * 2  # and young collections seldom while it runs
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before  # thawed and restored after it


def test_the_servers_own_view_sits_beside_ours(stub, tmp_path):
    # The stub's /metrics carries vLLM's latency histograms from its own truth: the server's TTFT is
    # the stub's, ours is a little above it (the network and our client), and nothing is flagged.
    url = stub(ttft_ms=60, itl_ms=10)
    row = bench.run_sync(bench.run_meta("view", workload(concurrency=[2], num_requests=8)), Target(url, "stub"),
                         out_root=tmp_path).summary.iloc[0]
    assert row["server_requests"] == 8
    assert 60 <= row["server_mean_ttft_ms"] < 80 and row["server_mean_queue_ms"] == 0
    assert 0 < row["outside_ttft_ms"] < 5 and row["mean_ttft_ms"] > row["server_mean_ttft_ms"]
    assert row["server_mean_decode_ms"] == pytest.approx(row["server_mean_e2el_ms"] - row["server_mean_ttft_ms"])
    assert "outside_server" not in str(row["flags"])
    # Time spent before the server's clock starts (an API server's own work) is outside it: flagged.
    slow = stub(ttft_ms=60, itl_ms=10, outside_ms=40)
    row = bench.run_sync(bench.run_meta("outside", workload(concurrency=[2], num_requests=8)), Target(slow, "stub"),
                         out_root=tmp_path).summary.iloc[0]
    assert 40 <= row["outside_ttft_ms"] < 50 and "outside_server" in row["flags"]


def test_a_router_without_histograms_leaves_the_servers_view_empty_unless_pointed_at_an_engine(stub, tmp_path):
    router = stub(ttft_ms=60, itl_ms=10, no_histograms=True)
    plan = bench.run_meta("router", workload(concurrency=[2], num_requests=8))
    row = bench.run_sync(plan, Target(router, "stub"), out_root=tmp_path).summary.iloc[0]
    assert all(pd.isna(row[c]) for c in ("server_mean_ttft_ms", "server_mean_e2el_ms", "outside_ttft_ms"))
    assert "outside_server" not in str(row["flags"])
    engine_view = Target(router, "stub", metrics_url=f"{router}/stub/engine-metrics")
    row = bench.run_sync(plan, engine_view, out_root=tmp_path).summary.iloc[0]
    assert row["server_requests"] == 8 and 60 <= row["server_mean_ttft_ms"] < 80


def test_rate_mode_spaces_requests_and_caps_in_flight(stub, tmp_path):
    url = stub(ttft_ms=50, itl_ms=10)
    run_plan = bench.run_meta("rate", workload(request_rate=[20.0], concurrency=[2], num_requests=20, warmup_requests=0))
    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path)
    reqs = result.requests.sort_values("start")
    assert len(reqs) == 20 and result.summary.iloc[0]["request_rate"] == 20.0
    # never more than 2 in flight: each start is after the end of the request two before it
    starts, ends = reqs["start"].to_list(), reqs["end"].to_list()
    in_flight = max(sum(1 for s, e in zip(starts, ends) if s <= t < e) for t in starts)
    assert in_flight <= 2
    assert (reqs["client_queue_ms"] > 0).any()  # the cap made some wait: that is recorded, not hidden


def test_duration_mode_runs_for_the_time_given(stub, tmp_path):
    url = stub(ttft_ms=20, itl_ms=5)
    run_plan = bench.run_meta("dur", workload(num_requests=None, duration_s=1.5, concurrency=[2], output_len=10))
    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert 1.5 <= row["duration"] < 2.0 and row["completed"] >= 20


def test_breaking_streams_count_as_failures_and_the_run_goes_on(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=5, break_after=3)
    result = bench.run_sync(bench.run_meta("broken", workload(concurrency=[1, 2], num_requests=3)), Target(url, "stub"),
                            out_root=tmp_path)
    assert result.status == "completed" and len(result.summary) == 2
    assert (result.summary["failed"] == 3).all() and (result.summary["completed"] == 0).all()
    assert result.summary["mean_ttft_ms"].isna().all()
    assert "stream ended before [DONE]" in result.summary.iloc[0]["errors"] or "broke" in result.summary.iloc[0]["errors"]


def dropped(url: str) -> int:
    return json.loads(urllib.request.urlopen(url + "/stub/dropped").read())["dropped"]


def connections(url: str) -> int:
    return json.loads(urllib.request.urlopen(url + "/stub/dropped").read())["connections"]


def test_one_stream_reuses_one_connection(stub, tmp_path):
    # A finished stream is read to its end, so its connection goes back to the pool: one stream
    # sent one after another keeps one connection, and no request pays for a new one in its TTFT.
    url = stub(ttft_ms=20, itl_ms=5)
    result = bench.run_sync(bench.run_meta("reuse", workload(concurrency=[1], num_requests=8, output_len=8)),
                            Target(url, "stub"), out_root=tmp_path)
    assert result.summary.iloc[0]["completed"] == 8
    assert connections(url) == 1


def test_connections_left_idle_are_not_reused_after_a_server_dropped_them(stub, tmp_path):
    # A server (or balancer) that silently drops a request arriving on a connection idle > 1.2 s,
    # and requests 1.4 s apart. aiohttp's default keep-alive (15 s) would send every one of them on
    # a dropped connection; ours (1 s, below vLLM's 5 s) closes idle ones first: nothing lost, no retry.
    from showcase.bench import loadgen

    assert loadgen.KEEPALIVE_S < 1.2
    url = stub(ttft_ms=20, itl_ms=10, drop_idle_s=1.2)
    run_plan = bench.run_meta("idle", workload(request_rate=[0.7], burstiness=1000.0, concurrency=[1], num_requests=4,
                                           output_len=8))
    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert result.status == "completed" and row["failed"] == 0 and row["completed"] == 4
    assert row["retried"] == 0 and dropped(url) == 0


def test_a_request_lost_on_a_stale_connection_is_retried_once_on_a_new_one(stub, tmp_path):
    # The server drops connections idle > 0.1 s, shorter than our keep-alive: requests 0.5 s apart
    # (replies take ~0.1 s) meet dropped connections. Nothing of them reached the server's model, so
    # each is sent once more on a new connection, counted in `retried`, and none counts as failed.
    # A retried request leaves its pooled connection closed, so the next one opens a new connection
    # and is not dropped: of 5 measured requests after the warm-up, 2 or 3 are dropped (3 when quiet;
    # a busy machine sending a late request at once can spare one).
    url = stub(ttft_ms=20, itl_ms=10, drop_idle_s=0.1)
    run_plan = bench.run_meta("stale", workload(request_rate=[2.0], burstiness=1000.0, concurrency=[1], num_requests=6,
                                            warmup_requests=1, output_len=8))
    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert result.status == "completed" and row["failed"] == 0 and row["completed"] == 6
    assert row["retried"] >= 2 and dropped(url) == row["retried"]
    reqs = result.requests
    assert reqs["retried"].sum() == dropped(url) and reqs["error"].isna().all()


def test_a_request_that_fails_on_a_new_connection_is_not_retried(stub, tmp_path):
    # Breaks after the response began: the server failed it. It stays a failure, never retried.
    url = stub(ttft_ms=10, itl_ms=5, break_after=2)
    result = bench.run_sync(bench.run_meta("broken", workload(num_requests=3)), Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert row["failed"] == 3 and row["retried"] == 0


def test_a_point_that_shared_the_server_with_other_requests_says_so(stub, tmp_path):
    # A chat (another client) running beside a 1-stream point: the server held 2 requests.
    import threading

    url = stub(ttft_ms=20, itl_ms=20)
    body = json.dumps({"model": "stub", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000,
                       "stream": True}).encode()
    streaming, done = threading.Event(), threading.Event()

    def chat() -> None:  # streams until the shared run is over, then hangs up
        with urllib.request.urlopen(urllib.request.Request(
                url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})) as resp:
            while resp.readline() and not done.is_set():
                streaming.set()

    alone = bench.run_sync(bench.run_meta("alone", workload(num_requests=6, output_len=20)), Target(url, "stub"),
                           out_root=tmp_path)
    chatter = threading.Thread(target=chat, daemon=True)
    chatter.start()
    assert streaming.wait(10)
    shared = bench.run_sync(bench.run_meta("shared", workload(num_requests=6, output_len=20)), Target(url, "stub"),
                            out_root=tmp_path)
    done.set()
    chatter.join(10)
    assert alone.summary.iloc[0]["server_requests_max"] == 1 and "shared_server" not in str(alone.summary["flags"][0])
    assert shared.summary.iloc[0]["server_requests_max"] == 2 and "shared_server" in shared.summary.iloc[0]["flags"]


def test_the_server_dying_ends_the_run_and_keeps_what_was_measured(stub, tmp_path):
    url = stub(ttft_ms=20, itl_ms=20)
    run_plan = bench.run_meta("dies", workload(concurrency=[1, 2, 4], num_requests=30, output_len=20))

    def kill_after_three(p: bench.Progress) -> None:
        # On what was measured, not on a clock: a slow start on a busy machine must not
        # let the kill land before any request finished.
        if p.done - p.failed >= 3 and stub.procs[0].poll() is None:
            stub.procs[0].kill()

    result = bench.run_sync(run_plan, Target(url, "stub"), out_root=tmp_path, on_progress=kill_after_three)
    assert result.status == "server_died"
    meta = json.loads((result.folder / "run.json").read_text())
    assert meta["status"] == "server_died" and meta["finished"]
    summary = pd.read_csv(result.folder / "summary.csv")
    assert summary["completed"].sum() >= 3  # the three that finished before the death are kept
    assert "server_died" in summary.iloc[-1]["flags"]


def stop_after(done: int) -> tuple[threading.Event, list[bench.Progress], Callable[[bench.Progress], None]]:
    """A stop event set once `done` requests of a point finished, the progress seen, and the callback."""
    stop, seen = threading.Event(), []

    def progress(p: bench.Progress) -> None:
        seen.append(p)
        if p.done >= done:
            stop.set()

    return stop, seen, progress


def test_a_stop_request_ends_the_run_between_requests(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=5)
    stop, seen, progress = stop_after(3)

    result = bench.run_sync(bench.run_meta("stop", workload(concurrency=[1, 2], num_requests=50)), Target(url, "stub"),
                            out_root=tmp_path, on_progress=progress, stop=stop)
    assert result.status == "stopped" and len(result.summary) == 1
    assert result.summary.iloc[0]["completed"] < 50 and "stopped" in result.summary.iloc[0]["flags"]
    assert seen[0].points == 2 and seen[-1].tokens_per_s > 0


def test_a_workload_beyond_the_context_is_refused_before_any_request(stub, tmp_path):
    import stub_server

    url = stub()
    too_long = bench.run_meta("long", workload(input_len=[stub_server.MAX_MODEL_LEN]))
    runs = tmp_path / "runs"
    with pytest.raises(WorkloadError, match="exceeds the server's max_model_len"):
        bench.run_sync(too_long, Target(url, "stub"), out_root=runs)
    assert not runs.exists()  # no run folder for a run that never started
    with pytest.raises(ServerAPIError, match="does not serve 'other'"):
        bench.run_sync(bench.run_meta("x", workload()), Target(url, "other"), out_root=runs)


def bench_children() -> list:
    import psutil

    return [c for c in psutil.Process().children(recursive=True) if "showcase.bench.child" in c.cmdline()]


def test_a_run_in_its_own_process_reports_progress_and_stops(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=5)
    stop, seen, progress = stop_after(3)

    log = tmp_path / "logs" / "bench.log"
    result = child.run_in_process(bench.run_meta("stop", workload(concurrency=[1, 2], num_requests=200),
                                             device="from the caller"),
                                  Target(url, "stub"), out_root=tmp_path / "runs",
                                  on_progress=progress, stop=stop, log_path=log)
    assert result.status == "stopped" and len(result.summary) == 1 and len(result.requests) >= 3
    assert 3 <= result.summary.iloc[0]["completed"] < 200 and "stopped" in result.summary.iloc[0]["flags"]
    assert seen[0].points == 2 and seen[0].folder == result.folder and seen[-1].tokens_per_s > 0
    assert bench.read_meta(result.folder).device == "from the caller"
    assert log.exists() and not bench_children()


def test_a_refused_workload_crosses_from_the_run_process(stub, tmp_path):
    import stub_server

    with pytest.raises(WorkloadError, match="exceeds the server's max_model_len"):
        child.run_in_process(bench.run_meta("long", workload(input_len=[stub_server.MAX_MODEL_LEN])),
                             Target(stub(), "stub"), out_root=tmp_path)


def test_a_killed_run_process_is_an_error_naming_its_log(stub, tmp_path):
    url = stub(ttft_ms=10, itl_ms=5)

    def progress(p: bench.Progress) -> None:
        if p.done >= 1:
            for proc in bench_children():
                proc.kill()

    with pytest.raises(child.RunProcessError, match=r"exited with code -9 .*log: .*bench.log") as err:
        child.run_in_process(bench.run_meta("killed", workload(num_requests=500)), Target(url, "stub"),
                             out_root=tmp_path, on_progress=progress, log_path=tmp_path / "bench.log")
    meta = bench.read_meta(err.value.folder)  # the run says how it ended, not "running" for good
    assert meta.status == "failed" and "exited with code -9" in meta.message and meta.finished


def test_the_run_process_stops_when_its_caller_dies(stub, tmp_path):
    import subprocess
    import sys

    import psutil

    url = stub(ttft_ms=10, itl_ms=5)
    caller = subprocess.Popen([sys.executable, "-c", f"""
from showcase.bench import child, run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import Workload
w = Workload(concurrency=[1], input_len=[64], output_len=20, num_requests=2000, warmup_requests=0)
child.run_in_process(bench.run_meta("orphan", w), Target({url!r}, "stub"), out_root={str(tmp_path)!r})
"""], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("*/run.json")):
        assert time.monotonic() < deadline and caller.poll() is None, "the run never started"
        time.sleep(0.1)
    children = [c for c in psutil.Process(caller.pid).children() if "showcase.bench.child" in c.cmdline()]
    assert len(children) == 1
    caller.kill()
    caller.wait()
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, "the load generator outlived its caller"
    info = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    assert info["status"] == "stopped"


def test_cli_ad_hoc_run_prints_a_summary_and_exits_by_outcome(stub, tmp_path, capsys):
    url = stub(ttft_ms=10, itl_ms=5)
    code = engine.main(["bench", "--endpoint", url, "--model", "stub", "--concurrency", "1,2", "--input-len", "32",
                     "--output-len", "8", "--num-requests", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "mean_ttft_ms" in out and "completed" in out
    code = engine.main(["bench", "--endpoint", "http://127.0.0.1:9", "--model", "stub", "--concurrency", "1",
                     "--input-len", "32", "--output-len", "8", "--out", str(tmp_path)])
    assert code == 2 and "Cannot reach the server" in capsys.readouterr().err


def test_real_vllm_run_writes_the_result_files(vllm_server, tmp_path):
    target = Target(vllm_server.base_url, vllm_server.served_model_name, vllm_server.api_key)
    run_plan = bench.run_meta("real", workload(concurrency=[1, 4], input_len=[100], output_len=16, num_requests=4),
                          SLOs(ttft_ms=5000), device="cpu")
    result = bench.run_sync(run_plan, target, out_root=tmp_path)
    assert result.status == "completed"
    for name in ("summary.csv", "requests.csv", "run.json", "timeline.csv"):
        assert (result.folder / name).exists(), name
    summary = pd.read_csv(result.folder / "summary.csv")
    assert list(summary["completed"]) == [4, 4]
    assert (summary["mean_input_tokens"] - 100).abs().max() <= 1  # exact prompts via /tokenize
    assert (summary["mean_output_tokens"] == 16).all()  # exact replies via ignore_eos
    assert summary["mean_ttft_ms"].gt(0).all() and summary["goodput"].notna().all()
    meta = json.loads((result.folder / "run.json").read_text())
    assert meta["vllm_version"] and meta["status"] == "completed" and meta["max_model_len"] == 4096
    requests = pd.read_csv(result.folder / "requests.csv")
    assert len(requests) == 2 * (4 + 1) and requests["warmup"].sum() == 2
    timeline = pd.read_csv(result.folder / "timeline.csv")
    assert {"kv_cache_usage", "running", "waiting"} <= set(timeline.columns)

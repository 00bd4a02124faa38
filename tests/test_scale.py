"""Scale: allowances for visitors and for the command line, long prompts and replies, the batch-clock stub."""

from __future__ import annotations

import json
import resource
import time
import urllib.request

import pytest

import engine
from showcase import presets, sources
from showcase.bench import loadgen
from showcase.bench import run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import TRUSTED, VISITOR, Workload, WorkloadError
from showcase.prepare import prepare_run

CPU = sources.Device("cpu", "cpu")


def big(**kw) -> Workload:
    return Workload(**({"concurrency": [10_000], "input_len": [1024], "output_len": 512,
                        "num_requests": 1_000_000} | kw))


def test_a_visitor_is_held_to_the_visitor_limits_and_the_engine_is_not():
    preset = presets.load_all()["low-latency-chatbot"]
    changes = {"concurrency": [10_000], "num_requests": 1_000_000}
    with pytest.raises(WorkloadError, match="at most 256 .*visitors of the app"):
        prepare_run(preset, changes, None, CPU, False, allowance=VISITOR)
    prepared = prepare_run(preset, changes, None, CPU, False, allowance=TRUSTED)
    assert prepared.meta.points[0].concurrency == 10_000 and prepared.meta.points[0].num_requests == 1_000_000
    with pytest.raises(ValueError, match="at most 100,000"):
        big(concurrency=[200_000])


def test_the_command_line_takes_engine_sized_runs(capsys):
    # 10,000 streams and a million requests pass validation; the unreachable server is what stops it.
    code = engine.main(["bench", "--endpoint", "http://127.0.0.1:9", "--model", "m", "--concurrency", "10000",
                        "--num-requests", "1000000", "--input-len", "200000", "--output-len", "32768"])
    err = capsys.readouterr().err
    assert code == 2 and "Cannot reach the server" in err and "at most" not in err


def test_the_open_file_limit_is_raised_for_many_streams():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        loadgen.allow_open_files(min(2000, hard - loadgen.FILES_SPARE))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(2000 + loadgen.FILES_SPARE, hard)
        if hard != resource.RLIM_INFINITY:
            with pytest.raises(WorkloadError, match="open files"):
                loadgen.allow_open_files(hard + 1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_256k_token_prompt_and_a_32k_token_reply_against_the_stub(stub, tmp_path):
    url = stub(ttft_ms=5, itl_ms=0)
    started = time.perf_counter()
    long_prompt = bench.run_sync(bench.run_meta("long", Workload(concurrency=[1], input_len=[262_144], output_len=8,
                                                             num_requests=2, warmup_requests=0)),
                                 Target(url, "stub"), out_root=tmp_path)
    took = time.perf_counter() - started
    row = long_prompt.summary.iloc[0]
    assert row["completed"] == 2 and row["mean_input_tokens"] == 262_144
    assert "input_len_mismatch" not in str(row["flags"])  # exact, as the stub counted it
    assert took < 120  # prompts of a megabyte and more, built and sent (seconds on a quiet machine)
    long_reply = bench.run_sync(bench.run_meta("reply", Workload(concurrency=[2], input_len=[64], output_len=32_768,
                                                             num_requests=2, warmup_requests=0)),
                                Target(url, "stub"), out_root=tmp_path)
    row = long_reply.summary.iloc[0]
    assert row["completed"] == 2 and row["mean_output_tokens"] == 32_768 and row["failed"] == 0


def test_the_batch_clock_stub_steps_every_stream_together_and_says_what_it_did(stub, tmp_path):
    url = stub(ttft_ms=20, itl_ms=10, batch_clock=True)
    result = bench.run_sync(bench.run_meta("batch", Workload(concurrency=[16], input_len=[64], output_len=32,
                                                         num_requests=32, warmup_requests=0)),
                            Target(url, "stub"), out_root=tmp_path)
    served = json.loads(urllib.request.urlopen(url + "/stub/served").read())
    gaps = sorted(g for s in served for g in s["gaps_s"][1:])  # the first waits for the next step: 0–10 ms
    assert len(served) == 32 and abs(gaps[len(gaps) // 2] - 0.010) < 0.001  # one step apart
    truth_tpot = sum(s["tpot_s"] for s in served) / len(served) * 1000
    assert abs(result.summary.iloc[0]["mean_tpot_ms"] - truth_tpot) < 2.0

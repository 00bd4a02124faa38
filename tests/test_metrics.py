"""Metric math on scripted streams: fakes at the network boundary, a scripted clock, no sockets."""

from __future__ import annotations

import asyncio
import json
import math

import pandas as pd
import pytest

from showcase.bench import loadgen, metrics, samplers, wire
from showcase.bench.metrics import RequestRecord
from showcase.bench.workload import Point, SLOs


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """The socket under a real `wire.Connection`: what was written is kept; once a request is
    written, the scripted response arrives read by read, the clock moved to each read's time."""

    def __init__(self, conn: wire.Connection, clock: FakeClock, reads: list[tuple[float, bytes]],
                 then: Exception | None):
        self.conn, self.clock, self.reads, self.then = conn, clock, reads, then
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        asyncio.get_running_loop().call_soon(self._next, 0)

    def _next(self, i: int) -> None:
        if i < len(self.reads):
            self.clock.now, data = self.reads[i]
            self.conn.data_received(data)
            asyncio.get_running_loop().call_soon(self._next, i + 1)
        elif self.then is not None:
            self.conn.connection_lost(self.then)

    def close(self) -> None:
        pass


class FakeResponse:
    """A scripted HTTP response: its reads (time, bytes) and, optionally, how the connection then broke."""

    def __init__(self, reads: list[tuple[float, bytes]], then: Exception | None = None):
        self.reads, self.then = reads, then

    @classmethod
    def whole(cls, status: int, body: str) -> FakeResponse:
        data = body.encode()
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        return cls([(100.0, head.encode() + data)])


class FakePool:
    """The measured requests' pool, its connections real (`wire.Connection`) over a scripted transport."""

    def __init__(self, response: FakeResponse | Exception, clock: FakeClock | None = None):
        self.response, self.clock = response, clock or FakeClock()
        self.sent: list[dict] = []

    async def connection(self, origin, fresh=False) -> wire.Connection:
        if isinstance(self.response, Exception):
            raise self.response
        conn = wire.Connection()
        transport = FakeTransport(conn, self.clock, self.response.reads, self.response.then)
        conn.connection_made(transport)
        original = transport.write

        def write(data: bytes) -> None:  # what the client sent, its JSON body kept
            self.sent.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))
            original(data)

        setattr(transport, "write", write)  # noqa: B010 (a method replaced on this one object)
        return conn

    def release(self, origin, conn) -> None:
        pass


def sse(obj) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def chunk(content: str | None, done_tokens: int, role: bool = False) -> dict:
    delta = {"content": content} | ({"role": "assistant"} if role else {})
    return {"choices": [{"index": 0, "delta": delta}],
            "usage": {"prompt_tokens": 10, "completion_tokens": done_tokens}}


def final(n: int) -> dict:
    return {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n}}


def run_send(monkeypatch, response, output_len: int = 4, stream: bool = True) -> RequestRecord:
    pool = FakePool(response)
    monkeypatch.setattr(loadgen.time, "perf_counter", pool.clock)
    rec = RequestRecord(0, 0, False, stream, 10, output_len)
    target = loadgen.Target("http://x", "m")
    asyncio.run(loadgen.send(pool, target, [{"role": "user", "content": "hi"}], rec, 60))  # type: ignore[arg-type]
    return rec


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def stream_of(script, then_raise=None) -> FakeResponse:
    """A streamed answer: each scripted read's bytes sent as one HTTP chunk; then the body's end,
    or the connection broken with `then_raise`."""
    reads = [(100.0, STREAM_HEAD)] + [(at, b"%x\r\n%s\r\n" % (len(data), data)) for at, data in script]
    if then_raise is None:
        reads.append((reads[-1][0], b"0\r\n\r\n"))
    return FakeResponse(reads, then_raise)


def test_role_only_first_chunk_does_not_count_as_the_first_token(monkeypatch):
    # t=100 sent; role chunk at 100.05 (no content), tokens at 100.20, .23, .26, .29
    rec = run_send(monkeypatch, stream_of([
        (100.05, sse(chunk("", 0, role=True))),
        (100.20, sse(chunk("a", 1))), (100.23, sse(chunk("b", 2))),
        (100.26, sse(chunk("c", 3))), (100.29, sse(chunk("d", 4))),
        (100.30, sse(final(4)) + sse("[DONE]")),
    ]))
    m = metrics.request_metrics(rec)
    assert rec.ok and rec.output_tokens == 4 and rec.prompt_tokens == 10
    assert m.ttft == pytest.approx(0.20)
    assert m.e2el == pytest.approx(0.29)  # the usage chunk after the last token does not extend it
    assert m.tpot == pytest.approx(0.03)
    assert m.itls == pytest.approx([0.03, 0.03, 0.03])


def test_a_chunk_of_several_tokens_spreads_its_gap_over_them(monkeypatch):
    # tokens 1 at .10; 2-4 arrive together at .40 (speculative decoding, stream interval)
    rec = run_send(monkeypatch, stream_of([
        (100.10, sse(chunk("a", 1, role=True))),
        (100.40, sse(chunk("bcd", 4))),
        (100.41, sse(final(4)) + sse("[DONE]")),
    ]))
    m = metrics.request_metrics(rec)
    assert rec.chunk_tokens == [1, 3]
    assert m.itls == pytest.approx([0.1, 0.1, 0.1])
    assert m.tpot == pytest.approx(0.1)


def test_events_split_across_reads_and_crlf_are_parsed(monkeypatch):
    data = (sse(chunk("a", 1)) + sse(chunk("b", 2)) + sse(final(2)) + sse("[DONE]")).replace(b"\n", b"\r\n")
    rec = run_send(monkeypatch, stream_of([(100.1, data[:7]), (100.2, data[7:50]), (100.3, data[50:])]), 2)
    assert rec.ok and rec.output_tokens == 2 and len(rec.chunk_times) == 2


def test_a_stream_that_breaks_midway_is_a_failure_with_its_reason(monkeypatch):
    rec = run_send(monkeypatch, stream_of([(100.1, sse(chunk("a", 1)))], ConnectionResetError("cut")))
    assert not rec.ok and "connection broke" in rec.error
    rec = run_send(monkeypatch, stream_of([(100.1, sse(chunk("a", 1)))]))  # closed cleanly, no [DONE]
    assert rec.error == "stream ended before [DONE]"


def test_an_error_event_inside_the_stream_fails_the_request(monkeypatch):
    rec = run_send(monkeypatch, stream_of([(100.1, sse(chunk("a", 1))), (100.2, sse({"error": {"message": "boom"}}))]))
    assert rec.error == "error in stream: boom"


def test_http_errors_and_refused_connections_carry_their_reason(monkeypatch):
    body = json.dumps({"error": {"message": "maximum context length is 4096"}})
    rec = run_send(monkeypatch, FakeResponse.whole(400, body))
    assert rec.error == "HTTP 400: maximum context length is 4096"
    assert run_send(monkeypatch, wire.ConnectError("connection refused")).error == "connection refused"


def test_request_body_asks_for_exact_length_and_usage(monkeypatch):
    pool = FakePool(stream_of([(100.1, sse(chunk("a", 1)) + sse("[DONE]"))]))
    monkeypatch.setattr(loadgen.time, "perf_counter", pool.clock)
    rec = RequestRecord(0, 0, False, True, 10, 7)
    asyncio.run(loadgen.send(pool, loadgen.Target("http://x", "m"), [], rec, 60))  # type: ignore[arg-type]
    body = pool.sent[0]
    assert body["max_tokens"] == 7 and body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_non_streaming_has_latency_but_no_ttft(monkeypatch):
    body = json.dumps({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 10, "completion_tokens": 4}})
    rec = run_send(monkeypatch, FakeResponse.whole(200, body), stream=False)
    rec.start, rec.end = 1.0, 1.5
    m = metrics.request_metrics(rec)
    assert m.ttft is None and m.tpot is None and m.e2el == pytest.approx(0.5)


# -- summaries ---------------------------------------------------------------------------------------


def ok(index: int, ttft: float, step: float, n: int = 5, start: float = 0.0, prompt: int = 10) -> RequestRecord:
    times = [start + ttft + step * i for i in range(n)]
    return RequestRecord(0, index, False, True, 10, n, start, start, times[-1] + 0.001, times, [1] * n, prompt, n)


INFO = Point(index=0, input_len=10, output_len=5, concurrency=2)


def test_summary_numbers_follow_the_definitions():
    records = [ok(0, 0.1, 0.02), ok(1, 0.3, 0.04)]
    row = metrics.summarize(INFO, records, duration=2.0, slos=SLOs(ttft_ms=200))
    assert row.completed == 2 and row.failed == 0
    assert row.request_throughput == pytest.approx(1.0)
    assert row.output_throughput == pytest.approx(5.0)  # 10 tokens / 2 s
    assert row.total_token_throughput == pytest.approx(15.0)
    assert row.mean_ttft_ms == pytest.approx(200.0)
    assert row.median_ttft_ms == pytest.approx(200.0)
    assert row.mean_tpot_ms == pytest.approx(30.0)
    assert row.mean_itl_ms == pytest.approx(30.0)
    assert row.mean_e2el_ms == pytest.approx(((0.1 + 0.08) + (0.3 + 0.16)) / 2 * 1000)
    assert row.goodput == pytest.approx(0.5)  # only the first meets TTFT ≤ 200 ms
    assert row.mean_input_tokens == 10 and row.mean_output_tokens == 5
    assert row.flags == ""


def test_failed_and_warmup_requests_enter_no_statistic():
    failed = RequestRecord(0, 2, False, True, 10, 5, 0, 0, 0.01, error="HTTP 500: oops")
    warm = ok(3, 5.0, 1.0)
    warm.warmup = True
    row = metrics.summarize(INFO, [ok(0, 0.1, 0.02), failed, warm], duration=1.0)
    assert row.completed == 1 and row.failed == 1
    assert row.mean_ttft_ms == pytest.approx(100.0)
    assert row.output_throughput == pytest.approx(5.0)
    assert row.errors == "HTTP 500: oops ×1" and "failures" in row.flags


def test_every_request_failing_gives_no_plausible_numbers():
    failed = [RequestRecord(0, i, False, True, 10, 5, 0, 0, 0.01, error="connection refused") for i in range(3)]
    row = metrics.summarize(INFO, failed, duration=1.0, slos=SLOs(ttft_ms=100))
    assert row.completed == 0 and row.failed == 3
    for key in ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "mean_e2el_ms",
                "output_throughput", "mean_output_tokens"):
        assert math.isnan(getattr(row, key)), key
    assert row.flags.startswith("all_failed")


def test_short_output_wrong_input_length_and_missing_usage_are_flagged():
    short = ok(0, 0.1, 0.02, n=3)
    short.output_len = 5
    wrong_prompt = ok(1, 0.1, 0.02, prompt=14)
    row = metrics.summarize(INFO, [short, wrong_prompt], duration=1.0)
    assert "short_output" in row.flags and "input_len_mismatch" in row.flags
    no_usage = ok(0, 0.1, 0.02)
    no_usage.output_tokens = None
    row = metrics.summarize(INFO, [no_usage], duration=1.0)
    assert "no_usage" in row.flags and math.isnan(row.output_throughput)


@pytest.mark.parametrize("health, flags", [
    (metrics.ClientHealth(lag_p99_ms=2.0, cpu_share=0.95, runq_share=0.0), {"client_bound"}),  # used its core up
    (metrics.ClientHealth(lag_p99_ms=25.0, cpu_share=0.08, runq_share=0.01), set()),  # late wake-ups of an idle CPU
    (metrics.ClientHealth(lag_p99_ms=25.0, cpu_share=0.05, runq_share=0.2), {"client_starved"}),  # kept off the CPU
    (metrics.ClientHealth(lag_p99_ms=1.0, cpu_share=0.05, runq_share=0.001), set()),  # a quiet client
    (metrics.ClientHealth(), set()),  # nothing known, nothing claimed
])
def test_the_client_flags_say_what_happened(health, flags):
    row = metrics.summarize(INFO, [ok(0, 0.1, 0.02), ok(1, 0.1, 0.02)], 1.0, client=health)  # both streams busy
    assert set(row.flags.split(";")) - {""} == flags
    said, known = row.client_runq_share, health.runq_share
    assert said == known or (math.isnan(said) and math.isnan(known))  # nothing known is NaN, never a number


def test_percentiles_are_over_the_requests():
    records = [ok(i, 0.001 * (i + 1), 0.01) for i in range(100)]
    row = metrics.summarize(INFO, records, 1.0)
    assert row.median_ttft_ms == pytest.approx(50.5)
    assert row.p90_ttft_ms == pytest.approx(90.1)
    assert row.p99_ttft_ms == pytest.approx(99.01)


def test_arrivals_have_the_asked_rate_and_poisson_spread():
    offsets = loadgen.arrival_offsets(rate=10.0, burstiness=1.0, count=5001, seed=1)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    mean = sum(gaps) / len(gaps)
    cv = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    assert mean == pytest.approx(0.1, rel=0.05) and cv == pytest.approx(1.0, abs=0.08)
    regular = loadgen.arrival_offsets(rate=10.0, burstiness=1000.0, count=100, seed=1)
    assert all(abs((b - a) - 0.1) < 0.01 for a, b in zip(regular[1:], regular[2:]))


def test_prometheus_text_is_parsed_into_the_charted_gauges():
    text = (
        '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine="0",model_name="m"} 1.0\n'
        '# TYPE vllm:num_preemptions counter\nvllm:num_preemptions_total{engine="0",model_name="m"} 2.0\n'
    )
    assert samplers.parse_server_metrics(text) == {"kv_cache_usage": 0.25, "running": 3.0, "waiting": 1.0,
                                                  "preemptions": 2.0}


VLLM_METRICS = """# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.2
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf",model_name="m"} 6.0
vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} 6.0
vllm:time_to_first_token_seconds_sum{engine="1",model_name="m"} 0.4
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 100.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 2.0
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 999.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 999.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
"""


def test_the_servers_histograms_are_summed_over_engines_and_one_name_per_part_is_taken():
    parts = samplers.parse_histograms(VLLM_METRICS)
    assert parts["ttft"] == pytest.approx((0.6, 10.0))  # both engines
    assert parts["itl"] == pytest.approx((2.0, 100.0))  # the first name a server exposes, not both added
    assert set(parts) == {"ttft", "itl"}


def test_the_servers_view_is_the_change_over_the_point_and_outside_is_ours_minus_its():
    before = metrics.ServerTimes({"ttft": (1.0, 10), "e2el": (10.0, 10)})
    after = metrics.ServerTimes({"ttft": (1.5, 20), "e2el": (15.0, 20), "queue": (0.1, 5)})
    cols = metrics.server_columns(before, after, mean_ttft_ms=58.0)
    assert cols["server_mean_ttft_ms"] == pytest.approx(50.0) and cols["server_mean_e2el_ms"] == pytest.approx(500.0)
    assert cols["server_requests"] == 10 and cols["outside_ttft_ms"] == pytest.approx(8.0)
    assert math.isnan(cols["server_mean_queue_ms"])  # not in both snapshots: unknown, not 0
    assert all(math.isnan(v) for v in metrics.server_columns(None, None, 58.0).values())
    # Flagged only when the outside part is both large in share and more than a few ms.
    assert not metrics.outside_server(58.0, 8.0)  # 14 %
    assert not metrics.outside_server(12.0, 4.0)  # a third, but 4 ms
    assert metrics.outside_server(60.0, 20.0) and not metrics.outside_server(60.0, math.nan)


def test_where_the_time_goes_stacks_the_servers_parts_and_says_when_there_are_none():
    from showcase import charts

    summary = pd.DataFrame([{"point": 0, "max_concurrency": 1, "mean_ttft_ms": 20.0, "mean_e2el_ms": 500.0,
                             "server_mean_ttft_ms": 17.0, "server_mean_queue_ms": 0.1, "server_mean_prefill_ms": 12.0,
                             "server_mean_decode_ms": 480.0, "server_mean_e2el_ms": 497.0, "outside_ttft_ms": 3.0}])
    spec = charts.where_time_goes(summary).to_dict()
    values = next(iter(spec["datasets"].values()))
    got = {v["part"]: v["ms"] for v in values}
    assert got["outside the server (our TTFT − its)"] == 3.0 and got["other (server)"] == pytest.approx(4.9)
    empty = charts.where_time_goes(summary.assign(server_mean_e2el_ms=math.nan)).to_dict()
    assert "--metrics-url" in json.dumps(empty)

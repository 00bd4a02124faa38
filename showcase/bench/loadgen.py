"""Load generation against an OpenAI-compatible server: the lean asyncio path.

This module owns the network side of a benchmark: what one request to send is (`Prompt`, chat
users' `Conversations`), sending chat completions over `wire`'s connections and reading their SSE
streams as each read arrives (the openai SDK adds large errors at high concurrency, aiohttp most
of a token's CPU; what an answer must look like is `answers`'),
scheduling them (closed loop at a fixed concurrency, Poisson/gamma arrivals at a rate with an
optional cap, a trace's own times, or chat users' turns).
It records raw timestamps into `metrics.RequestRecord`s and computes nothing from them;
`metrics.py` does. Which prompts a point sends is `prompts`'; what is sampled meanwhile
(/metrics, our own loop) is `samplers.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec
import numpy as np

from showcase.api import ServerAPI
from showcase.bench import wire
from showcase.bench.answers import (
    ERROR_BYTES,
    ERROR_CHARS,
    MalformedAnswer,
    NotJSON,
    SSESplitter,
    Usage,
    decoded,
    error_text,
)
from showcase.bench.metrics import RequestRecord
from showcase.bench.workload import Point, WorkloadError

# Idle pooled connections are closed after this long. vLLM's HTTP server closes them after 5 s
# (VLLM_HTTP_TIMEOUT_KEEP_ALIVE) and load balancers drop them silently; a request sent on a
# connection the server has already given up is lost. A closed loop keeps its connections busy,
# so this only costs a new connection (one handshake) after a pause.
KEEPALIVE_S = 1.0


def measuring_session() -> wire.Pool:
    """The pool that carries measured requests: our own HTTP/1.1 (`wire`), short keep-alive."""
    return wire.Pool(KEEPALIVE_S, wire.CONNECT_TIMEOUT_S)


STOP_GRACE_S = 3.0  # after a stop, requests in flight get this long to finish; then they are abandoned



async def stoppable(coro, should_stop: Callable[[], bool], grace_s: float = STOP_GRACE_S) -> bool:
    """Run `coro`; once `should_stop()` is true, give it `grace_s` to finish, then cancel it.
    Whether it was cut short. What it finished before (records appended) stays."""
    task = asyncio.ensure_future(coro)
    stopped_at = None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                task.result()
                return False
            if should_stop():
                stopped_at = stopped_at or time.perf_counter()
                if time.perf_counter() - stopped_at >= grace_s:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    return True
    finally:
        if not task.done():
            task.cancel()


GC_GEN0 = 20_000  # allocations between the collector's passes while measuring (Python's default: 700)


@contextlib.contextmanager
def frozen_heap():
    """While a point is measured, the garbage collector sees only what the point allocates, and
    seldom: what is alive before is frozen out of collections, and its youngest generation is
    collected every `GC_GEN0` allocations instead of 700.

    A full collection stops the event loop while it walks every object: about 40 ms in a bare
    benchmark process, 0.5 s in one that also holds a web app, and each stop lands in the latencies
    of the requests in flight (AIPerf and vLLM's own servers freeze their heaps too). Each streamed
    token allocates a few objects, so at the default threshold the young passes alone cost a tenth
    of a token's CPU at 256 streams. Collection stays on: garbage of long points is still freed.
    Only the young generations are collected before the freeze: a full pass would cost that same
    stop at every point, and the old generation's garbage is freed as usual once it is thawed.
    """
    import gc

    before = gc.get_threshold()
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(GC_GEN0, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


FILES_SPARE = 256  # open files beyond one a stream: logs, the run folder, side connections, the loop


def allow_open_files(streams: int) -> None:
    """Let this process hold a connection per stream: its open-file limit raised to the hard limit
    (a default soft limit of 1,024 would fail the 1,025th stream); refused when even that is short."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = streams + FILES_SPARE
    if soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < need:
        raise WorkloadError(f"{streams:,} streams need about {need:,} open files; this process may open {hard:,} "
                            "(raise the hard limit: ulimit -Hn, or LimitNOFILE in a service)")


def base_url(url: str) -> str:
    """A server's base URL, as an openai SDK user may write it too: without a trailing / or /v1."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass(frozen=True)
class Prompt:
    """One request to send: its chat messages and what it aims at."""

    messages: list[dict]
    input_len: int | None  # prompt tokens aimed at, chat template included; None: a file's prompt as it is
    output_len: int | None  # sent as max_tokens with ignore_eos; None: the model's own stop
    row: int | None = None  # the file's row it came from
    at: float | None = None  # a trace's send time, seconds from the point's start


@dataclass(frozen=True)
class Conversations:
    """Chat users' conversations: each user's system prompt ("" for none) and turns (each new
    message and its reply's output length), and the seed of their think times."""

    systems: list[str]
    turns: list[list[tuple[str, int | None]]]
    seed: int


@dataclass(frozen=True)
class Target:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    metrics_url: str | None = None  # an engine's own /metrics, where base_url is a router's (default: base_url's)

    def api(self) -> ServerAPI:
        """The server's API off the measured path (use inside `async with`)."""
        return ServerAPI(self.base_url, self.api_key, self.metrics_url)

    @functools.cached_property
    def origin(self) -> wire.Origin:
        return wire.Origin.of(self.base_url)

    @functools.cached_property
    def chat_head(self) -> bytes:
        """A chat completion request's start, up to its Content-Length's value."""
        if any(c in self.api_key for c in "\r\n"):
            raise WorkloadError("An API key cannot hold a line break.")
        o = self.origin
        return (f"POST {o.prefix}/v1/chat/completions HTTP/1.1\r\nHost: {o.host_header}\r\n"
                f"Authorization: Bearer {self.api_key}\r\nContent-Type: application/json\r\n"
                "User-Agent: vllm-showcase\r\nContent-Length: ").encode("latin-1")


# -- requests ---------------------------------------------------------------------------------------


async def send(pool: wire.Pool, target: Target, messages: list[dict], rec: RequestRecord,
               timeout_s: float) -> RequestRecord:
    """Send one chat completion and fill `rec` with raw timestamps, usage, or the error.

    A request that broke on a reused connection before any byte of its response arrived never
    reached the server's model (the server or a balancer had closed that idle connection): it is
    sent once more on a new connection, its clock restarted, and `rec.retried` set.
    """
    body: dict = {"model": target.model, "messages": messages, "stream": rec.stream}
    if rec.output_len is not None:  # exactly this many tokens; without, the model stops where it will
        body |= {"max_tokens": rec.output_len, "ignore_eos": True}
    if rec.stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    data = msgspec.json.encode(body)
    request = target.chat_head + str(len(data)).encode() + b"\r\n\r\n" + data
    if await _attempt(pool, target.origin, request, rec, timeout_s, fresh=False):
        rec.error, rec.retried = None, True
        rec.chunk_times.clear()
        rec.chunk_tokens.clear()
        rec.answer_time = math.nan
        if rec.reply is not None:
            rec.reply.clear()
        await _attempt(pool, target.origin, request, rec, timeout_s, fresh=True)
    return rec


MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole (not streamed) answer longer than this is no chat completion


class _Failed(Exception):
    """The request failed, for the reason given (the server said so, or its answer is unusable)."""


class _Reader:
    """One response's body, read as it arrives: a stream's events into `rec` (the times of its
    content chunks, the server's counts), or a whole body (an error's, or a non-streamed
    answer) kept up to `cap` bytes."""

    __slots__ = ("body", "cap", "conn", "done", "rec", "seen", "size", "split", "status")

    def __init__(self, rec: RequestRecord, conn: wire.Connection) -> None:
        self.rec, self.conn, self.status = rec, conn, 0
        self.split, self.seen, self.done = SSESplitter(), 0, False
        self.body: list[bytes] = []
        self.size, self.cap = 0, 0

    def choose(self, head: wire.Head) -> wire.BodyFn:
        self.status = head.status
        if head.status == 200 and self.rec.stream:
            return self.event
        self.cap = ERROR_BYTES if head.status != 200 else MAX_BODY_BYTES
        return self.whole

    def whole(self, data: bytes, _now: float) -> None:
        self.body.append(data)
        self.size += len(data)
        if self.size >= self.cap:
            if self.status == 200:
                raise MalformedAnswer(f"an answer longer than {MAX_BODY_BYTES // 2**20} MiB")
            raise wire.Enough  # a reason, not a download

    def event(self, data: bytes, now: float) -> None:
        """The events in one read; all of them arrived at `now`."""
        if self.done:
            return
        rec = self.rec
        for payload in self.split.feed(data):
            if payload == b"[DONE]":
                self.done = True
                self.conn.end_within(DRAIN_S)
                return
            try:
                answer = decoded(payload, rec.output_len)
            except NotJSON:
                raise _Failed(f"unparseable stream event: {payload[:100].decode('utf-8', 'replace')}") from None
            if answer.error is not None:
                raise _Failed(f"error in stream: {error_text({'error': answer.error})}")
            usage = answer.usage
            if answer.choices and (text := answer.choices[0].content()):
                if rec.answer_time != rec.answer_time and answer.choices[0].answer():  # NaN: none yet
                    rec.answer_time = now
                rec.chunk_times.append(now)
                tokens = usage.completion_tokens if usage is not None else None
                rec.chunk_tokens.append(tokens - self.seen if tokens is not None else None)
                if rec.reply is not None:
                    rec.reply.append(text)
            if usage is not None:
                self.seen = usage.completion_tokens or self.seen
                _usage(rec, usage)


async def _attempt(pool: wire.Pool, origin: wire.Origin, request: bytes, rec: RequestRecord, timeout_s: float,
                   fresh: bool) -> bool:
    """One try of a request. Whether to try again: it failed on a reused connection before any
    byte of its response arrived."""
    rec.start = time.perf_counter()
    conn = None
    try:
        async with asyncio.timeout(timeout_s):
            conn = await pool.connection(origin, fresh)
            reader = _Reader(rec, conn)
            conn.exchange(request, reader.choose)
            assert conn.done is not None  # set by exchange
            await conn.done
        body = b"".join(reader.body)
        if reader.status != 200:
            # At most a few kB of an error body, whatever its encoding: a reason, not a download.
            # A redirect is an answer of its own (HTTP 3xx, said as such), never followed to another server.
            text = body[:ERROR_BYTES].decode("utf-8", "replace")
            try:
                detail = error_text(json.loads(text))
            except ValueError:
                detail = text[:ERROR_CHARS]
            rec.error = f"HTTP {reader.status}: {detail}"
        elif rec.stream:
            if not reader.done:
                rec.error = "stream ended before [DONE]"
            elif not rec.chunk_times:
                rec.error = "no content in the stream"
        else:
            try:
                answer = decoded(body, rec.output_len)
            except NotJSON as exc:
                raise MalformedAnswer(f"the response is not JSON ({exc})") from None
            if answer.error is not None or not answer.choices:
                rec.error = f"error in response: {error_text({'error': answer.error})}"
            if answer.usage is not None:
                _usage(rec, answer.usage)
    except _Failed as exc:
        rec.error = str(exc)[:ERROR_CHARS]
    except MalformedAnswer as exc:
        rec.error = f"malformed answer: {exc}"[:ERROR_CHARS]
    except TimeoutError:
        rec.error = f"timeout after {timeout_s:g} s"
    except wire.ConnectError as exc:
        rec.error = str(exc)[:ERROR_CHARS]
    except wire.Broken as exc:
        rec.error = f"connection broke: {exc}"[:ERROR_CHARS]
    except wire.BadResponse as exc:
        rec.error = f"not an HTTP answer: {exc}"[:ERROR_CHARS]
    except asyncio.CancelledError:  # a stop: the request is abandoned, its connection closed
        if conn is not None:
            pool.release(origin, conn)
        raise
    rec.end = time.perf_counter()
    if conn is not None:
        pool.release(origin, conn)  # kept for the next request only if its response ended cleanly
    return rec.error is not None and conn is not None and conn.reused and not conn.answered and not fresh


def _usage(rec: RequestRecord, usage: Usage) -> None:
    """The server's counts, as far as this usage object reports them (a stream's grow)."""
    if usage.prompt_tokens is not None:
        rec.prompt_tokens = usage.prompt_tokens
    if usage.completion_tokens is not None:
        rec.output_tokens = usage.completion_tokens
    details = usage.prompt_tokens_details
    if details is not None and details.cached_tokens is not None:
        rec.cached_tokens = details.cached_tokens


DRAIN_S = 1.0  # how long the end of a body may lag its [DONE] before the connection is given up
# ([DONE] and the body's closing chunk often arrive in separate reads on a busy machine; a
# connection given up before its end is closed, and the next request would pay for a new one
# inside its TTFT. The request itself is complete either way.)


def check_fits(points: list[Point], max_model_len: int | None) -> None:
    """Refuse a workload whose prompt plus reply exceeds the server's context, before any request."""
    if max_model_len is None:
        return
    for p in points:
        if (p.context_len() or 0) > max_model_len:
            what = (f"a system prompt of {p.chat.system_prompt_len} and {p.chat.turns} turns of {p.input_len} + "
                    f"{p.output_len} tokens" if p.chat else f"input_len {p.input_len} + output_len {p.output_len}")
            raise WorkloadError(f"Point {p.index + 1}: {what} = {p.context_len()} tokens exceeds the server's "
                                f"max_model_len of {max_model_len}.")


# -- schedules ------------------------------------------------------------------------------------------


def schedule(point: Point, prompts: list[Prompt]) -> list[tuple[int, float]]:
    """An open loop's arrivals: each request's index and send time from the start: a trace's own
    times, or a rate's (those of a duration end with it)."""
    if point.trace is not None:
        return [(i, p.at or 0.0) for i, p in enumerate(prompts)]
    count = len(prompts) if point.duration_s is None else point.arrivals_bound()
    assert point.request_rate is not None  # an open loop without a trace has a rate
    offsets = arrival_offsets(point.request_rate, point.burstiness, count, seed=point.index)
    return [(i, t) for i, t in enumerate(offsets) if point.duration_s is None or t < point.duration_s]


def arrival_offsets(rate: float, burstiness: float, count: int, seed: int = 0) -> list[float]:
    """Send times (s from the start) for `count` requests at `rate` req/s.

    Gaps are gamma-distributed with shape `burstiness` and mean 1/rate: burstiness 1 is a
    Poisson process, larger is more regular, smaller is burstier (as `vllm bench serve`).
    """
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=count)
    gaps[0] = 0.0
    return list(np.cumsum(gaps))


ProgressFn = Callable[[RequestRecord], None]


@dataclass
class _PointRun:
    """One point's requests in flight: the closed loop (a fixed number of streams) or the open
    loop (arrivals at a rate, with an optional cap), each recording into `records`."""

    session: wire.Pool
    target: Target
    point: Point
    on_done: ProgressFn
    should_stop: Callable[[], bool]
    records: list[RequestRecord] = field(default_factory=list)

    async def _one(self, msgs: list[Prompt], i: int, warmup: bool, scheduled: float,
                   cap: asyncio.Semaphore | None = None) -> None:
        p, prompt = self.point, msgs[i % len(msgs)]
        rec = RequestRecord(p.index, i, warmup, p.stream, prompt.input_len, prompt.output_len, scheduled=scheduled,
                            row=prompt.row)
        async with cap or contextlib.nullcontext():
            await send(self.session, self.target, prompt.messages, rec, p.timeout_s)
        self.records.append(rec)
        self.on_done(rec)

    async def closed_loop(self, msgs: list[Prompt], warmup: bool, deadline: float | None,
                          indices: Iterator[int] | None = None, streams: int | None = None) -> None:
        """`streams` streams (default: the point's concurrency), each sending the next request as
        its last one ends: the next of `indices` (default: every prompt once, or without end
        until `deadline`)."""
        counter = indices if indices is not None else (
            itertools.count() if deadline is not None else iter(range(len(msgs))))

        async def stream() -> None:
            while not self.should_stop():
                i = next(counter, None)
                if i is None or (deadline is not None and time.perf_counter() >= deadline):
                    return
                await self._one(msgs, i, warmup, time.perf_counter())

        await asyncio.gather(*(stream() for _ in range(max(1, streams or self.point.concurrency or 1))))

    async def users_loop(self, conversations: Conversations, users: list[int] | None = None) -> None:
        """Each chat user's conversation: it starts at a random moment within one think time, sends
        the system prompt, the history and its next message, reads the reply, thinks, and goes on;
        a failed turn ends that user's conversation (there is no reply to go on from)."""
        p, chat = self.point, self.point.chat
        assert chat is not None and p.users is not None  # chat users' points have both

        async def user(u: int) -> None:
            rng = random.Random(hash((conversations.seed, u)))
            think = (lambda: rng.expovariate(1 / chat.think_time_s)) if chat.think_time == "exponential" and \
                chat.think_time_s > 0 else (lambda: chat.think_time_s)
            await asyncio.sleep(rng.uniform(0, chat.think_time_s))
            system, turns = conversations.systems[u], conversations.turns[u]
            history = [{"role": "system", "content": system}] if system else []
            for t, (text, output_len) in enumerate(turns):
                if self.should_stop():
                    return
                history = history + [{"role": "user", "content": text}]
                rec = RequestRecord(p.index, u * chat.turns + t, False, True, p.input_len, output_len,
                                    scheduled=time.perf_counter(), conversation=u, turn=t, messages=history, reply=[])
                await send(self.session, self.target, history, rec, p.timeout_s)
                self.records.append(rec)
                self.on_done(rec)
                if not rec.ok:
                    return
                history = history + [{"role": "assistant", "content": "".join(rec.reply or [])}]
                if t + 1 < len(turns):
                    await asyncio.sleep(think())

        await asyncio.gather(*(user(u) for u in (users if users is not None else range(p.users))))

    async def open_loop(self, msgs: list[Prompt], t0: float,
                        arrivals: list[tuple[int, float]] | None = None) -> None:
        """Requests at their arrival times (`arrivals`: request index and send time from `t0`;
        default: the point's whole schedule)."""
        p = self.point
        cap = asyncio.Semaphore(p.concurrency) if p.concurrency else None
        tasks = []
        for i, offset in arrivals if arrivals is not None else schedule(p, msgs):
            # The loop's timers may wake a little early: sleep again until the time has come.
            while (delay := t0 + offset - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            if self.should_stop():
                break
            tasks.append(asyncio.create_task(self._one(msgs, i, False, t0 + offset, cap)))
        await asyncio.gather(*tasks)


async def warm_up(session: wire.Pool, target: Target, point: Point, prompts: list[Prompt],
                  on_done: ProgressFn, should_stop: Callable[[], bool]) -> list[RequestRecord]:
    """The point's warm-up requests, at its concurrency, left out of its statistics."""
    job = _PointRun(session, target, point, on_done, should_stop)
    if prompts:
        await stoppable(job.closed_loop(prompts, True, None), should_stop)
    return job.records


async def run_point(
    session: wire.Pool,
    target: Target,
    point: Point,
    prompts: list[Prompt],
    warmup_prompts: list[Prompt],
    on_done: ProgressFn,
    should_stop: Callable[[], bool],
    conversations: Conversations | None = None,
    sink: list[RequestRecord] | None = None,
) -> tuple[list[RequestRecord], float]:
    """Run warm-up, then the measured requests; returns all records and the measured wall time.

    Chat users' points take `conversations`.
    `sink`: the list records are appended to as they finish (so a caller that is cancelled keeps them).

    The wall time runs from the first measured send to the last measured completion.
    """
    job = _PointRun(session, target, point, on_done, should_stop, sink if sink is not None else [])
    if warmup_prompts:
        await stoppable(job.closed_loop(warmup_prompts, True, None), should_stop)
    t0 = time.perf_counter()
    if conversations is not None:
        measured = job.users_loop(conversations)
    elif not point.open_loop:
        measured = job.closed_loop(prompts, False, t0 + point.duration_s if point.duration_s is not None else None)
    else:
        measured = job.open_loop(prompts, t0)
    # A stop lets the requests in flight finish for a few seconds, then abandons them: they are
    # neither completed nor failed (the server did not fail them), and the point says `stopped`.
    await stoppable(measured, should_stop)
    t1 = max((r.end for r in job.records if not r.warmup), default=time.perf_counter())
    return job.records, t1 - t0

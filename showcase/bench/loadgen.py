"""Load generation against an OpenAI-compatible server: the lean asyncio + aiohttp path.

This module owns the network side of a benchmark: what one request to send is (`Prompt`, chat
users' `Conversations`), sending chat completions and reading their SSE streams by hand (the
openai SDK adds large errors at high concurrency; what an answer must look like is `answers`'),
scheduling them (closed loop at a fixed concurrency, Poisson/gamma arrivals at a rate with an
optional cap, a trace's own times, or chat users' turns).
It records raw timestamps into `metrics.RequestRecord`s and computes nothing from them;
`metrics.py` does. Which prompts a point sends is `prompts`'; what is sampled meanwhile
(/metrics, our own loop) is `samplers.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
import numpy as np

from showcase.bench.answers import (ERROR_BYTES, ERROR_CHARS, MalformedAnswer, SSESplitter, checked_usage, choices_of,
                                    answer_of, content_of, error_text)
from showcase.bench.metrics import RequestRecord
from showcase.bench.workload import Point, WorkloadError


# Idle pooled connections are closed after this long. vLLM's HTTP server closes them after 5 s
# (VLLM_HTTP_TIMEOUT_KEEP_ALIVE) and load balancers drop them silently; aiohttp's default of 15 s
# sends the next request on a connection the server has already given up. A closed loop keeps its
# connections busy, so this only costs a new connection (one handshake) after a pause.
KEEPALIVE_S = 1.0


async def _mark_reused(_session, ctx, _params) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx.reused = True


def measuring_session() -> aiohttp.ClientSession:
    """The session that carries measured requests: pooled, short keep-alive, and it notes on each
    request whether its connection was reused (so a request lost on a stale one can be retried)."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(_mark_reused)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), trace_configs=[trace])


SIDE_TIMEOUT_S = 30.0  # any request off the measured path (/tokenize, /v1/models, /version, /metrics)
CONNECT_TIMEOUT_S = 10.0
STOP_GRACE_S = 3.0  # after a stop, requests in flight get this long to finish; then they are abandoned


def side_session() -> aiohttp.ClientSession:
    """A new connection for every request: health checks, /metrics, /tokenize, and retries; each
    bounded by `SIDE_TIMEOUT_S` (a retry of a measured request keeps its own timeout).

    A health check that met a stale pooled connection would call a live server dead."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=32),
                                 timeout=aiohttp.ClientTimeout(total=SIDE_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S))


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


def only_model(base: str, api_key: str) -> str:
    """The one model a server serves (as `vllm bench serve` takes it); refused when it serves
    none or several, naming them, or answers something that is no list of models."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=CONNECT_TIMEOUT_S) as resp:
            data = json.loads(resp.read(2**20))
    except (OSError, ValueError, urllib.error.URLError) as exc:
        raise WorkloadError(f"Cannot reach the server at {base} to ask which model it serves: {exc}") from exc
    models = data.get("data") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise WorkloadError(f"{base}/v1/models answered no list of models: {str(data)[:ERROR_CHARS]}")
    names = [m.get("id") for m in models]
    if len(names) != 1:
        raise WorkloadError(f"{base} serves {', '.join(map(str, names)) or 'no model'}: say which with --model.")
    if not isinstance(names[0], str) or not names[0]:
        raise WorkloadError(f"{base}/v1/models lists a model without a name (id): say which with --model.")
    return names[0]


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

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


# -- requests ---------------------------------------------------------------------------------------


async def send(session: aiohttp.ClientSession, target: Target, messages: list[dict], rec: RequestRecord,
               timeout_s: float, fresh: aiohttp.ClientSession | None = None) -> RequestRecord:
    """Send one chat completion and fill `rec` with raw timestamps, usage, or the error.

    A request that broke on a reused connection before any byte of its response arrived never
    reached the server's model (the server or a balancer had closed that idle connection): it is
    sent once more on a new connection from `fresh`, its clock restarted, and `rec.retried` set.
    """
    body: dict = {"model": target.model, "messages": messages, "stream": rec.stream}
    if rec.output_len is not None:  # exactly this many tokens; without, the model stops where it will
        body |= {"max_tokens": rec.output_len, "ignore_eos": True}
    if rec.stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    url = f"{target.base_url}/v1/chat/completions"
    conn = SimpleNamespace(reused=False, responded=False)
    await _attempt(session, url, body, target, rec, timeout_s, conn)
    if rec.error and conn.reused and not conn.responded and fresh is not None:
        rec.error, rec.retried = None, True
        rec.chunk_times.clear()
        rec.chunk_tokens.clear()
        if rec.reply is not None:
            rec.reply.clear()
        await _attempt(fresh, url, body, target, rec, timeout_s, SimpleNamespace(reused=False, responded=False))
    return rec


async def _attempt(session: aiohttp.ClientSession, url: str, body: dict, target: Target, rec: RequestRecord,
                   timeout_s: float, conn: SimpleNamespace) -> None:
    rec.start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            # A redirect is an answer of its own (HTTP 3xx, said as such), never followed to another server.
            async with session.post(url, json=body, headers=target.headers, trace_request_ctx=conn,
                                    allow_redirects=False) as resp:
                conn.responded = True
                if resp.status != 200:
                    # At most a few kB of an error body, whatever its encoding: a reason, not a download.
                    text = (await resp.content.read(ERROR_BYTES)).decode("utf-8", "replace")
                    try:
                        detail = error_text(json.loads(text))
                    except ValueError:
                        detail = text[:ERROR_CHARS]
                    rec.error = f"HTTP {resp.status}: {detail}"
                elif rec.stream:
                    await _read_stream(resp, rec)
                else:
                    try:
                        data = json.loads(await resp.read())
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise MalformedAnswer(f"the response is not JSON ({exc})") from exc
                    choices = choices_of(data)
                    if "error" in data or not choices:
                        rec.error = f"error in response: {error_text(data)}"
                    content_of(choices[0]) if choices else None
                    _usage(rec, checked_usage(data, rec.output_len) or {})
    except MalformedAnswer as exc:
        rec.error = f"malformed answer: {exc}"[:ERROR_CHARS]
    except TimeoutError:
        rec.error = f"timeout after {timeout_s:g} s"
    except aiohttp.ClientConnectorError:
        rec.error = "connection refused"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
        rec.error = f"connection broke: {type(exc).__name__}"
    except aiohttp.ClientError as exc:
        rec.error = f"client error: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
    rec.end = time.perf_counter()


async def _read_stream(resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
    splitter = SSESplitter()
    seen_tokens = 0
    done = False
    async for data in resp.content.iter_any():
        now = time.perf_counter()  # every event in this read arrived now
        for payload in splitter.feed(data):
            if payload == "[DONE]":
                done = True
                break
            try:
                obj = json.loads(payload)
            except ValueError:
                rec.error = f"unparseable stream event: {payload[:100]}"
                return
            if isinstance(obj, dict) and "error" in obj:
                rec.error = f"error in stream: {error_text(obj)}"
                return
            choices = choices_of(obj)
            usage = checked_usage(obj, rec.output_len)
            text = "".join(content_of(c) for c in choices)
            if text:
                if rec.answer_time != rec.answer_time and any(answer_of(c) for c in choices):  # NaN: none yet
                    rec.answer_time = now
                rec.chunk_times.append(now)
                tokens = usage.get("completion_tokens") if usage else None
                rec.chunk_tokens.append(tokens - seen_tokens if tokens is not None else None)
                if rec.reply is not None:
                    rec.reply.append(text)
            if usage:
                seen_tokens = usage.get("completion_tokens") or seen_tokens
                _usage(rec, usage)
        if done:
            await _drain(resp)
            break
    if not done:
        rec.error = "stream ended before [DONE]"
    elif not rec.chunk_times:
        rec.error = "no content in the stream"


def _usage(rec: RequestRecord, usage: dict) -> None:
    """The server's counts, as far as this usage object reports them (a stream's grow)."""
    rec.prompt_tokens = usage.get("prompt_tokens", rec.prompt_tokens)
    rec.output_tokens = usage.get("completion_tokens", rec.output_tokens)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    rec.cached_tokens = cached if cached is not None else rec.cached_tokens


DRAIN_S = 1.0  # how long the end of a body may lag its [DONE] before the connection is given up


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read a finished stream to its end, so its connection goes back to the pool.

    [DONE] and the body's closing chunk can arrive in separate reads (often, on a busy machine);
    a response released before its end has its connection closed, and the next request would
    pay for a new connection inside its TTFT. The request itself is complete either way."""
    try:
        async with asyncio.timeout(DRAIN_S):
            await resp.content.read()
    except (TimeoutError, aiohttp.ClientError):
        pass


async def server_max_model_len(session: aiohttp.ClientSession, target: Target) -> int | None:
    """The served model's context length; refuses a server that is unreachable or lacks the model."""
    url = f"{target.base_url}/v1/models"
    try:
        async with session.get(url, headers=target.headers) as resp:
            if resp.status != 200:
                raise WorkloadError(f"{url} answered HTTP {resp.status}")
            data = json.loads(await resp.read())
    except TimeoutError as exc:
        raise WorkloadError(f"{url} did not answer within {SIDE_TIMEOUT_S:g} s.") from exc
    except (aiohttp.ClientError, ValueError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"Cannot reach the server at {target.base_url}: {exc}") from exc
    models = data.get("data") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise WorkloadError(f"{url} answered no list of models: {str(data)[:ERROR_CHARS]}")
    for m in models:
        if m.get("id") == target.model:
            length = m.get("max_model_len")
            if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
                raise WorkloadError(f"{url} gives {target.model!r} a max_model_len of {length!r}, not a length")
            return length
    names = ", ".join(str(m.get("id", "?")) for m in models)
    raise WorkloadError(f"The server does not serve {target.model!r} (it serves: {names or 'nothing'}).")


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

    session: aiohttp.ClientSession
    target: Target
    point: Point
    on_done: ProgressFn
    should_stop: Callable[[], bool]
    fresh: aiohttp.ClientSession | None
    records: list[RequestRecord] = field(default_factory=list)

    async def _one(self, msgs: list[Prompt], i: int, warmup: bool, scheduled: float,
                   cap: asyncio.Semaphore | None = None) -> None:
        p, prompt = self.point, msgs[i % len(msgs)]
        rec = RequestRecord(p.index, i, warmup, p.stream, prompt.input_len, prompt.output_len, scheduled=scheduled,
                            row=prompt.row)
        async with cap or contextlib.nullcontext():
            await send(self.session, self.target, prompt.messages, rec, p.timeout_s, self.fresh)
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
                await send(self.session, self.target, history, rec, p.timeout_s, self.fresh)
                self.records.append(rec)
                self.on_done(rec)
                if not rec.ok:
                    return
                history = history + [{"role": "assistant", "content": "".join(rec.reply)}]
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


async def warm_up(session: aiohttp.ClientSession, target: Target, point: Point, prompts: list[Prompt],
                  on_done: ProgressFn, should_stop: Callable[[], bool],
                  fresh: aiohttp.ClientSession | None = None) -> list[RequestRecord]:
    """The point's warm-up requests, at its concurrency, left out of its statistics."""
    job = _PointRun(session, target, point, on_done, should_stop, fresh)
    if prompts:
        await stoppable(job.closed_loop(prompts, True, None), should_stop)
    return job.records


async def run_point(
    session: aiohttp.ClientSession,
    target: Target,
    point: Point,
    prompts: list[Prompt],
    warmup_prompts: list[Prompt],
    on_done: ProgressFn,
    should_stop: Callable[[], bool],
    fresh: aiohttp.ClientSession | None = None,
    conversations: Conversations | None = None,
    sink: list[RequestRecord] | None = None,
) -> tuple[list[RequestRecord], float]:
    """Run warm-up, then the measured requests; returns all records and the measured wall time.

    Chat users' points take `conversations`.
    `sink`: the list records are appended to as they finish (so a caller that is cancelled keeps them).

    The wall time runs from the first measured send to the last measured completion. `fresh`
    carries the one retry of a request lost on a stale connection (see `send`).
    """
    job = _PointRun(session, target, point, on_done, should_stop, fresh, sink if sink is not None else [])
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

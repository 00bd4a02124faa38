"""One point's load spread over worker processes, each with its own event loop.

One Python event loop reads every stream's socket in turn: at a thousand streams its wake-ups run
late and every timestamp with them (SGLang measured its Python client at 2.4× the TTFT of its Rust
client at 256 streams). This module owns splitting a point over worker processes (its streams
and their requests, a rate's arrivals with their times unchanged, chat users), starting every
worker on one shared instant, collecting their records as they finish, and a worker that dies
(its unreported requests count as failed, with the reason). Each worker runs `loadgen`'s own
loops on its share; records merge into one point with `metrics`' definitions. Timestamps are
`time.perf_counter()`, the system-wide monotonic clock on Linux, so workers' stamps compare.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from showcase.bench import loadgen, samplers
from showcase.bench.loadgen import Conversations, Prompt, Target
from showcase.bench.metrics import ClientHealth, RequestRecord
from showcase.bench.workload import Point

INBOX_WAIT_S = 0.1  # the parent's wait for a message before it looks at its workers again
STREAMS_PER_WORKER = 256  # one event loop stays exact to about this many streams (README: client overhead)
READY_TIMEOUT_S = 120.0  # a worker imports and opens its sessions within this
START_MARGIN_S = 0.05  # from "go" to the shared first instant: every worker is waiting by then
GO_POLL_S = 0.005  # how often a ready worker looks for "go" (well inside START_MARGIN_S)


def auto_workers(point: Point, cores: int | None = None) -> int:
    """Workers for a point when none are asked: one per `STREAMS_PER_WORKER` streams, at most one a
    core this process may use; 1 for small runs."""
    cores = cores or len(os.sched_getaffinity(0))
    streams = point.users or point.concurrency or max(1, math.ceil((point.request_rate or 1) / 100))
    return max(1, min(cores, math.ceil(streams / STREAMS_PER_WORKER)))


@dataclass(frozen=True)
class Share:
    """What one worker sends of a point."""

    worker: int
    streams: int  # closed loop: its streams; a rate's cap: its part of the cap (0: none)
    indices: tuple[int, ...]  # closed loop with a count: the requests it sends
    arrivals: tuple[tuple[int, float], ...]  # a rate: its requests and their send times from the start
    users: tuple[int, ...]  # chat users: the users whose conversations it holds


def _parts(total: int, n: int) -> list[int]:
    """`total` split into `n` parts differing by at most one, larger first."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def split(point: Point, prompts: list[Prompt], workers: int) -> list[Share]:
    """A point's load over `workers`: streams and requests in proportion, a rate's arrivals dealt
    in turn (every arrival keeps its time), chat users dealt in turn. No worker gets nothing."""
    levels = point.users or point.concurrency or 0
    n = max(1, min(workers, levels or workers))
    streams = _parts(levels, n) if levels else [0] * n
    if point.users is not None:
        return [Share(w, streams[w], (), (), tuple(range(w, point.users, n))) for w in range(n)]
    if point.open_loop:
        arrivals = loadgen.schedule(point, prompts)
        return [Share(w, streams[w], (), tuple(arrivals[w::n]), ()) for w in range(n)]
    if point.duration_s is not None:  # each stream sends until the deadline: indices dealt in turn, without end
        return [Share(w, streams[w], (), (), ()) for w in range(n)]
    counts = [round(len(prompts) * s / levels) for s in streams]
    counts[-1] = len(prompts) - sum(counts[:-1])
    starts = list(itertools.accumulate([0, *counts]))
    return [Share(w, streams[w], tuple(range(starts[w], starts[w + 1])), (), ()) for w in range(n)]


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs, sent to it once (pickled)."""

    target: Target
    point: Point
    share: Share
    workers: int
    prompts: list[Prompt]
    conversations: Conversations | None


def _worker_main(job: WorkerJob, out, go, start_at, stop) -> None:
    """A worker process: open sessions, say ready, wait for the shared instant, send its share."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_work(job, out, go, start_at, stop))


async def _work(job: WorkerJob, out, go, start_at, stop) -> None:
    share, point = job.share, job.point
    if point.open_loop:  # its part of the cap on requests in flight
        point = point.model_copy(update={"concurrency": share.streams or None})
    lag = samplers.LagSampler()
    # The heap is frozen (a full collection first) before this worker says it is ready: done after
    # the shared first instant, that collection made the first sends of a rate 50 ms late.
    with loadgen.frozen_heap():
        async with loadgen.measuring_session() as session:
            out.put(Ready(share.worker))
            # Polled, not waited on: a worker killed inside `Event.wait` leaves the event's condition
            # counting a sleeper that never wakes, and the parent's `go.set()` then blocks for ever.
            while not go.is_set():
                await asyncio.sleep(GO_POLL_S)
            t0 = start_at.value
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
            sampler = asyncio.create_task(lag.run())
            lag.begin()
            run = loadgen._PointRun(session, job.target, point, lambda r: out.put(Record(share.worker, r)),
                                    stop.is_set)
            if job.conversations is not None:
                measured = run.users_loop(job.conversations, users=list(share.users))
            elif point.open_loop:
                measured = run.open_loop(job.prompts, t0, list(share.arrivals))
            elif point.duration_s is not None:
                measured = run.closed_loop(job.prompts, False, t0 + point.duration_s,
                                           itertools.count(share.worker, job.workers), share.streams)
            else:
                measured = run.closed_loop(job.prompts, False, None, iter(share.indices), share.streams)
            await loadgen.stoppable(measured, stop.is_set)  # as on one worker: a stop ends it within seconds
            health = lag.take()
            sampler.cancel()
    out.put(Done(share.worker, health))


@dataclass(frozen=True)
class Ready:
    """A worker's heap is frozen and its pool open: it waits for the shared first instant."""

    worker: int


@dataclass(frozen=True)
class Record:
    """One of a worker's requests, finished (or failed)."""

    worker: int
    record: RequestRecord


@dataclass(frozen=True)
class Done:
    """A worker's share is done: how our client fared in it."""

    worker: int
    health: ClientHealth


WorkerMessage = Ready | Record | Done  # what a worker puts on the queue to the parent, in this order


def combined(healths: list[ClientHealth]) -> ClientHealth:
    """The workers' health as one: the worst of each (a point is client-bound if any worker was)."""
    def worst(values: list[float]) -> float:
        known = [v for v in values if not math.isnan(v)]
        return max(known) if known else math.nan

    return ClientHealth(worst([h.lag_p99_ms for h in healths]), worst([h.cpu_share for h in healths]),
                        worst([h.runq_share for h in healths]))


def _lost(point: Point, share: Share, seen: set[int], code: int | None) -> list[RequestRecord]:
    """A dead worker's requests it never reported, as failures saying why (for a duration, its
    streams' requests in flight; what it would have sent later was never sent)."""
    why = f"load generator worker {share.worker} died (exit code {code}): the request's outcome is unknown"
    if point.users is not None and point.chat is not None:
        wanted = [u * point.chat.turns + t for u in share.users for t in range(point.chat.turns)]
    elif point.open_loop:
        wanted = [i for i, _ in share.arrivals]
    elif point.duration_s is not None:
        wanted = [-1 - k for k in range(share.streams)]  # in flight, indices unknown
    else:
        wanted = list(share.indices)
    return [RequestRecord(point.index, i, False, point.stream, point.input_len, point.output_len, error=why)
            for i in wanted if i not in seen]


async def run_point(target: Target, point: Point, prompts: list[Prompt], on_done: Callable[[RequestRecord], None],
                    should_stop: Callable[[], bool], workers: int,
                    conversations: Conversations | None = None,
                    on_started: Callable[[list[int]], None] = lambda pids: None,
                    ) -> tuple[list[RequestRecord], float, ClientHealth]:
    """The measured requests of `point` over `workers` processes (warm-up is the caller's); all
    records, the measured wall time (from the shared first instant to the last completion) and
    our client's health over all workers. `on_started` gets the workers' pids (tests kill one)."""
    ctx = mp.get_context("spawn")  # this process runs threads and an event loop: never fork it
    go, stop, start_at = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    shares = split(point, prompts, workers)
    # A queue of its own for each worker: a worker killed while writing to a shared queue holds its
    # lock for ever, and every other worker's messages would wait behind it (the run would hang).
    outs = [ctx.Queue() for _ in shares]
    procs = [ctx.Process(target=_worker_main, name=f"loadgen-worker-{s.worker}", daemon=True,
                         args=(WorkerJob(target, point, s, len(shares), prompts, conversations), out, go, start_at,
                               stop)) for s, out in zip(shares, outs)]
    for p in procs:
        p.start()
    on_started([p.pid for p in procs if p.pid is not None])
    try:
        return await _collect(procs, shares, outs, go, stop, start_at, point, on_done, should_stop)
    finally:
        stop.set()
        go.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def _forward(out, inbox: queue.SimpleQueue, done: threading.Event) -> None:
    """One worker's messages into the parent's inbox, from a thread of its own: a worker killed in
    the middle of a message leaves this thread waiting for the rest for ever, and nothing else."""
    while not done.is_set():
        try:
            inbox.put(out.get(timeout=0.1))
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return


async def _collect(procs, shares, outs, go, stop, start_at, point, on_done, should_stop):
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Event()
    for w, out in enumerate(outs):
        threading.Thread(target=_forward, args=(out, inbox, done), daemon=True, name=f"loadgen-inbox-{w}").start()
    try:
        return await _gather(procs, shares, inbox, go, stop, start_at, point, on_done, should_stop)
    finally:
        done.set()


async def _gather(procs, shares, inbox, go, stop, start_at, point, on_done, should_stop):
    records: list[RequestRecord] = []
    seen: dict[int, set[int]] = {s.worker: set() for s in shares}
    healths: dict[int, ClientHealth] = {}
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S

    def take(msg: WorkerMessage) -> None:
        match msg:
            case Ready(worker=w):
                ready.add(w)
            case Record(worker=w, record=rec):
                seen[w].add(rec.index)
                records.append(rec)
                on_done(rec)
            case Done(worker=w, health=health):
                healths[w] = health

    while len(healths) + sum(1 for w, p in enumerate(procs) if w not in healths and p.exitcode is not None) < len(procs):
        try:
            take(await asyncio.to_thread(inbox.get, True, INBOX_WAIT_S))
        except queue.Empty:
            pass
        dead = sum(1 for w, p in enumerate(procs) if w not in ready and p.exitcode is not None)
        if not go.is_set() and len(ready) + dead == len(procs):  # the living start; the dead's share is lost
            start_at.value = time.perf_counter() + START_MARGIN_S
            go.set()
        if not go.is_set() and time.monotonic() > deadline:
            raise RuntimeError(f"load generator workers did not start within {READY_TIMEOUT_S:g} s")
        if should_stop():
            stop.set()
    while True:  # what arrived after the last check (a worker's last messages may still be on their way)
        try:
            take(inbox.get(timeout=INBOX_WAIT_S))
        except queue.Empty:
            break
    for share, proc in zip(shares, procs):
        if share.worker not in healths:
            proc.join(timeout=5)
            lost = _lost(point, share, seen[share.worker], proc.exitcode)
            for rec in lost:
                rec.start = rec.end = start_at.value
                on_done(rec)
            records.extend(lost)
    t0 = start_at.value
    t1 = max((r.end for r in records if r.ok), default=time.perf_counter())
    return records, t1 - t0, combined(list(healths.values()))

"""A benchmark run: its points run one after another, written to disk as they finish.

This module owns the run's lifecycle (prompts, warm-up, points, progress, stop, the server dying)
and its run folder: `summary.csv` (a row per point), `requests.csv` (a row per request),
`timeline.csv` (the server's /metrics over time) and `run.json` (`RunMeta`: what was run, where,
when, and how it ended), rewritten after every point so a crash loses nothing measured. The
network is `loadgen`'s, the definitions `metrics`', running it in a process of its own `child`'s;
this module knows nothing about the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator

from showcase import RUNS_DIR, client_version, roofline
from showcase.api import ServerAPI, ServerAPIError
from showcase.bench import capacity, compare, loadgen, metrics, prompts, samplers, wire, workers
from showcase.bench.capacity import Capacity, CapacityPlan
from showcase.bench.compare import Experiment, ExperimentPlan
from showcase.bench.folder import RunFolder, StorageError, Tables, read_model, read_tables, table
from showcase.bench.loadgen import Target
from showcase.bench.metrics import Flag
from showcase.bench.tables import FIELDS, RequestRow, Summary, TimelineRow
from showcase.bench.traffic import FileFacts
from showcase.bench.workload import Allowance, Point, SLOs, Workload, WorkloadError
from showcase.settings import ServerSettings

HEALTH_MISSES = 3  # consecutive refused /health checks (one every HEALTH_EVERY_S) that mean the server died
HEALTH_EVERY_S = 1.0  # between the watcher's /health checks
HEALTH_PATIENCE_S = 120.0  # a server that accepts connections but answers nothing this long is dead too


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    SERVER_DIED = "server_died"
    FAILED = "failed"


def efficiency(bound: roofline.Roofline, point: Point, output_throughput: float) -> float:
    """A point's output throughput over the bound; NaN for a file's requests: their lengths vary,
    and the bound is for one length."""
    if point.input_len is None or point.output_len is None:
        return math.nan
    return roofline.efficiency(bound, output_throughput, point.concurrency, point.input_len, point.output_len)


class Price(BaseModel):
    """What serving costs, as the user states it: dollars per GPU-hour, times the GPUs serving."""

    usd_per_gpu_hour: FiniteFloat = Field(gt=0)
    gpus: int = Field(1, ge=1)

    def per_m_output_tokens(self, output_tokens_per_s: float) -> float:
        """Dollars per million output tokens at this throughput (NaN without throughput)."""
        ok = output_tokens_per_s > 0 and math.isfinite(output_tokens_per_s)
        return self.usd_per_gpu_hour * self.gpus / 3600 / output_tokens_per_s * 1e6 if ok else math.nan

    def per_user_hour(self, users: int | None) -> float:
        """Dollars per chat user per hour, the deployment's hour shared by the users it serves at once."""
        return self.usd_per_gpu_hour * self.gpus / users if users else math.nan


class RunMeta(BaseModel):
    """run.json: what a run is (preset, workload, points, SLOs), where it runs, and how it ended."""

    model_config = ConfigDict(extra="ignore")  # earlier runs' files may carry more

    preset: str
    workload: Workload | None = None
    slos: SLOs = SLOs()
    points: tuple[Point, ...]
    device: str = "unknown"
    smoke_model: bool = False
    server_settings: ServerSettings | None = None  # None: an attached endpoint, its settings unknown
    preset_definition: dict | None = None
    # The served model on this device's measured bandwidth and compute (`showcase.measure`), for
    # each point's efficiency; None: this device was not measured.
    bound: roofline.Roofline | None = None
    price: Price | None = None  # for each point's cost; None: no price was given
    capacity: CapacityPlan | None = None  # a capacity search: its points are chosen as it goes
    experiment: ExperimentPlan | None = None  # an experiment: its points are its arms' repeats, in their order
    traffic: FileFacts | None = None  # the prompts file or trace the requests come from; None: synthetic
    endpoint: str = ""
    model: str = ""
    max_model_len: int | None = None
    vllm_version: str | None = None
    client_version: str | None = None
    started: str | None = None
    finished: str | None = None
    status: RunStatus = RunStatus.RUNNING
    message: str = ""

    @field_validator("bound", mode="before")
    @classmethod
    def _bound_of_earlier_runs(cls, v: object) -> object:
        """Runs before the one bound type wrote {shape, device, dtype}: the same bound on one device."""
        if isinstance(v, dict) and "device" in v and "gpu" not in v:
            return {"shape": v["shape"], "gpu": v["device"], "tp": 1, "dtype": v["dtype"]}
        return v


def run_meta(name: str, workload: Workload, slos: SLOs = SLOs(), allowance: Allowance | None = None,
             **facts: Any) -> RunMeta:
    """A run of `workload`'s points, named `name`; `facts`: more of `RunMeta`'s fields. With a
    `capacity` plan the points are chosen as the search goes: the plan is checked here, once,
    before any request (against `allowance` too, when a caller's applies)."""
    plan_ = facts.get("capacity")
    if plan_ is not None:
        capacity.check(plan_, workload, slos, allowance)
    return RunMeta(preset=name, workload=workload, slos=slos, points=() if plan_ else workload.points(), **facts)


class Progress(BaseModel):
    """Where a run is: point i of n, requests done of this point, output tokens/s so far."""

    model_config = ConfigDict(frozen=True)

    point: int  # 1-based
    points: int
    done: int
    total: int | None
    failed: int
    tokens_per_s: float | None  # None before the first reply
    message: str = ""
    folder: Path | None = None
    repeat: int = 0  # of the point's setting, 0-based
    repeats: int = 1
    arm: str | None = None  # an experiment's arm
    searching: bool = False  # a capacity search: its points are chosen as it goes, so there is no "of n"
    written: int = 0  # summary rows in the run folder so far: the app lists the run when this grows


@dataclass
class RunResult:
    folder: Path
    status: RunStatus
    message: str
    summary: pd.DataFrame
    requests: pd.DataFrame
    timeline: pd.DataFrame
    capacity: Capacity | None = None


def read_meta(folder: Path) -> RunMeta:
    """A run folder's run.json (`RunFolderError` when missing or damaged)."""
    return read_model(Path(folder) / "run.json", RunMeta)


def read_capacity(folder: Path) -> Capacity | None:
    """A run folder's capacity.json; None for a run that searched nothing."""
    path = Path(folder) / "capacity.json"
    return read_model(path, Capacity) if path.exists() else None


def read_experiment(folder: Path) -> Experiment | None:
    """A run folder's experiment.json; None for a run that was no experiment."""
    path = Path(folder) / "experiment.json"
    return read_model(path, Experiment) if path.exists() else None


def mark_ended(folder: Path, status: RunStatus, message: str) -> None:
    """Say in run.json how a run ended that could not say so itself (its process died); a run
    that did say is left as it is."""
    meta = read_meta(folder)
    if meta.status is RunStatus.RUNNING:
        RunFolder.reopen(folder).write_model("run.json", meta.model_copy(update={
            "finished": _now(), "status": status, "message": message}))


def _finite(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Stopped(Exception):
    """The run was stopped while a point was being prepared."""


PROGRESS_S = 0.1  # the least time between two progress reports while a point runs
HELD_SAMPLES = 3  # samples of /metrics inside a point's measured window before its count of requests is judged


class _Run:
    """One run in progress: its sessions, samplers, rows and folder. `execute` runs the points."""

    def __init__(self, meta: RunMeta, target: Target, session: wire.Pool,
                 side: ServerAPI, folder: RunFolder, on_progress: Callable[[Progress], None],
                 stop: threading.Event, todo: tuple[Point, ...], since_start_s: float = 0.0,
                 earlier: tuple[list[dict], list[dict], list[dict]] = ([], [], [])) -> None:
        self.meta, self.target, self.session, self.side, self.folder = meta, target, session, side, folder
        self.on_progress, self.stop, self.todo = on_progress, stop, todo
        # Times in the files count from the run's start, also for points added to an earlier folder.
        self.t0 = time.perf_counter() - since_start_s
        self.factory = prompts.PromptFactory(side, target)
        self.sampler = samplers.ServerSampler(side, self.t0)
        self.lag = samplers.LagSampler()
        self.dead = threading.Event()
        # New prompts every run: a server with prefix caching (vLLM's default) still holds the
        # prompts of an earlier run of the same preset and would answer them from its cache.
        self.salt = random.getrandbits(31)
        self.summary: list[Summary] = [Summary.of(r) for r in earlier[0]]
        self.requests = cast(list[RequestRow], list(earlier[1]))  # as written, read back
        # A file's rows continue through the file across points, also over an earlier folder's.
        sent = sum(1 for r in self.requests if not r.get("warmup") and pd.notna(r.get("row")))
        self.maker = prompts.PromptMaker(self.factory, self.salt, sent, meta.max_model_len)
        # A restarted server's counters start again: the earlier samples are kept apart.
        self.earlier_timeline = cast(list[TimelineRow], list(earlier[2]))
        self.capacity: Capacity | None = None
        self.current: tuple[Point, list[metrics.RequestRecord]] | None = None  # the point being measured
        self.total: int | None = None  # the point's measured requests, once its prompts are made

    def ended(self) -> bool:
        return self.stop.is_set() or self.dead.is_set()

    async def execute(self) -> tuple[RunStatus, str]:
        background = [asyncio.create_task(c) for c in (self.sampler.run(), self.lag.run(), self._watch_health())]
        status, message = RunStatus.COMPLETED, ""
        try:
            if self.meta.capacity is not None:
                await self._search(self.meta.capacity)
            else:
                for point in self.todo:
                    if self.ended():
                        break
                    await self._point(point)
        except _Stopped:
            pass  # said below: the stop is set
        except (WorkloadError, ServerAPIError) as exc:
            status, message = RunStatus.FAILED, str(exc)
            if not await samplers.answers(self.side):
                self.dead.set()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if self.dead.is_set():
            return RunStatus.SERVER_DIED, "The server stopped answering /health; the run ended there."
        if self.stop.is_set() and status is RunStatus.COMPLETED:
            return RunStatus.STOPPED, "Stopped by the user."
        return status, message

    async def _watch_health(self) -> None:
        """A server is dead when it refuses /health `HEALTH_MISSES` times in a row, or has not answered
        at all for `HEALTH_PATIENCE_S` (a paused or swamped server that answers again goes on)."""
        misses, silent_since = 0, None
        while misses < HEALTH_MISSES:
            answer = await self.side.health()
            misses = misses + 1 if answer is False else 0
            if answer == "silent":
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since >= HEALTH_PATIENCE_S:
                    break
            else:
                silent_since = None
            await asyncio.sleep(HEALTH_EVERY_S)
        self.dead.set()

    async def _search(self, plan: CapacityPlan) -> None:
        """Probe levels as the search asks, each repeat an ordinary point; capacity.json after each
        level. With repeats, a level passes when the upper end of each SLO'd percentile's interval
        over its repeats meets the target (`capacity.judge_repeats`)."""
        search = capacity.Search(plan.upper)
        workload = self.meta.workload
        assert workload is not None  # a search has a workload to scale
        repeats = workload.repeats
        self.capacity = cap = Capacity(plan=plan, slos=self.meta.slos, percentile=plan.percentile, repeats=repeats)
        while (level := search.next()) is not None and not self.ended():
            values, rows, indices = [], [], []
            for k in range(repeats):
                point = plan.point(workload, level, len(self.meta.points)).model_copy(update={"repeat": k})
                self.meta = self.meta.model_copy(update={"points": (*self.meta.points, point)})
                self.folder.write_model("run.json", self.meta)
                records, row = await self._point(point)
                values.append(metrics.latency_percentiles(records, plan.percentile))
                rows.append(row)
                indices.append(point.index)
                if self.ended():
                    break
            if self.ended():  # a level cut short by a stop or a dead server is no verdict
                break
            probe = capacity.judge_repeats(level, plan, values, [r.completed for r in rows],
                                           [r.failed for r in rows], indices, self.meta.slos)
            if probe.passed and any(Flag.UNDER_LOADED.value in r.flags.split(";") for r in rows):
                # A level whose load was never really applied is no pass, whatever its latencies.
                probe = probe.model_copy(update={"passed": False, "binding": "under_loaded"})
            search.record(level, probe.passed)
            cap.probes.append(probe)
            self._answer(cap, search, done=search.next() is None)

    def _answer(self, cap: Capacity, search: capacity.Search, done: bool) -> None:
        best = next((p for p in cap.probes if p.level == search.max_passing), None)
        fail = next((p for p in cap.probes if p.level == search.min_failing), None)
        row = next((r for r in self.summary if r.point == best.point), None) if best else None
        cap.max_passing, cap.min_failing = (best.load if best else None), (fail.load if fail else None)
        cap.binding_slo, cap.done = (fail.binding if fail else None), done
        cap.reason = capacity.missed(fail, cap.plan) if fail and not best else ""
        cap.usd_per_m_output_tokens = _finite(row.usd_per_m_output_tokens) if row else None
        cap.usd_per_user_hour = _finite(row.usd_per_user_hour) if row else None
        cap.sentence = capacity.sentence(cap)
        self.folder.write_model("capacity.json", cap)

    async def _prompts(self, point: Point) -> tuple[list[loadgen.Prompt], list[loadgen.Prompt]]:
        """The point's measured prompts and its warm-up prompts (`_Stopped` when the run is stopped meanwhile)."""
        what = (f"reading {point.dataset or point.trace}" if point.from_file
                else f"building prompts of {point.input_len} tokens")
        self._progress(point, 0, 0, 0, what)
        built: list = []

        async def build() -> None:
            built.append(await self.maker.prompts(point))

        if await loadgen.stoppable(build(), self.ended, grace_s=0):
            raise _Stopped()
        return built[0]

    async def _check_histories(self, records: list[metrics.RequestRecord]) -> None:
        """What each chat turn's history should cost as a prompt, asked of the server's tokenizer
        after the point (off the clock); the messages are dropped then."""
        turns = [(r, r.messages) for r in records if r.messages is not None]
        counts: list[int] = []

        async def ask() -> None:
            counts.extend(await asyncio.gather(*(self.factory.count_messages(m) for _, m in turns)))

        await loadgen.stoppable(ask(), self.ended, grace_s=0)  # stopped: the expected counts stay unknown
        for i, (rec, _) in enumerate(turns):
            rec.expected_prompt_tokens = counts[i] if i < len(counts) else None
            rec.messages, rec.reply = None, None

    def _progress(self, point: Point, done: int, failed: int, tokens: int, message: str = "",
                  started: float | None = None) -> None:
        rate = tokens / max(1e-9, time.perf_counter() - started) if started is not None and done else None
        repeats = self.meta.workload.repeats if self.meta.workload else 1
        if self.meta.experiment is not None:
            repeats = max(p.repeat for p in self.meta.points) + 1
        self.on_progress(Progress(point=point.index + 1, points=len(self.meta.points), done=done,
                                  total=self.total if self.total is not None else point.num_requests, failed=failed, tokens_per_s=rate, message=message,
                                  folder=self.folder.path, repeat=point.repeat, repeats=repeats, arm=point.arm,
                                  searching=self.meta.capacity is not None, written=len(self.summary)))

    async def _point(self, point: Point) -> tuple[list[metrics.RequestRecord], Summary]:
        """Measure one point; its records and its summary row (also written)."""
        self.sampler.point = -1  # building prompts belongs to no point
        self.total = None
        todo, warm = await self._prompts(point)
        self.total = len(todo) if point.chat is None and point.duration_s is None else None
        chats = await self.maker.conversations(point) if point.chat is not None else None
        self.sampler.point = point.index
        tally = {"done": 0, "failed": 0, "tokens": 0}  # running totals: this runs per request
        said = [0.0]
        started = time.perf_counter()

        def on_done(rec: metrics.RequestRecord) -> None:
            if not rec.warmup:
                tally["done"] += 1
                tally["failed"] += not rec.ok
                tally["tokens"] += (rec.output_tokens or 0) if rec.ok else 0
                # Said at most every PROGRESS_S, and at the last request: a progress bar redrawn per
                # request cost a fifth of the client's CPU at 256 streams, inside the measurement.
                now = time.perf_counter()
                if now - said[0] >= PROGRESS_S or tally["done"] == self.total:
                    said[0] = now
                    self._progress(point, tally["done"], tally["failed"], tally["tokens"], started=started)

        n = point.workers or workers.auto_workers(point)
        with loadgen.frozen_heap():
            self.lag.begin()
            self.current = (point, [])
            warmed = await loadgen.warm_up(self.session, self.target, point, warm, on_done, self.ended)
            before = await samplers.server_times(self.side)  # the server's own clock, from here
            if n > 1:  # the measured requests over worker processes
                records, duration, health = await workers.run_point(self.target, point, todo, on_done, self.ended,
                                                                    n, chats)
            else:
                records, duration = await loadgen.run_point(self.session, self.target, point, todo, [], on_done,
                                                            self.ended, conversations=chats,
                                                            sink=self.current[1])
                health = self.lag.take()
            records = warmed + records
        self.current = None
        after = await samplers.server_times_after(self.side, before, sum(r.ok for r in records if not r.warmup))
        await self._check_histories(records)
        if any((r.error or "").startswith("connection") for r in records) and not await samplers.answers(self.side):
            self.dead.set()
        measured = [r for r in records if not r.warmup]
        # A file's rows came round again, or a duration's pool of prompts was sent more than once.
        reused = self.maker.cycled or (point.chat is None and len(measured) > len(todo))
        flags = {Flag.PROMPTS_REUSED} if reused else set()
        flags |= {Flag.STOPPED} if self.stop.is_set() else set()
        flags |= {Flag.SERVER_DIED} if self.dead.is_set() else set()
        timeline = [r for r in self.sampler.rows if r["point"] == point.index]
        # The most requests the server held (running + waiting) while this point ran: more than the
        # point sends means others (the app's chats, another client) shared the server.
        busiest = max((r.get("running", 0) + r.get("waiting", 0) for r in timeline), default=math.nan)
        flags |= {Flag.SHARED_SERVER} if point.concurrency and busiest > point.concurrency else set()
        flags |= {Flag.UNDER_LOADED} if metrics.server_under_loaded(point, self._held(measured, timeline)) else set()
        flags |= {Flag.OVERSATURATED} if self._oversaturated(point, records, timeline) else set()
        row = metrics.summarize(point, records, duration, self.meta.slos, health, flags, (before, after))
        row = dataclasses.replace(row, server_requests_max=busiest, **self._extras(point, records, row, timeline))
        self.summary.append(row)
        self.requests.extend(metrics.request_rows(records, self.t0))
        self.write()
        return records, row

    def _held(self, measured: list[metrics.RequestRecord], timeline: list[TimelineRow]) -> float:
        """The most requests (running + waiting) the server held in the samples taken while the
        point's measured requests ran; NaN with fewer than `HELD_SAMPLES` of them (a short point's
        one sample may fall between two requests)."""
        sent = [r for r in measured if math.isfinite(r.start) and math.isfinite(r.end)]
        if not sent:
            return math.nan
        t0, t1 = min(r.start for r in sent) - self.t0, max(r.end for r in sent) - self.t0
        inside = [r.get("running", 0) + r.get("waiting", 0) for r in timeline if t0 <= r["t_s"] <= t1]
        return max(inside) if len(inside) >= HELD_SAMPLES else math.nan

    @staticmethod
    def _oversaturated(point: Point, records: list[metrics.RequestRecord], timeline: list[TimelineRow]) -> bool:
        """The server's queue grew through the point, or TTFT rose (not judged for chat users,
        whose prompts grow turn by turn by design)."""
        waiting = [r.get("waiting", math.nan) for r in timeline]
        done = sorted((r for r in records if not r.warmup and r.ok and r.chunk_times), key=lambda r: r.start)
        ttfts = [(r.chunk_times[0] - r.start) * 1000 for r in done] if point.chat is None else []
        return metrics.oversaturated(ttfts, [w for w in waiting if math.isfinite(w)])

    def _extras(self, point: Point, records: list[metrics.RequestRecord], row: Summary,
                timeline: list[TimelineRow]) -> dict[str, Any]:
        """What a point's row adds beyond the requests' own numbers: efficiency against this device's
        bound, cost at the stated price, the prefix cache's share of the prompts."""
        done = [r for r in records if not r.warmup and r.ok]
        cached = [r.cached_tokens for r in done if r.cached_tokens is not None]
        prompt = sum(r.prompt_tokens or 0 for r in done)
        price = self.meta.price
        trace = self.maker.trace(point) if point.trace is not None else None
        span = trace.span_s * point.time_scale if trace else 0.0
        # A trace asks its mean rate; its ids say what a prefix cache could serve.
        asked = {"request_rate": (len(trace.rows) - 1) / span if span > 0 else math.inf} if trace else {}
        return asked | {
            "trace_cached_share": trace.implied_cached_share() if trace else math.nan,
            "efficiency": efficiency(self.meta.bound, point, row.output_throughput) if self.meta.bound else math.nan,
            "usd_per_m_output_tokens": price.per_m_output_tokens(row.output_throughput) if price else math.nan,
            "usd_per_user_hour": price.per_user_hour(point.users) if price and point.users else math.nan,
            "cached_prompt_share": sum(cached) / prompt if done and len(cached) == len(done) and prompt else math.nan,
            "prefix_cache_hit_rate": samplers.hit_rate(timeline[0], timeline[-1]) if len(timeline) > 1 else math.nan,
        }

    def keep_partial(self) -> None:
        """The point in progress when the run was aborted: its finished requests, as a stopped point."""
        if self.current is None:
            return
        point, records = self.current
        self.current = None
        measured = [r for r in records if not r.warmup]
        if not measured:
            return
        duration = max(r.end for r in measured) - min(r.start for r in measured)
        self.summary.append(metrics.summarize(point, records, duration, self.meta.slos, flags={Flag.STOPPED}))
        self.requests.extend(metrics.request_rows(records, self.t0))

    def write(self) -> None:
        """The tables, all or none (a point's summary row never without its requests)."""
        rows = [r.row() for r in self.summary]
        aggregated = compare.aggregate(pd.DataFrame(rows, columns=list(FIELDS)))
        self.folder.write_tables({"summary.csv": rows, "requests.csv": self.requests,
                                  "timeline.csv": self.earlier_timeline + self.sampler.rows,
                                  "aggregate.csv": aggregated.to_dict("records")})

    def tables(self) -> Tables:
        """The summary, requests and timeline as written, from memory (`folder.table`)."""
        return (table("summary.csv", [r.row() for r in self.summary]), table("requests.csv", self.requests),
                table("timeline.csv", self.earlier_timeline + self.sampler.rows))


async def run(
    meta: RunMeta,
    target: Target,
    out_root: Path = RUNS_DIR,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop: threading.Event | None = None,
    resume: Path | None = None,
    only: tuple[int, ...] | None = None,
    final: bool = True,
) -> RunResult:
    """Run every point of `meta` against `target`; never raises for failed requests.

    `resume`: add the points to this existing run folder (its earlier rows kept) instead of a new
    one; `only`: run just the points of these indices; `final`: whether this call ends the run (an
    experiment runs each arm's repeats by a call of their own, the run staying `running` between).
    Raises `WorkloadError` before any request when the workload cannot fit the server.
    """
    todo = tuple(p for p in meta.points if only is None or p.index in only)
    # Measured requests go on pooled connections; everything else (prompt building, health,
    # /metrics) on new ones, so it neither leaves idle connections in the pool nor meets stale ones.
    async with loadgen.measuring_session() as session, target.api() as side:
        max_len = await side.max_model_len(target.model)
        first = [meta.capacity.point(meta.workload, 1, 0)] if meta.capacity and meta.workload else []
        loadgen.check_fits([*todo, *first], max_len)
        top = meta.capacity.upper if meta.capacity and meta.capacity.by != "rate" else 0
        loadgen.allow_open_files(max([top, *(p.concurrency or 0 for p in todo)]))
        started, since = _now(), 0.0
        earlier: tuple[list[dict], list[dict], list[dict]] = ([], [], [])
        if resume is not None:
            folder = RunFolder.reopen(resume)
            started = read_meta(resume).started or started
            since = max(0.0, (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds())
            earlier = tuple(t.to_dict("records") for t in read_tables(resume))
        else:
            folder = RunFolder(out_root, meta.preset)
        meta = meta.model_copy(update={
            "endpoint": target.base_url, "model": target.model, "max_model_len": max_len, "started": started,
            "vllm_version": await side.version(), "client_version": client_version(),
            "status": RunStatus.RUNNING})
        folder.write_model("run.json", meta)
        job = _Run(meta, target, session, side, folder, on_progress, stop or threading.Event(), todo, since, earlier)
        try:
            status, message = await job.execute()
        except StorageError as exc:
            status, message = RunStatus.FAILED, str(exc)
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            job.keep_partial()
            status, message = RunStatus.STOPPED, "Interrupted; the requests that had finished are kept."
            raise
        except BaseException as exc:  # keep what was measured, say what broke, and let it surface
            status, message = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with contextlib.suppress(StorageError):  # the disk that failed may still take run.json's ending
                job.write()
            if final or status is not RunStatus.COMPLETED:
                with contextlib.suppress(StorageError):
                    folder.write_model("run.json", job.meta.model_copy(update={"finished": _now(), "status": status,
                                                                   "message": message}))
    return RunResult(folder.path, status, message, *job.tables(), job.capacity)


def run_sync(meta: RunMeta, target: Target, *args, signals: bool = False, **kwargs) -> RunResult:
    """`run` on a fresh event loop: uvloop where installed (vLLM depends on it), as its faster
    wake-ups keep the client's own timing error small at high concurrency.

    `signals` (the command line): SIGTERM and a first Ctrl-C stop the run as its stop event does
    (the requests in flight get a few seconds, what was measured is kept, the run says `stopped`);
    a second Ctrl-C aborts at once, still keeping the requests that had finished, and raises
    `KeyboardInterrupt`."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    stop = kwargs.get("stop") or (args[2] if len(args) > 2 else None) or threading.Event()
    kwargs["stop"] = stop
    args = args[:2]

    async def main() -> RunResult:
        if not signals:
            return await run(meta, target, *args, **kwargs)
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None

        def on_signal(signum: int) -> None:
            if signum == signal.SIGINT and stop.is_set():
                task.cancel()  # the second Ctrl-C: abort now
                return
            stop.set()
            again = "; Ctrl-C again to abort" if signum == signal.SIGINT else ""
            print(f"\nstopping: the requests in flight get {loadgen.STOP_GRACE_S:g} s, what was measured is kept"
                  f"{again}", file=sys.stderr, flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await run(meta, target, *args, **kwargs)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(main())
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

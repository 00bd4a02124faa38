"""A benchmark run: points from a workload, run one after another, written to disk as they finish.

This module owns the run's lifecycle (plan, prompts, warm-up, points, progress, stop, the server
dying) and its run folder: `summary.csv` (a row per point), `requests.csv` (a row per request),
`timeline.csv` (the server's /metrics over time) and `run.json` (what was run, where, when, and
how it ended), rewritten after every point so a crash loses nothing measured. `run_in_process`
runs it in a child process for callers that must not share its GIL (the app). The network is in
`loadgen.py`, the definitions in `metrics.py`; this module knows nothing about the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pandas as pd

import loadgen
import metrics
from loadgen import Point, Target, WorkloadError
from presets import Workload

RUNS_DIR = Path(__file__).resolve().parent / "runs"
PROMPT_POOL = 256  # distinct prompts per point in duration mode; more requests reuse them (flagged)


@dataclass(frozen=True)
class RunPlan:
    name: str
    points: tuple[Point, ...]
    slos: metrics.SLOs = metrics.SLOs()
    workload: dict = field(default_factory=dict)


def plan(name: str, workload: Workload, slos: metrics.SLOs = metrics.SLOs()) -> RunPlan:
    """Every combination of input length × concurrency (× rate) is a point, in that order."""
    rates = workload.request_rate or [None]
    points = []
    for input_len in workload.input_len:
        for rate in rates:
            for conc in workload.concurrency:
                points.append(Point(
                    index=len(points), input_len=input_len, output_len=workload.output_len,
                    concurrency=conc, request_rate=rate, burstiness=workload.burstiness,
                    num_requests=workload.num_requests, duration_s=workload.duration_s,
                    warmup_requests=workload.warmup_requests, timeout_s=workload.timeout_s,
                    stream=workload.stream, shared_prefix_len=workload.shared_prefix_len,
                ))
    return RunPlan(name, tuple(points), slos, workload.model_dump())


@dataclass(frozen=True)
class Progress:
    """Where a run is: point i of n, requests done of this point, output tokens/s so far."""

    point: int  # 1-based
    points: int
    done: int
    total: int | None
    failed: int
    tokens_per_s: float
    message: str = ""
    folder: Path | None = None


@dataclass
class RunResult:
    folder: Path
    status: str  # completed | stopped | server_died | failed
    message: str
    summary: pd.DataFrame
    requests: pd.DataFrame
    timeline: pd.DataFrame


class RunFolder:
    """The files of one run; every write replaces a whole file so readers never see half a row."""

    def __init__(self, root: Path, name: str) -> None:
        root = Path(root)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = root / f"{stamp}-{name}"
        suffix = 1
        while self.path.exists():
            suffix += 1
            self.path = root / f"{stamp}-{name}-{suffix}"
        self.path.mkdir(parents=True)

    def _write(self, name: str, text: str) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.path / name)

    def write_json(self, meta: dict) -> None:
        self._write("run.json", json.dumps(meta, indent=2, default=str))

    def write_csv(self, name: str, df: pd.DataFrame) -> None:
        self._write(name, df.to_csv(index=False))


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A run folder's summary, requests and timeline; one not written yet, or without rows, is empty."""

    def read(name: str) -> pd.DataFrame:
        try:
            return pd.read_csv(Path(folder) / name)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame()

    return read("summary.csv"), read("requests.csv"), read("timeline.csv")


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While a point is measured, the garbage collector sees only what the point allocates.

    A full collection stops the event loop while it walks every object: about 40 ms in a bare
    benchmark process, 0.5 s in one that also holds a web app, and each stop lands in the latencies
    of the requests in flight. What is alive before the point is frozen out of collections (as
    AIPerf and vLLM's own servers do); collection stays on, so garbage of long points is still freed.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def _server_facts(session: aiohttp.ClientSession, target: Target) -> dict:
    facts: dict = {}
    try:
        async with session.get(f"{target.base_url}/version", headers=target.headers) as resp:
            if resp.status == 200:
                facts["vllm_version"] = (await resp.json()).get("version")
    except (aiohttp.ClientError, ValueError):
        pass
    return facts


async def _health(session: aiohttp.ClientSession, target: Target) -> bool | None:
    """True/False for a vLLM /health; None when the server has no such route."""
    try:
        async with session.get(f"{target.base_url}/health", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return None if resp.status == 404 else resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _answers(side: aiohttp.ClientSession, target: Target, tries: int = 2) -> bool:
    """Whether the server still answers /health on a new connection (a few failed requests do not
    make a dead server); a server without the route counts as answering."""
    for i in range(tries):
        if await _health(side, target) is not False:
            return True
        if i + 1 < tries:
            await asyncio.sleep(0.5)
    return False


async def run(
    run_plan: RunPlan,
    target: Target,
    meta: dict,
    out_root: Path = RUNS_DIR,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Run every point of the plan against `target`; never raises for failed requests.

    Raises `WorkloadError` before any request when the workload cannot fit the server.
    """
    stop = stop or threading.Event()
    # Measured requests go on pooled connections; everything else (prompt building, health,
    # /metrics) on new ones, so it neither leaves idle connections in the pool nor meets stale ones.
    async with loadgen.measuring_session() as session, loadgen.side_session() as side:
        max_len = await loadgen.server_max_model_len(side, target)
        loadgen.check_fits(list(run_plan.points), max_len)
        folder = RunFolder(out_root, run_plan.name)
        info = meta | await _server_facts(side, target) | {
            "preset": run_plan.name, "workload": run_plan.workload, "slos": asdict(run_plan.slos),
            "endpoint": target.base_url, "model": target.model, "max_model_len": max_len,
            "started": _now(), "finished": None, "status": "running", "message": "",
            "points": [asdict(p) for p in run_plan.points],
        }
        folder.write_json(info)
        t0 = time.perf_counter()
        factory = loadgen.PromptFactory(side, target)
        server = loadgen.ServerSampler(side, target, t0)
        lag = loadgen.LagSampler()
        dead = threading.Event()
        # New prompts every run: a server with prefix caching (vLLM's default) still holds the
        # prompts of an earlier run of the same preset and would answer them from its cache.
        salt = random.getrandbits(31)

        async def watch_health() -> None:
            misses = 0
            while True:
                ok = await _health(side, target)
                misses = misses + 1 if ok is False else 0
                if misses >= 3:
                    dead.set()
                    return
                await asyncio.sleep(1.0)

        background = [asyncio.create_task(c.run()) for c in (server, lag)]
        background.append(asyncio.create_task(watch_health()))
        summary_rows: list[dict] = []
        request_rows: list[dict] = []
        status, message = "completed", ""
        try:
            for point in run_plan.points:
                if stop.is_set() or dead.is_set():
                    break
                on_progress(Progress(point.index + 1, len(run_plan.points), 0, point.num_requests, 0, math.nan,
                                     f"building prompts of {point.input_len} tokens", folder.path))
                count = point.num_requests or (
                    min(PROMPT_POOL, int(point.request_rate * point.duration_s * 1.2) + 10)
                    if point.request_rate else PROMPT_POOL
                )
                seeds = [hash((salt, point.index, i)) & 0x7FFFFFFF for i in range(count)]
                warm_seeds = [hash((salt, point.index, -1 - i)) & 0x7FFFFFFF for i in range(point.warmup_requests)]
                prompts = await factory.build(point.input_len, seeds + warm_seeds, point.shared_prefix_len)
                prompts, warm = prompts[:count], prompts[count:]
                server.point = point.index
                tally = {"done": 0, "failed": 0, "tokens": 0}  # running totals: this runs per request
                started = time.perf_counter()

                def on_done(rec: metrics.RequestRecord, point=point, tally=tally, started=started) -> None:
                    if rec.warmup:
                        return
                    tally["done"] += 1
                    tally["failed"] += not rec.ok
                    tally["tokens"] += (rec.output_tokens or 0) if rec.ok else 0
                    on_progress(Progress(point.index + 1, len(run_plan.points), tally["done"], point.num_requests,
                                         tally["failed"], tally["tokens"] / max(1e-9, time.perf_counter() - started),
                                         folder=folder.path))

                with frozen_heap():
                    lag.begin()
                    records, duration = await loadgen.run_point(
                        session, target, point, prompts, warm, on_done, lambda: stop.is_set() or dead.is_set(),
                        fresh=side,
                    )
                    health = lag.take()
                if any((r.error or "").startswith("connection") for r in records) and not await _answers(side, target):
                    dead.set()
                row = metrics.summarize(
                    metrics.PointInfo(point.index, point.input_len, point.output_len, point.concurrency,
                                      point.request_rate),
                    records, duration, run_plan.slos, health, server_died=dead.is_set(),
                )
                if len([r for r in records if not r.warmup]) > len(prompts):
                    row["flags"] = ";".join(filter(None, [row["flags"], "prompts_reused"]))
                if stop.is_set():
                    row["flags"] = ";".join(filter(None, [row["flags"], "stopped"]))
                summary_rows.append(row)
                request_rows.extend(metrics.request_rows(records, t0))
                folder.write_csv("summary.csv", pd.DataFrame(summary_rows))
                folder.write_csv("requests.csv", pd.DataFrame(request_rows))
                folder.write_csv("timeline.csv", pd.DataFrame(server.rows))
        except WorkloadError as exc:
            status, message = "failed", str(exc)
            if not await _answers(side, target):
                dead.set()
        except Exception as exc:  # keep what was measured, say what broke
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if dead.is_set():
                status, message = "server_died", "The server stopped answering /health; the run ended there."
            elif stop.is_set() and status == "completed":
                status, message = "stopped", "Stopped by the user."
            info |= {"finished": _now(), "status": status, "message": message}
            folder.write_json(info)
            folder.write_csv("timeline.csv", pd.DataFrame(server.rows))
    return RunResult(folder.path, status, message, pd.DataFrame(summary_rows), pd.DataFrame(request_rows),
                     pd.DataFrame(server.rows))


def run_sync(*args, **kwargs) -> RunResult:
    """`run` on a fresh event loop: uvloop where installed (vLLM depends on it), as its faster
    wake-ups keep the client's own timing error small at high concurrency."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run(*args, **kwargs))


# -- the run in a process of its own ----------------------------------------------------------------------------


class RunProcessError(Exception):
    """The run's own process failed or died; the message says how and where its log is."""


def run_in_process(
    run_plan: RunPlan,
    target: Target,
    meta: dict,
    out_root: Path = RUNS_DIR,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop: threading.Event | None = None,
    log_path: Path | None = None,
    cores: tuple[int, ...] | None = None,
) -> RunResult:
    """`run` in a child process: `python bench.py --child`, the job on its stdin, progress back as
    JSON lines on its stdout, its log in `log_path`.

    A web UI in the caller's process would otherwise share the load generator's GIL and event loop
    timing: its renders would land in the measured latencies, and the run would slow the UI. If
    the caller dies, the child's stdin closes and the run stops there, its files kept. `cores`:
    the child runs on these only (the load generator's share of `engine.CoreSplit`).
    """
    stop = stop or threading.Event()
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path or out_root / "bench-process.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    job = {"plan": asdict(run_plan), "target": asdict(target), "meta": meta, "out_root": str(out_root),
           "cores": list(cores) if cores else None}
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job, default=str) + "\n")
    proc.stdin.flush()

    def pass_stop_on() -> None:
        while proc.poll() is None:
            if stop.wait(0.2):
                try:
                    proc.stdin.write("stop\n")
                    proc.stdin.flush()
                except (BrokenPipeError, ValueError):
                    pass
                return

    threading.Thread(target=pass_stop_on, daemon=True, name="bench-stop").start()
    outcome: dict = {}
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if "progress" in msg:
                p = msg["progress"]  # json carries NaN (tokens/s before the first reply) as it is
                on_progress(Progress(**(p | {"folder": Path(p["folder"]) if p["folder"] else None})))
            else:
                outcome = msg
    finally:
        proc.stdin.close()  # if we are here by an exception, end of file stops the child
        code = proc.wait()
    if "result" in outcome:
        folder = Path(outcome["result"]["folder"])
        return RunResult(folder, outcome["result"]["status"], outcome["result"]["message"], *read_tables(folder))
    if outcome.get("error", {}).get("kind") == "workload":
        raise WorkloadError(outcome["error"]["message"])
    detail = outcome.get("error", {}).get("message") or f"it exited with code {code} before finishing"
    raise RunProcessError(f"The benchmark process failed: {detail} (log: {log_path}).")


def _child() -> None:
    """The child's side of `run_in_process`; stdout carries only the JSON lines."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log, not into the protocol
    job = json.loads(sys.stdin.readline())
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.readline()  # "stop", or end of file when the caller is gone
        stop.set()

    def send(msg: dict) -> None:
        try:
            out.write(json.dumps(msg, default=str) + "\n")
        except OSError:  # the caller is gone: nobody to tell, and the run stops
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    if job.get("cores"):
        os.sched_setaffinity(0, job["cores"])
        print(f"load generator pinned to core(s) {job['cores']}", file=sys.stderr, flush=True)
    p = job["plan"]
    run_plan = RunPlan(p["name"], tuple(Point(**pt) for pt in p["points"]), metrics.SLOs(**p["slos"]), p["workload"])
    last_sent = 0.0

    def on_progress(prog: Progress) -> None:
        # At most a few lines a second from inside the measuring loop; a new point always shows.
        nonlocal last_sent
        now = time.monotonic()
        if prog.message or now - last_sent >= 0.25:
            last_sent = now
            send({"progress": asdict(prog)})

    try:
        result = run_sync(run_plan, Target(**job["target"]), job["meta"], Path(job["out_root"]), on_progress, stop)
    except WorkloadError as exc:
        send({"error": {"kind": "workload", "message": str(exc)}})
        return
    except Exception as exc:
        send({"error": {"kind": "crash", "message": f"{type(exc).__name__}: {exc}"}})
        raise
    send({"result": {"folder": str(result.folder), "status": result.status, "message": result.message}})


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()

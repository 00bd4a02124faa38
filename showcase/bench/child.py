"""A benchmark run in a process of its own: `python -m showcase.bench.child`.

This module owns the protocol between a caller (the app) and the run's own process: the job on
the child's stdin, then `stop` or end of file; typed messages back on its stdout, one JSON line
each (`encode` and `decode` are the only place they are converted); the child's log file; and
the child's cores. A web UI in the caller's process would otherwise share the load generator's
GIL and event loop timing: its renders would land in the measured latencies, and the run would
slow the UI. If the caller dies, the child's stdin closes and the run stops there, its files
kept. What a run does is `run`'s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from showcase import ROOT, RUNS_DIR
from showcase.api import ServerAPIError
from showcase.bench.folder import read_tables
from showcase.bench.loadgen import Target
from showcase.bench.run import Progress, RunMeta, RunResult, RunStatus, mark_ended, run_sync
from showcase.bench.workload import WorkloadError
from showcase.errors import UserError

PROGRESS_INTERVAL_S = 0.25  # at most a few progress lines a second from inside the measuring loop


class RunProcessError(UserError):
    """The run's own process failed or died; the message says how and where its log is. `folder`:
    the run's folder when it had one (what was measured before is kept there)."""

    def __init__(self, message: str, folder: Path | None = None) -> None:
        super().__init__(message)
        self.folder = folder


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Job(_Message):
    meta: RunMeta
    target: Target
    out_root: Path
    cores: tuple[int, ...] | None = None
    resume: Path | None = None  # `run`'s: add to this run folder
    only: tuple[int, ...] | None = None  # `run`'s: just these points
    final: bool = True


class ProgressMessage(_Message):
    kind: Literal["progress"] = "progress"
    progress: Progress


class ResultMessage(_Message):
    kind: Literal["result"] = "result"
    folder: Path
    status: RunStatus
    message: str


class ErrorMessage(_Message):
    kind: Literal["workload", "crash"]
    message: str


Message = ProgressMessage | ResultMessage | ErrorMessage
_MESSAGE = TypeAdapter(Message)


def encode(msg: _Message) -> str:
    return msg.model_dump_json() + "\n"


def decode(line: str) -> Message:
    return _MESSAGE.validate_json(line)


def run_in_process(
    meta: RunMeta,
    target: Target,
    out_root: Path = RUNS_DIR,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop: threading.Event | None = None,
    log_path: Path | None = None,
    cores: tuple[int, ...] | None = None,
    resume: Path | None = None,
    only: tuple[int, ...] | None = None,
    final: bool = True,
) -> RunResult:
    """`run` in a child process, its log in `log_path`; `cores`: the child runs on these only
    (the load generator's share of `cores.CoreSplit`); `resume`, `only`, `final`: as `run`'s."""
    stop = stop or threading.Event()
    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path or out_root / "bench-process.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "showcase.bench.child"], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
    assert proc.stdin is not None and proc.stdout is not None  # both piped
    proc.stdin.write(encode(Job(meta=meta, target=target, out_root=out_root, cores=cores, resume=resume, only=only,
                                final=final)))
    proc.stdin.flush()
    threading.Thread(target=_pass_stop_on, args=(proc, stop), daemon=True, name="bench-stop").start()
    outcome: ResultMessage | ErrorMessage | None = None
    folder: Path | None = None
    try:
        for line in proc.stdout:
            msg = decode(line)
            if isinstance(msg, ProgressMessage):
                folder = msg.progress.folder or folder
                on_progress(msg.progress)
            else:
                outcome = msg
    finally:
        proc.stdin.close()  # if we are here by an exception, end of file stops the child
        code = proc.wait()
    if isinstance(outcome, ResultMessage):
        return RunResult(outcome.folder, outcome.status, outcome.message, *read_tables(outcome.folder))
    if isinstance(outcome, ErrorMessage) and outcome.kind == "workload":
        raise WorkloadError(outcome.message)
    detail = outcome.message if outcome else f"it exited with code {code} before finishing"
    if folder is not None:
        mark_ended(folder, RunStatus.FAILED, f"The benchmark process failed: {detail}; what it measured is kept.")
    raise RunProcessError(f"The benchmark process failed: {detail} (log: {log_path}).", folder)


def _pass_stop_on(proc: subprocess.Popen, stop: threading.Event) -> None:
    while proc.poll() is None:
        if stop.wait(0.2):
            try:
                assert proc.stdin is not None
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # the child is gone or its stdin closed: nothing to stop
                pass
            return


def main() -> None:
    """The child's side; stdout carries only the protocol's lines."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log, not into the protocol
    job = Job.model_validate_json(sys.stdin.readline())
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.readline()  # "stop", or end of file when the caller is gone
        stop.set()

    def send(msg: _Message) -> None:
        try:
            out.write(encode(msg))
        except OSError:  # the caller is gone: nobody to tell, and the run stops
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    if job.cores:
        os.sched_setaffinity(0, job.cores)
        print(f"load generator pinned to core(s) {list(job.cores)}", file=sys.stderr, flush=True)
    last_sent = 0.0

    def on_progress(prog: Progress) -> None:
        nonlocal last_sent  # a new point always shows
        if prog.message or time.monotonic() - last_sent >= PROGRESS_INTERVAL_S:
            last_sent = time.monotonic()
            send(ProgressMessage(progress=prog))

    try:
        result = run_sync(job.meta, job.target, job.out_root, on_progress, stop, resume=job.resume, only=job.only,
                          final=job.final)
    except (WorkloadError, ServerAPIError) as exc:
        send(ErrorMessage(kind="workload", message=str(exc)))
        return
    except Exception as exc:
        send(ErrorMessage(kind="crash", message=f"{type(exc).__name__}: {exc}"))
        raise
    send(ResultMessage(folder=result.folder, status=result.status, message=result.message))


if __name__ == "__main__":
    main()

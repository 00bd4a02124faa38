"""Benchmarks inside the app: one at a time for everybody, and the runs kept on disk.

This module owns the app-wide benchmark slot: starting a preset (`prepare_run`, the pre-flight
fit check, a server restart when the preset's settings differ, then the run in a process of its
own, watched from a background thread), stopping it, waiting for it, and a snapshot of its
progress that every visitor sees. It also lists earlier run folders and loads uploaded summary
CSVs for comparison. It knows nothing about Gradio.
"""

from __future__ import annotations

import atexit
import enum
import threading
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pandas as pd

from showcase import RUNS_DIR, cores, experiment, server
from showcase.bench import child, tables
from showcase.bench.compare import Experiment
from showcase.bench.folder import RunFolderError, Tables
from showcase.bench.loadgen import Target
from showcase.bench.run import Progress, RunResult, RunStatus, read_meta
from showcase.bench.workload import VISITOR, Allowance
from showcase.errors import UserError
from showcase.experiment import PreparedExperiment
from showcase.measure import DeviceFigures
from showcase.prepare import prepare_run
from showcase.presets import Preset
from showcase.settings import ServerSettings

SHUTDOWN_WAIT_S = 60.0  # at exit, how long a stopped run may take to finish its requests in flight


class BenchmarkBusy(UserError):
    """Another benchmark holds the slot."""


class Phase(str, enum.Enum):
    IDLE = "idle"
    PREFLIGHT = "preflight"
    RESTARTING = "restarting"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class Snapshot:
    running: bool
    preset: str
    phase: Phase
    progress: Progress | None
    message: str
    folder: Path | None
    status: RunStatus | None  # the last run's, None before any
    experiment: Experiment | None = None  # the last experiment's result, when the last run was one


def is_smoke(srv: server.ServerHandle) -> bool:
    return srv.source is not None and srv.source.is_smoke


class BenchmarkCoordinator:
    """The single benchmark slot of the app."""

    def __init__(self, srv: server.ServerHandle, runs_dir: Path = RUNS_DIR,
                 figures: DeviceFigures | None = None) -> None:
        self.server = srv
        self.runs_dir = runs_dir
        self.figures = figures  # this device measured: each run's summary gets its efficiency
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._snap = Snapshot(False, "", Phase.IDLE, None, "No benchmark has run yet.", None, None)
        self._handed: dict[Path, Tables] = {}  # see `handed_back`
        # At exit, before the server stops (atexit runs the last registered first): the run ends
        # as stopped, not as a run whose server died under it.
        atexit.register(self.shutdown)

    def snapshot(self) -> Snapshot:
        return self._snap

    def handed_back(self) -> dict[Path, Tables]:
        """The tables the last finished run handed back, by its resolved folder: the app shows
        them without reading the folder again."""
        return dict(self._handed)

    def _finished(self, result: RunResult) -> None:
        self._handed = {Path(result.folder).resolve(): (result.summary, result.requests, result.timeline)}

    def _update(self, **changes) -> None:
        self._snap = replace(self._snap, **changes)

    def start(self, preset: Preset, overrides: dict | None = None, search: dict | None = None,
              price: float | None = None, allowance: Allowance = VISITOR, slos: dict | None = None) -> Preset:
        """Validate, take the slot and start in the background; returns the preset as it will run.
        `search`: run it as a capacity search (see `prepare_run`); `price`: dollars per GPU-hour;
        `allowance`: the visitors' unless the caller proved to be the admin."""
        srv = self.server
        launched = srv.endpoint is None and srv.launch_settings is not None
        prepared = prepare_run(preset, overrides, srv.launch_settings if launched else None, srv.device, is_smoke(srv),
                               slos, measured=self.figures.result if self.figures else None, search=search, price=price,
                               allowance=allowance)
        self._take(preset.name, self._run, prepared)
        return prepared.preset

    def start_experiment(self, preset: Preset, repeats: int, endpoints: tuple[str, str] | None = None,
                         aa: bool = False, allowance: Allowance = VISITOR, overrides: dict | None = None) -> PreparedExperiment:
        """An experiment in the background: the preset's arms (the server restarted with each arm's
        settings, after each arm's pre-flight check), two endpoints, or the preset twice (`aa`)."""
        srv = self.server
        launched = srv.endpoint is None and srv.launch_settings is not None
        plan = experiment.plan_of(preset, endpoints, aa)
        prep = experiment.prepare_experiment(preset, overrides, srv.launch_settings if launched else None, srv.device,
                                             is_smoke(srv), repeats, plan, allowance=allowance,
                                             measured=self.figures.result if self.figures else None)
        self._take(preset.name, self._run_experiment, prep)
        return prep

    def _take(self, name: str, work, prepared) -> None:
        with self._lock:
            if not self._idle.is_set():
                raise BenchmarkBusy(f"A benchmark ({self._snap.preset}) is already running; wait for it or stop it.")
            self._stop.clear()
            self._idle.clear()
            self._update(running=True, preset=name, phase=Phase.PREFLIGHT, progress=None,
                         message="starting", folder=None, status=None, experiment=None)
            self._thread = threading.Thread(target=self._guarded, args=(work, prepared), daemon=True,
                                            name="benchmark")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """Stop a run in progress and wait (a while) for it to write its ending."""
        self._stop.set()
        self._idle.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> Snapshot:
        """Block until no benchmark runs (or the timeout passes); the snapshot then."""
        self._idle.wait(timeout_s)
        return self._snap

    def _client_cores(self) -> tuple[int, ...] | None:
        """The load generator's cores when we launched vLLM on this CPU (it has the others)."""
        if self.server.device.is_gpu or self.server.endpoint is not None:
            return None
        split = cores.CoreSplit.of()
        return split.client if split else None

    def _restart_if_needed(self, settings: ServerSettings | None, name: str) -> None:
        """The server the run needs: restarted with the preset's settings, started again if it died
        and gave up, waited for while it (re)starts by itself."""
        state = self.server.status().state
        if settings is not None and (settings != self.server.settings or state is server.State.FAILED):
            self._update(phase=Phase.RESTARTING, message="restarting the server with the preset's settings")
            self.server.start(settings)
        elif state is server.State.READY:
            return
        status = self.server.wait_ready(self.server.ready_timeout_s + server.READY_MARGIN_S)
        if status.state is not server.State.READY:
            raise server.ServerNotReady(f"The server is not ready for {name}: {status.message}")

    def _segment_runner(self):
        log = self.server.log_dir / f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}.log"
        return partial(child.run_in_process, on_progress=lambda p: self._update(progress=p), log_path=log,
                       cores=self._client_cores())

    def _run(self, prepared) -> None:
        self._restart_if_needed(prepared.settings, prepared.preset.name)
        base = self.server.require_ready()
        target = Target(base, self.server.served_model_name, self.server.api_key)
        self._update(phase=Phase.RUNNING, message="running")
        result = self._segment_runner()(prepared.meta, target, out_root=self.runs_dir, stop=self._stop)
        self._finished(result)
        self._update(phase=Phase.DONE, message=result.message or "all points ran", folder=result.folder,
                     status=result.status)

    def _run_experiment(self, prep: PreparedExperiment) -> None:
        switch = experiment.server_switch(self.server, self.server.api_key)

        def ready(arm):
            self._update(phase=Phase.RESTARTING if arm.settings is not None and arm.settings != self.server.settings
                         else Phase.RUNNING, message=f"readying arm {arm.name}")
            target = switch(arm)
            self._update(phase=Phase.RUNNING, message=f"running arm {arm.name}")
            return target

        result, exp = experiment.run_experiment(prep, ready, self._segment_runner(), self.runs_dir, self._stop)
        self._finished(result)
        self._update(phase=Phase.DONE, message=result.message or ("experiment done" if exp.done else
                                                                  "experiment ended early"),
                     folder=result.folder, status=result.status, experiment=exp)

    def _guarded(self, work, prepared) -> None:
        try:
            work(prepared)
        except child.RunProcessError as exc:  # what it measured before it died is kept, and shown
            self._update(phase=Phase.DONE, message=str(exc), status=RunStatus.FAILED, folder=exc.folder)
        except UserError as exc:
            self._update(phase=Phase.DONE, message=str(exc), status=RunStatus.FAILED)
        except Exception as exc:  # the slot must always be freed and the reason shown
            self._update(phase=Phase.DONE, message=f"{type(exc).__name__}: {exc}", status=RunStatus.FAILED)
        finally:
            self._update(running=False)
            self._idle.set()


# -- earlier runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    folder: Path
    label: str


def list_runs(runs_dir: Path = RUNS_DIR) -> list[RunInfo]:
    """Run folders with a summary, newest first."""
    out = []
    for folder in sorted(Path(runs_dir).glob("*/summary.csv"), reverse=True):
        folder = folder.parent
        try:
            meta = read_meta(folder)
            label = f"{folder.name} · {meta.model or '?'} on {meta.device} · {meta.status.value}"
        except RunFolderError:  # being written or damaged: still listed, and says so
            label = f"{folder.name} · run.json unreadable"
        out.append(RunInfo(folder, label))
    return out


def run_folder(runs_dir: Path, name: str) -> Path:
    """The run folder `name` of `runs_dir`; anything else (a path, `..`, a run that is gone) is refused."""
    folder = Path(runs_dir) / str(name)
    if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not (folder / "summary.csv").exists():
        raise RunNotFound(f"{name!r} is not a run of this app")
    return folder


class RunNotFound(UserError):
    """A run picked that is not one of the app's run folders."""


class UploadError(UserError):
    """An uploaded file that is not a benchmark summary."""


UPLOAD_MAX_MB = 5  # an uploaded summary: a run of 64 points is a few kB; this leaves room, not memory, to spare
UPLOAD_MAX_ROWS = 10_000
# All the compare view draws and compares (`Summary`'s upload columns, and another tool's name for
# the concurrency): nothing else is read.
UPLOAD_COLUMNS = ("concurrency", *tables.UPLOAD)
UPLOAD_NUMERIC = tuple(c.name for c in tables.COLUMNS if c.upload and c.numeric)


def _upload_text(path: Path) -> str:
    """An upload's text: UTF-8 (with or without a BOM) or UTF-16 with its BOM; binary is refused."""
    import codecs

    size = path.stat().st_size
    if size > UPLOAD_MAX_MB * 1e6:
        raise UploadError(f"{path.name} is {size / 1e6:.1f} MB; a summary to compare may have at most "
                          f"{UPLOAD_MAX_MB} MB.")
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    if b"\0" in raw:
        raise UploadError(f"{path.name} is a binary file, not a CSV summary.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(f"{path.name} is not UTF-8 or UTF-16 text: save it as UTF-8 CSV") from exc


def load_summary(path: Path, label: str) -> pd.DataFrame:
    """A summary.csv (ours, or uploaded from another machine) tagged with a series label: at most
    `UPLOAD_MAX_MB` and `UPLOAD_MAX_ROWS`, only the columns drawn, numbers where numbers belong,
    finite and positive where a load or length belongs."""
    import io

    path = Path(path)
    try:
        text = _upload_text(path)
        df = pd.read_csv(io.StringIO(text), usecols=lambda c: c in UPLOAD_COLUMNS, nrows=UPLOAD_MAX_ROWS + 1)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UploadError(f"{path.name} cannot be read as CSV: {exc}") from exc
    if len(df) > UPLOAD_MAX_ROWS:
        raise UploadError(f"{path.name} has more than {UPLOAD_MAX_ROWS:,} rows; a summary has one row per point.")
    if "concurrency" in df.columns and "max_concurrency" not in df.columns:
        df["max_concurrency"] = df["concurrency"]
    needed = ["input_len", "max_concurrency", "mean_ttft_ms", "output_throughput"]
    if not set(needed) <= set(df.columns):
        raise UploadError(f"{path.name} is not a benchmark summary: it lacks "
                          f"{', '.join(sorted(set(needed) - set(df.columns)))}")
    if df.empty:
        raise UploadError(f"{path.name} has a header but no rows: nothing to compare.")
    for col in [c for c in UPLOAD_NUMERIC if c in df.columns]:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any() and not df[col].isna().equals(values.isna()):
            raise UploadError(f"{path.name}: column {col} holds values that are not numbers, e.g. "
                              f"{df[col][values.isna() & df[col].notna()].iloc[0]!r}")
        df[col] = values
    for col in ("input_len", "max_concurrency"):
        wrong = ~((df[col] > 0) & (df[col] < 1e9))  # NaN too: a point without its load or length cannot be drawn
        if wrong.any():
            raise UploadError(f"{path.name}: column {col} holds {df[col][wrong].iloc[0]!r}; a {col} is a positive "
                              "whole number")
    df["series"] = label
    return df

"""Benchmarks inside the app: one at a time for everybody, and the runs kept on disk.

This module owns the app-wide benchmark slot: starting a preset (pre-flight fit check, a server
restart when the preset's settings differ, then the run in a process of its own, watched from a
background thread), stopping it, and a snapshot of its progress that every visitor sees. It also
lists earlier run folders (`bench.read_tables` reads one) and loads uploaded summary CSVs for
comparison. It knows nothing about Gradio.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import bench
import engine
import metrics
import models
import presets
import roofline
from loadgen import Target, WorkloadError


class BenchmarkBusy(engine.EngineError):
    """Another benchmark holds the slot."""


class PreflightRefused(engine.EngineError):
    """The preset's server settings cannot fit this GPU; the message gives the largest that would."""


@dataclass(frozen=True)
class Snapshot:
    running: bool
    preset: str
    phase: str  # idle | preflight | restarting | running | done
    progress: bench.Progress | None
    message: str
    folder: Path | None
    status: str  # the last run's status, or ""


def effective_preset(preset: presets.Preset, server: engine.VLLMServer) -> presets.Preset:
    """The preset as this server can run it: scaled down on the CPU smoke model."""
    if server.source is not None and server.source.is_smoke:
        return preset.for_cpu()
    return preset


def gpu_of(device: models.Device) -> roofline.GPU | None:
    if not device.is_gpu:
        return None
    try:
        return roofline.gpu(device.name)
    except roofline.RooflineError:
        return None


def limit_shape(server: engine.VLLMServer) -> roofline.ModelShape:
    """The model whose physical limit the charts draw: the served one on a GPU, else the article's."""
    if server.device.is_gpu and server.settings is not None:
        try:
            return roofline.ModelShape.load(server.settings.model)
        except roofline.RooflineError:
            pass
    return roofline.ModelShape.load(roofline.article()["model"])


def check_fit(server: engine.VLLMServer, settings: engine.ServerSettings) -> roofline.Fit:
    """Pre-flight for a launch on this machine's GPU; no check without a known GPU."""
    g = gpu_of(server.device)
    if g is None:
        why = "no GPU (the CPU smoke model)" if not server.device.is_gpu else f"unknown GPU {server.device.name}"
        return roofline.Fit(True, f"No memory check applies: {why}.", None)
    try:
        shape = roofline.ModelShape.load(settings.model)
    except roofline.RooflineError as exc:
        return roofline.Fit(True, f"No memory check applies: {exc}.", None)
    return roofline.preflight(shape, g, settings.max_model_len or shape.max_position or 32768,
                              settings.gpu_memory_utilization or 0.9, settings.tensor_parallel_size,
                              settings.dtype, settings.kv_cache_dtype)


class BenchmarkCoordinator:
    """The single benchmark slot of the app."""

    def __init__(self, server: engine.VLLMServer, runs_dir: Path = bench.RUNS_DIR) -> None:
        self.server = server
        self.runs_dir = runs_dir
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._snap = Snapshot(False, "", "idle", None, "No benchmark has run yet.", None, "")

    def snapshot(self) -> Snapshot:
        return self._snap

    def _update(self, **changes) -> None:
        self._snap = Snapshot(**(self._snap.__dict__ | changes))

    def start(self, preset: presets.Preset, overrides: dict | None = None) -> presets.Preset:
        """Validate, take the slot and start in the background; returns the preset as it will run."""
        preset = effective_preset(preset, self.server)
        if overrides:
            preset = preset.with_workload(**overrides)
        settings = None
        if self.server.endpoint is None and self.server.settings is not None:
            settings = engine.settings_for(preset.server, self.server.settings, self.server.device)
            fit = check_fit(self.server, settings)
            if not fit.fits:
                raise PreflightRefused(f"Pre-flight refused {preset.name}: {fit.message}")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise BenchmarkBusy(f"A benchmark ({self._snap.preset}) is already running; wait for it or stop it.")
            self._stop.clear()
            self._update(running=True, preset=preset.name, phase="preflight", progress=None,
                         message="starting", folder=None, status="")
            self._thread = threading.Thread(target=self._run, args=(preset, settings), daemon=True,
                                            name="benchmark")
            self._thread.start()
        return preset

    def stop(self) -> None:
        self._stop.set()

    def _client_cores(self) -> tuple[int, ...] | None:
        """The load generator's cores when we launched vLLM on this CPU (it has the others)."""
        if self.server.device.is_gpu or self.server.endpoint is not None:
            return None
        split = engine.CoreSplit.of()
        return split.client if split else None

    def _run(self, preset: presets.Preset, settings: engine.ServerSettings | None) -> None:
        try:
            if settings is not None and settings != self.server.settings:
                self._update(phase="restarting", message="restarting the server with the preset's settings")
                self.server.restart(settings)
                status = self.server.wait_ready(self.server.ready_timeout_s + 60)
                if status.state is not engine.State.READY:
                    raise engine.ServerNotReady(f"The server did not come back with {preset.name}'s settings: "
                                                f"{status.message}")
            base = self.server.require_ready()
            target = Target(base, self.server.served_model_name, self.server.api_key)
            self._update(phase="running", message="running")
            slos = metrics.SLOs(preset.slos.ttft_ms, preset.slos.tpot_ms, preset.slos.e2el_ms)
            meta = {
                "device": self.server.device.name, "smoke_model": bool(self.server.source and self.server.source.is_smoke),
                "server_settings": self.server.settings.__dict__ if self.server.settings else None,
                "preset_definition": preset.model_dump(),
            }
            log = self.server.log_dir / f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}.log"
            result = bench.run_in_process(bench.plan(preset.name, preset.workload, slos), target, meta,
                                          out_root=self.runs_dir, on_progress=lambda p: self._update(progress=p),
                                          stop=self._stop, log_path=log, cores=self._client_cores())
            self._update(phase="done", message=result.message or "all points ran", folder=result.folder,
                         status=result.status)
        except (engine.EngineError, WorkloadError, presets.PresetError, bench.RunProcessError) as exc:
            self._update(phase="done", message=str(exc), status="failed")
        except Exception as exc:  # the slot must always be freed and the reason shown
            self._update(phase="done", message=f"{type(exc).__name__}: {exc}", status="failed")
        finally:
            self._update(running=False)


# -- earlier runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    folder: Path
    label: str


def list_runs(runs_dir: Path = bench.RUNS_DIR) -> list[RunInfo]:
    """Run folders with a summary, newest first."""
    out = []
    for folder in sorted(runs_dir.glob("*/summary.csv"), reverse=True):
        folder = folder.parent
        try:
            meta = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            meta = {}
        label = f"{folder.name} · {meta.get('model', '?')} on {meta.get('device', '?')} · {meta.get('status', '?')}"
        out.append(RunInfo(folder, label))
    return out


def load_summary(path: Path, label: str) -> pd.DataFrame:
    """A summary.csv (ours, or uploaded from another machine) tagged with a series label."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise engine.EngineError(f"{Path(path).name} cannot be read as CSV: {exc}") from exc
    if "concurrency" in df.columns and "max_concurrency" not in df.columns:
        df["max_concurrency"] = df["concurrency"]
    needed = {"max_concurrency", "output_throughput", "mean_ttft_ms", "input_len"}
    if not needed <= set(df.columns):
        raise engine.EngineError(f"{Path(path).name} is not a benchmark summary: it lacks "
                                 f"{', '.join(sorted(needed - set(df.columns)))}")
    df["series"] = label
    return df


def wait_idle(coord: BenchmarkCoordinator, timeout_s: float) -> Snapshot:
    deadline = time.monotonic() + timeout_s
    while coord.snapshot().running and time.monotonic() < deadline:
        time.sleep(0.2)
    return coord.snapshot()

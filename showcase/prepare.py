"""From a preset and a person's edits to a run: the one conversion, for the app and the command line.

This module owns `prepare_run`: the preset as this machine can run it (scaled down for the CPU
smoke model), the workload edits applied and validated, the server settings it needs (the launch
defaults plus the preset's own server fields, never the previous preset's), the SLOs, and the
run's metadata. It launches nothing and measures nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from showcase import ROOT, roofline, server, sources
from showcase.bench import run as bench
from showcase.bench import traffic
from showcase.bench.capacity import CapacityPlan
from showcase.bench.run import Price, RunMeta
from showcase.bench.workload import TRUSTED, VISITOR, Allowance, Workload, validated
from showcase.errors import UserError
from showcase.measure import Measured
from showcase.presets import Preset
from showcase.settings import ServerSettings

ATTACHED = "unknown (attached endpoint)"


class PreflightRefused(UserError):
    """The preset's server settings cannot fit this GPU; the message gives the largest that would."""


def gpu_of(device: sources.Device) -> roofline.GPU | None:
    if not device.is_gpu:
        return None
    try:
        return roofline.gpu(device.name)
    except roofline.RooflineError:
        return None


def served_shape(settings: ServerSettings) -> roofline.ModelShape | roofline.RooflineError:
    """The served model's shape, read once per run for the pre-flight check and the measured
    bound; or why it cannot be read."""
    try:
        return roofline.served_shape(settings.model, settings.served_model_name)
    except roofline.RooflineError as exc:
        return exc


def check_fit(device: sources.Device, settings: ServerSettings,
              shape: roofline.ModelShape | roofline.RooflineError) -> roofline.Fit:
    """Pre-flight for a launch on this machine's GPU; no check without a known GPU, and it says so."""
    g = gpu_of(device)
    if g is None:
        why = "no GPU (the CPU smoke model)" if not device.is_gpu else f"unknown GPU {device.name}"
        return roofline.Fit(True, f"No memory check applies: {why}.", None)
    if isinstance(shape, roofline.RooflineError):
        return roofline.Fit(True, f"No memory check applies: {shape}.", None)
    return roofline.preflight(shape, g, settings.max_model_len or shape.max_position or roofline.DEFAULT_CONTEXT,
                              settings.gpu_memory_utilization or roofline.DEFAULT_UTILIZATION,
                              settings.tensor_parallel_size, settings.dtype, settings.kv_cache_dtype)


@dataclass(frozen=True)
class PreparedRun:
    preset: Preset  # as it will run
    settings: ServerSettings | None  # the server it needs; None: an attached endpoint, not ours to set
    meta: RunMeta


def measured_bound(settings: ServerSettings, shape: roofline.ModelShape | roofline.RooflineError,
                   measured: Measured | None) -> roofline.Roofline | None:
    """The served model on this device's measured figures; None when either is unknown (no config
    to read: the run has no efficiency, its column stays empty)."""
    if measured is None or isinstance(shape, roofline.RooflineError):
        return None
    return roofline.Roofline(shape, measured.as_gpu(), 1, roofline.weights_dtype(settings.dtype))


def ad_hoc(workload: dict) -> Preset:
    """A preset of the command line's own workload, validated as strictly as a file."""
    return Preset(name="ad-hoc", title="Ad hoc", description="from the command line", source="command line",
                  workload=validated(Workload, workload, "the workload given"))


def prepare_run(preset: Preset, overrides: dict | None, launch: ServerSettings | None,
                device: sources.Device, smoke: bool, slos: dict | None = None,
                measured: Measured | None = None, search: dict | None = None,
                price: float | None = None, gpus: int | None = None, allowance: Allowance = TRUSTED) -> PreparedRun:
    """The run of `preset` with workload `overrides` and SLO `slos` (ms; None keeps the preset's).

    `launch`: the server's launch defaults (None when attached to an endpoint); `smoke`: the CPU
    smoke model serves, so the preset scales down to what it can serve; `measured`: this device's
    measured figures, for the served model's measured bound (each point's efficiency).
    `search`: make it a capacity search, with these of `CapacityPlan`'s fields over the preset's
    own (None: a search only if the preset is one). `price`: dollars per GPU-hour over the
    preset's; `gpus`: how many serve (default: the launched server's tensor parallelism, else 1).
    `allowance`: who asks (`VISITOR` in the app without its admin password; `TRUSTED` otherwise).
    """
    if smoke:
        preset = preset.for_cpu()
    if overrides:
        preset = preset.with_workload(**overrides)
    settings = server.settings_for(preset.server, launch, device) if launch is not None else None
    bound = None
    if settings is not None:  # before any server restarts, from the app and the command line alike
        shape = served_shape(settings)
        fit = check_fit(device, settings, shape)
        if not fit.fits:
            raise PreflightRefused(f"Pre-flight refused {preset.name}: {fit.message}")
        bound = measured_bound(settings, shape, measured)
    slo = preset.slos.overridden(**(slos or {}))
    plan = preset.capacity
    if search is not None:
        plan = validated(CapacityPlan, (plan.model_dump(exclude_unset=True) if plan else {})
                         | {k: v for k, v in search.items() if v is not None}, "capacity search")
    preset = _with_file(preset)
    allowance.check(preset.workload)
    usd = price if price is not None else preset.price_per_gpu_hour
    cost = None if usd is None else validated(Price, {"usd_per_gpu_hour": usd, "gpus": gpus or (
        settings.tensor_parallel_size if settings else 1)}, "price")
    meta = bench.run_meta(preset.name, preset.workload, slo,
                      device=device.name if launch is not None else ATTACHED, smoke_model=smoke,
                      server_settings=settings,
                      preset_definition=preset.model_dump(mode="json"), bound=bound, capacity=plan, price=cost,
                      traffic=_file_facts(preset.workload, allowance), allowance=allowance)
    return PreparedRun(preset, settings, meta)


def _with_file(preset: Preset) -> Preset:
    """The preset with its prompts file or trace as an absolute path (a preset's relative path is
    the project's), the file read and refused now, before any server restarts, if it cannot be sent."""
    w = preset.workload
    given = w.dataset or w.trace
    if given is None:
        return preset
    path = Path(given).expanduser()
    path = path if path.is_absolute() or path.exists() else ROOT / path
    key = "dataset" if w.dataset is not None else "trace"
    return preset.with_workload(**{key: str(path.resolve())})


def _file_facts(w: Workload, allowance: Allowance) -> traffic.FileFacts | None:
    """The file read as the workload takes it (a visitor's within the upload bounds), or None."""
    if not w.from_file:
        return None
    kind: Literal["dataset", "trace"] = "dataset" if w.dataset is not None else "trace"
    path = w.dataset or w.trace
    assert path is not None
    max_bytes, max_rows = (traffic.UPLOAD_MAX_BYTES, traffic.UPLOAD_MAX_ROWS) if allowance is VISITOR else \
        (traffic.MAX_FILE_BYTES, None)
    return traffic.facts(path, kind, max_bytes, max_rows)

"""From a preset and a person's edits to a run: the one conversion, for the app and the command line.

This module owns `prepare_run`: the preset as this machine can run it (scaled down for the CPU
smoke model), the workload edits applied and validated, the server settings it needs (the launch
defaults plus the preset's own server fields, never the previous preset's), the SLOs, and the
run's metadata. It launches nothing and measures nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from showcase import roofline, server, sources
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


@dataclass(frozen=True)
class PreparedRun:
    preset: Preset  # as it will run
    settings: ServerSettings | None  # the server it needs; None: an attached endpoint, not ours to set
    meta: RunMeta


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
    preset = preset.with_file_found()
    allowance.check(preset.workload)
    # The file read and refused now, before any server restarts, if it cannot be sent.
    facts = traffic.workload_facts(preset.workload, visitor=allowance is VISITOR)
    slo = preset.slos.overridden(**(slos or {}))
    plan = preset.capacity
    if search is not None:
        plan = validated(CapacityPlan, (plan.model_dump(exclude_unset=True) if plan else {})
                         | {k: v for k, v in search.items() if v is not None}, "capacity search")
    settings = server.settings_for(preset.server, launch, device) if launch is not None else None
    bound = None
    if settings is not None:  # before any server restarts, from the app and the command line alike
        # The served model's config, read once per run for the pre-flight check and the measured bound.
        shape: roofline.ModelShape | roofline.RooflineError
        try:
            shape = roofline.served_shape(settings.model, settings.served_model_name)
        except roofline.RooflineError as exc:
            shape = exc
        unchecked = "no GPU (the CPU smoke model)" if not device.is_gpu else f"unknown GPU {device.name}"
        fit = roofline.launch_fit(shape, gpu_of(device), settings, unchecked)
        if not fit.fits:
            raise PreflightRefused(f"Pre-flight refused {preset.name}: {fit.message}")
        if measured is not None and not isinstance(shape, roofline.RooflineError):  # else no efficiency column
            bound = roofline.Roofline(shape, measured.as_gpu(), 1, roofline.weights_dtype(settings.dtype))
    usd = price if price is not None else preset.price_per_gpu_hour
    cost = None if usd is None else validated(Price, {"usd_per_gpu_hour": usd, "gpus": gpus or (
        settings.tensor_parallel_size if settings else 1)}, "price")
    meta = bench.run_meta(preset.name, preset.workload, slo,
                          device=device.name if launch is not None else ATTACHED, smoke_model=smoke,
                          server_settings=settings,
                          preset_definition=preset.model_dump(mode="json"), bound=bound, capacity=plan, price=cost,
                          traffic=facts, allowance=allowance)
    return PreparedRun(preset, settings, meta)


"""Experiments: two or more arms on one workload, run in an order that cancels drift, then compared.

This module owns an experiment's lifecycle, the same for the command line and the app: the arms
prepared (each arm is `prepare_run` of the preset with the arm's server and workload fields, so
every check a run gets, an arm gets), the order (`stats.order`: ABBA blocks for two arms,
randomized blocks for more, from the plan's seed), the points of the one run folder (each repeat
of each arm an ordinary point, tagged with its arm and repeat), and running them segment by
segment: before each, `switch` readies the arm's server (the caller restarts it with the arm's
settings, or points at the arm's endpoint); an arm whose server cannot start is skipped, saying
why, and the rest runs. After each segment `experiment.json` is rewritten from the summary
(`compare.analyse`). How a server is restarted and where a segment runs (this process or a child
process) are the caller's; this module knows nothing about Gradio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from showcase import api, server, sources
from showcase.bench import compare, stats
from showcase.bench.compare import Arm, ArmRecord, Experiment, ExperimentPlan
from showcase.bench.folder import RunFolder
from showcase.bench.loadgen import Target
from showcase.bench.run import RunMeta, RunResult, RunStatus, mark_ended
from showcase.bench.workload import TRUSTED, Allowance, Point, WorkloadError
from showcase.errors import UserError
from showcase.prepare import PreparedRun, prepare_run
from showcase.presets import Preset
from showcase.settings import ServerSettings

MAX_REPEATS = 50


class ArmUnavailable(UserError):
    """An arm's server could not be made ready; the message says why. The arm is skipped."""


@dataclass(frozen=True)
class ArmRun:
    """One arm, ready to run: its settings to launch with (None: an endpoint), or its endpoint."""

    arm: Arm
    prepared: PreparedRun

    @property
    def name(self) -> str:
        return self.arm.name

    @property
    def settings(self) -> ServerSettings | None:
        return self.prepared.settings


@dataclass(frozen=True)
class PreparedExperiment:
    plan: ExperimentPlan
    arms: dict[str, ArmRun]
    order: list[str]
    repeats: int
    meta: RunMeta  # every point of every arm's repeats, in the order they run
    segments: list[tuple[str, tuple[int, ...]]]  # runs of consecutive points of one arm

    def record(self, skipped: dict[str, str]) -> list[ArmRecord]:
        return [ArmRecord(name=a.name, endpoint=a.arm.endpoint,
                          server_settings=a.settings, workload=a.arm.workload,
                          skipped=skipped.get(a.name)) for a in self.arms.values()]


def plan_of(preset: Preset, endpoints: tuple[str, str] | None = None, aa: bool = False) -> ExperimentPlan:
    """The experiment to run: two endpoints (A, B), the same arm twice (`aa`), or the preset's own."""
    if endpoints is not None:
        return ExperimentPlan(arms=[Arm(name="A", endpoint=endpoints[0]), Arm(name="B", endpoint=endpoints[1])])
    if aa:
        return ExperimentPlan(arms=[Arm(name="A1"), Arm(name="A2")])
    if preset.experiment is None:
        raise WorkloadError(f"{preset.name} is not an experiment: choose an experiment preset, give two endpoints, "
                            "or ask for an A/A experiment of it (--aa)")
    return preset.experiment


def prepare_experiment(preset: Preset, overrides: dict | None, launch: ServerSettings | None,
                       device: sources.Device, smoke: bool, repeats: int, plan: ExperimentPlan,
                       slos: dict | None = None, allowance: Allowance = TRUSTED, **run_facts) -> PreparedExperiment:
    """Every arm prepared as a run of its own would be (refused here, before any server starts,
    if one cannot be), then the order and the experiment's points. `launch`: None when the arms
    are attached endpoints (or the app is attached: no server of ours to restart)."""
    if not 2 <= repeats <= MAX_REPEATS:
        raise WorkloadError(f"repeats: an experiment needs 2 to {MAX_REPEATS} repeats of each arm (one repeat "
                            "states no uncertainty); give --repeats 2 or more")
    if launch is None and any(a.server for a in plan.arms if a.endpoint is None):
        raise WorkloadError("this experiment restarts the server with each arm's settings; an attached endpoint is "
                            "not ours to restart (launch the server from here, or compare two endpoints)")
    base = preset.for_cpu() if smoke else preset
    base = base.with_workload(**overrides) if overrides else base
    arms = {}
    for arm in plan.arms:
        prepared = prepare_run(base.for_arm(arm), None, launch if arm.endpoint is None else None, device, False,
                               slos, allowance=allowance, **run_facts)
        if prepared.meta.capacity is not None:
            raise WorkloadError("an experiment compares arms on fixed points: leave the capacity search out")
        arms[arm.name] = ArmRun(arm, prepared)
    run_order = stats.order(list(arms), repeats, plan.seed)
    points: list[Point] = []
    segments: list[tuple[str, tuple[int, ...]]] = []
    seen = dict.fromkeys(arms, 0)
    for name in run_order:
        first = len(points)
        for p in arms[name].prepared.meta.points:
            points.append(p.model_copy(update={"index": len(points), "arm": name, "repeat": seen[name]}))
        seen[name] += 1
        indices = tuple(range(first, len(points)))
        if segments and segments[-1][0] == name:
            segments[-1] = (name, segments[-1][1] + indices)
        else:
            segments.append((name, indices))
    requests = sum((p.num_requests or 0) + p.warmup_requests for p in points)
    if len(points) > allowance.points or requests > allowance.total_requests:
        raise WorkloadError(f"{len(points)} points and {requests:,} requests in all (arms × repeats × points); at "
                            f"most {allowance.points:,} points and {allowance.total_requests:,} requests (the allowance for "
                            f"{allowance.who})")
    first_meta = next(iter(arms.values())).prepared.meta
    meta = first_meta.model_copy(update={"points": tuple(points), "experiment": plan, "preset": preset.name,
                                         "workload": base.workload.model_copy(update={"repeats": repeats}),
                                         "preset_definition": preset.model_dump(mode="json")})
    return PreparedExperiment(plan, arms, run_order, repeats, meta, segments)


Switch = Callable[[ArmRun], Target]
Segment = Callable[..., RunResult]  # run_sync's or run_in_process's signature (resume, only, final)


def run_experiment(prep: PreparedExperiment, switch: Switch, run_segment: Segment, out_root: Path,
                   stop: threading.Event, on_arm: Callable[[str, int], None] = lambda name, i: None,
                   ) -> tuple[RunResult, Experiment]:
    """Run the segments in order, each after `switch` readied its arm; experiment.json after each.

    Raises `ArmUnavailable` when no arm could run at all."""
    folder: Path | None = None
    skipped: dict[str, str] = {}
    result: RunResult | None = None
    for i, (name, indices) in enumerate(prep.segments):
        if stop.is_set() or (result is not None and result.status is not RunStatus.COMPLETED):
            break
        if name in skipped:
            continue
        on_arm(name, i)
        try:
            target = switch(prep.arms[name])
        except ArmUnavailable as exc:
            skipped[name] = str(exc)
            continue
        result = run_segment(prep.meta, target, out_root=out_root, stop=stop, resume=folder, only=indices,
                             final=False)
        folder = result.folder
        _write(folder, result.summary, prep, skipped, done=False)
    if folder is None or result is None:
        raise ArmUnavailable("no arm of the experiment could run: "
                             + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    ran_all = result.status is RunStatus.COMPLETED and not stop.is_set()
    if ran_all:
        mark_ended(folder, RunStatus.COMPLETED, "" if not skipped else
                   "Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    elif stop.is_set():
        mark_ended(folder, RunStatus.STOPPED, "Stopped by the user; what was measured is kept.")
    exp = _write(folder, result.summary, prep, skipped, done=ran_all)
    # Each segment's result holds the folder's whole tables (the earlier arms' rows and its own).
    return RunResult(folder, result.status if not stop.is_set() else RunStatus.STOPPED, result.message,
                     result.summary, result.requests, result.timeline), exp


def _write(folder: Path, summary: pd.DataFrame, prep: PreparedExperiment, skipped: dict[str, str],
           done: bool) -> Experiment:
    exp = compare.analyse(summary, prep.plan, prep.record(skipped), prep.order, prep.repeats, done)
    RunFolder.reopen(folder).write_model("experiment.json", exp)
    return exp


def server_switch(srv: server.ServerHandle, api_key: str) -> Switch:
    """Ready an arm on our own server: restarted with the arm's settings when they differ (after the
    pre-flight check the arm's `prepare_run` made), or the arm's endpoint as it is."""

    def switch(arm: ArmRun) -> Target:
        if arm.arm.endpoint is not None:
            return endpoint_target(arm, api_key)
        if arm.settings is None:  # the app is attached: its one endpoint is every arm's
            return Target(srv.require_ready(), srv.served_model_name, srv.api_key)
        if arm.settings != srv.settings or srv.status().state is not server.State.READY:
            srv.start(arm.settings)
        status = srv.wait_ready(srv.ready_timeout_s + server.READY_MARGIN_S)
        if status.state is not server.State.READY:
            raise ArmUnavailable(f"its server did not start: {status.message}")
        return Target(srv.require_ready(), srv.served_model_name, srv.api_key)

    return switch


def endpoint_target(arm: ArmRun, api_key: str) -> Target:
    from showcase.bench import loadgen

    base = loadgen.base_url(arm.arm.endpoint or "")
    try:
        model = arm.arm.model or api.only_model(base, api_key)
    except UserError as exc:
        raise ArmUnavailable(f"its endpoint {base} does not answer as expected: {exc}") from exc
    return Target(base, model, api_key)



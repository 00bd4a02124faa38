"""The command line: `python engine.py bench|capacity|report|roofline ...`.

A thin layer over `showcase`: it parses arguments, prepares a run (`prepare_run`, the same as the
app's), launches a server when no `--endpoint` is given, runs, prints tables and sets the exit
status: 0 when every point ran (a capacity search: when it found an answer), 1 when the run
failed, 2 when the request was wrong (any `UserError`, said in one line, in one place: `main`).
Nothing here measures or computes anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from functools import partial
from pathlib import Path

import pandas as pd

from showcase import RUNS_DIR, api, cores, experiment, measure, presets, roofline, server, sources
from showcase.bench import loadgen
from showcase.bench.loadgen import Target
from showcase.bench.metrics import shown_columns
from showcase.bench.run import RunResult, RunStatus, run_sync
from showcase.bench.tables import HEADERS
from showcase.errors import UserError
from showcase.prepare import PreparedRun, ad_hoc, prepare_run


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _window(text: str) -> list[float]:
    start, sep, end = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("START:END in seconds, e.g. 0:60")
    return [float(start or 0), float(end)]


def _run_options() -> argparse.ArgumentParser:
    """What `bench` and `capacity` share: the target, the workload, the SLOs, the price, --out."""
    b = argparse.ArgumentParser(add_help=False)
    b.add_argument("--preset", help="a preset name from presets/ (its server settings launch a server "
                   "unless --endpoint is given)")
    b.add_argument("--endpoint", help="an OpenAI-compatible server that is already running")
    b.add_argument("--metrics-url", help="with --endpoint: an engine's own /metrics, where the endpoint is a router's "
                   "(the server's view, server_mean_* columns, comes from there; default: the endpoint's /metrics)")
    b.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY", "EMPTY"))
    b.add_argument("--model", help="served model name (with --endpoint) or the model to launch")
    b.add_argument("--weights", choices=("real", "dummy"), default="real")
    b.add_argument("--reasoning-parser", help="launch with vLLM's reasoning parser for a thinking model (e.g. qwen3): "
                   "its reasoning streams apart, and ttft_answer_ms times the first answer token")
    b.add_argument("--concurrency", type=_ints, help="levels, e.g. 1,4,8")
    b.add_argument("--input-len", type=_ints, help="prompt tokens, e.g. 1024 or 1024,8192")
    b.add_argument("--output-len", type=int)
    b.add_argument("--num-requests", type=int)
    b.add_argument("--duration", type=float, help="seconds per point instead of --num-requests")
    b.add_argument("--rate", type=_floats, help="request rates (req/s): Poisson arrivals, concurrency is the cap")
    b.add_argument("--burstiness", type=float)
    b.add_argument("--warmup", type=int)
    b.add_argument("--timeout", type=float, help="per-request timeout in seconds")
    b.add_argument("--workers", type=int, help="load generator processes (default: one per 256 streams, at most "
                   "one a core; 1 for small runs)")
    b.add_argument("--no-stream", action="store_true", help="non-streaming requests: no TTFT")
    b.add_argument("--repeats", type=int, help="measure every point N times, interleaved (default 1); the summary "
                   "then gives each metric's 95 %% interval over the repeats")
    b.add_argument("--slo-ttft-ms", type=float)
    b.add_argument("--slo-tpot-ms", type=float)
    b.add_argument("--slo-e2el-ms", type=float)
    c = b.add_argument_group("chat users (each holds a conversation; --input-len is each new message, "
                             "--output-len each reply)")
    c.add_argument("--users", type=_ints, help="numbers of chat users, e.g. 1,8,32 (instead of --concurrency)")
    c.add_argument("--turns", type=int, help="turns per conversation (default 3)")
    c.add_argument("--system-prompt-len", type=int, help="tokens of the system prompt all users share")
    c.add_argument("--think-time", type=float, metavar="SECONDS", help="from a reply to the next message")
    c.add_argument("--think-time-dist", choices=("fixed", "exponential"), help="exponential: --think-time is the mean")
    f = b.add_argument_group("real traffic (a file instead of synthetic prompts)")
    f.add_argument("--dataset", type=Path, help="a prompts file: JSONL, JSON or CSV with a prompt field (prompt, text, "
                   "question, input, content or instruction) and an optional output length (output_tokens, "
                   "output_length, output_tokens_count or max_tokens); OpenAI chat 'messages'; ShareGPT "
                   "'conversations'. Prompts are sent as they are (repeats meet the prefix cache)")
    f.add_argument("--trace", type=Path, help="replay a trace at its times: Mooncake JSONL (timestamp ms, "
                   "input_length, output_length, hash_ids) or the Azure LLM inference trace CSV (TIMESTAMP, "
                   "ContextTokens, GeneratedTokens); --concurrency, if given, caps the requests in flight")
    f.add_argument("--seed", type=int, help="shuffle the dataset's rows with this seed (default: file order); in an "
                   "experiment also the seed of the arms' order")
    f.add_argument("--salt-prompts", action="store_true", help="a unique tag before each of the dataset's prompts, "
                   "so that repeated prompts miss the prefix cache")
    f.add_argument("--turns-from-dataset", action="store_true", help="replay the dataset's conversations turn by "
                   "turn, one a chat user (the --concurrency levels become --users; up to 64 turns unless --turns)")
    f.add_argument("--time-scale", type=float, help="a trace's times multiplied by this (0.5: twice as fast)")
    f.add_argument("--trace-window", type=_window, metavar="START:END", help="seconds of the trace to replay")
    b.add_argument("--price-per-gpu-hour", type=float, metavar="USD", help="adds the cost columns (no default)")
    b.add_argument("--gpus", type=int, help="GPUs serving the endpoint, for the cost (default: the launched "
                   "server's tensor parallelism, else 1)")
    b.add_argument("--out", type=Path, default=None, help="folder for run folders (default: runs/)")
    return b


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python engine.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = _run_options()
    sub.add_parser("bench", parents=[common], help="run a benchmark: a preset, or an ad-hoc workload")
    s = sub.add_parser("capacity", parents=[common], help="the largest load within the SLOs: doubling, then bisection",
                       description="Find the largest concurrency (or request rate, or number of chat users) at which "
                       "the chosen percentile of every SLO given is met and failures stay within the share allowed. "
                       "Every probed level is a point of the run folder; capacity.json holds the answer. At a "
                       "concurrency level every stream sends at least 2 requests (--num-requests or more).")
    s.add_argument("--by", choices=("concurrency", "rate", "users"))
    s.add_argument("--percentile", type=float, help="of each SLO (default 90)")
    s.add_argument("--max-failed-share", type=float, help="a level passes with at most this share failed (default 0)")
    s.add_argument("--upper", type=int, help="the highest level probed (default 256; rates: in steps of --resolution)")
    s.add_argument("--resolution", type=float, help="req/s per step of a search by rate (default 0.5)")
    e = sub.add_parser("experiment", parents=[common], help="compare arms (server settings or endpoints) on one "
                       "workload, with intervals and verdicts",
                       description="Run two or more arms on one workload in an order that cancels drift (ABBA "
                       "blocks), each run a repeat of its arm, then state for each headline metric B relative to A: "
                       "the difference, its 95 %% interval over repeats, and better, worse or no_difference. Arms: an "
                       "experiment preset's, two endpoints, or the same arm twice (--aa: how noisy this machine is).")
    e.add_argument("--endpoint-a", help="arm A: an OpenAI-compatible server already running")
    e.add_argument("--endpoint-b", help="arm B: another one (the same URL twice is an A/A experiment)")
    e.add_argument("--aa", action="store_true", help="an A/A experiment: the preset's own settings as both arms")
    rp = sub.add_parser("report", help="write report.html, one self-contained file, into a run folder")
    rp.add_argument("run_dir", type=Path)
    r = sub.add_parser("roofline", help="physical upper bounds for a model on a GPU; --measure: this device")
    r.add_argument("--model-config", help="a config.json, a model folder, or a hub id")
    r.add_argument("--gpu", help="a GPU of assets/gpus.csv (its datasheet)")
    r.add_argument("--measure", action="store_true", help="measure this machine's bandwidth and matmul throughput "
                   "(the GPU when there is one, else the CPU on vLLM's cores); cached for the app")
    r.add_argument("--json", action="store_true", help="with --measure: one JSON object")
    r.add_argument("--tp", type=int, default=1)
    r.add_argument("--dtype", default="bfloat16")
    r.add_argument("--check", type=Path, help="a CSV with concurrency and output_throughput (optionally "
                   "mean_ttft_ms, input_len, output_len): written back with bounds and verdicts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        commands = {"roofline": roofline_command, "report": report_command, "experiment": experiment_command}
        return commands.get(args.command, bench_command)(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- bench --------------------------------------------------------------------------------------------


def _workload_overrides(args: argparse.Namespace) -> dict:
    pairs = {
        "concurrency": args.concurrency, "input_len": args.input_len, "output_len": args.output_len,
        "num_requests": args.num_requests, "request_rate": args.rate, "burstiness": args.burstiness,
        "warmup_requests": args.warmup, "timeout_s": args.timeout, "users": args.users, "workers": args.workers,
        "repeats": args.repeats if args.command != "experiment" else None,
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    chat = {"turns": args.turns, "system_prompt_len": args.system_prompt_len, "think_time_s": args.think_time,
            "think_time": args.think_time_dist}
    if any(v is not None for v in chat.values()):
        out["chat"] = {k: v for k, v in chat.items() if v is not None}
    if args.command == "capacity" and not args.preset and not {"concurrency", "users"} & set(out):
        # The search chooses the levels; the workload needs one of its kind to describe the rest.
        out["users" if args.by == "users" else "concurrency"] = [1]
    if args.duration is not None:
        out |= {"duration_s": args.duration, "num_requests": None}
    out |= _file_overrides(args, out)
    if args.no_stream:
        out["stream"] = False
    return out


def _file_overrides(args: argparse.Namespace, out: dict) -> dict:
    """The real-traffic options: the file (its path as given, from here), how it is taken."""
    given = {"dataset": str(args.dataset.resolve()) if args.dataset else None,
             "trace": str(args.trace.resolve()) if args.trace else None,
             "salt_prompts": True if args.salt_prompts else None, "time_scale": args.time_scale,
             "trace_window": args.trace_window,
             # In an experiment --seed orders the arms; it shuffles a dataset's rows where there is one.
             "seed": args.seed if args.command != "experiment" or args.dataset else None}
    extra = {k: v for k, v in given.items() if v is not None}
    if args.dataset or args.trace:  # a file replaces a preset's synthetic prompts and their lengths
        extra |= {"input_len": None, "shared_prefix_len": 0, "output_len": args.output_len}
    if args.turns_from_dataset:
        if "concurrency" in out:
            extra |= {"users": out["concurrency"], "concurrency": None}
        extra["chat"] = out.get("chat", {}) | ({} if args.turns is not None else {"turns": 64})
    return extra


def _preset(args: argparse.Namespace) -> tuple[presets.Preset, dict]:
    """The preset asked for (or the command line's own workload) and the workload edits over it."""
    overrides = _workload_overrides(args)
    attached = args.endpoint or getattr(args, "endpoint_a", None)
    if args.preset:
        catalogue, broken = presets.load_catalogue()
        if args.preset in broken:
            raise presets.PresetError(broken[args.preset])
        if args.preset not in catalogue:
            raise presets.PresetError(f"unknown preset {args.preset!r}; known: {', '.join(catalogue)}")
        preset = catalogue[args.preset]
    elif not attached or not (overrides.get("trace") or (
            (overrides.get("dataset") or {"input_len", "output_len"} <= set(overrides))
            and {"concurrency", "users"} & set(overrides))):
        raise presets.PresetError("without --preset, give --endpoint (experiment: --endpoint-a and --endpoint-b), "
                                  "--input-len, --output-len and --concurrency (or --users); or --dataset and "
                                  "--concurrency (or --users); or --trace")
    else:
        preset, overrides = ad_hoc(overrides), {}
    if args.num_requests is not None and preset.with_workload(**overrides).workload.users:
        raise presets.PresetError("chat users send users × turns requests: leave --num-requests out")
    return preset, overrides


def _slos(args: argparse.Namespace) -> dict:
    return {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms, "e2el_ms": args.slo_e2el_ms}


def _launch_defaults(args: argparse.Namespace, device: sources.Device):
    """The model to launch, its launch settings, and this device's measured figures (if any)."""
    source = sources.resolve(args.model, args.weights, device)
    try:
        measured = measure.measured_device(device)  # for each point's efficiency; cached after the first time
    except measure.MeasureError as exc:
        print(f"note: no efficiency column: {exc}", file=sys.stderr)
        measured = None
    launch = server.default_settings(source, device)
    if args.reasoning_parser:
        launch = dataclasses.replace(launch, reasoning_parser=args.reasoning_parser)
    return source, launch, measured


def _prepare(args: argparse.Namespace, device: sources.Device) -> tuple[PreparedRun, sources.ModelSource | None]:
    """The run as asked, validated before any server starts; the model to launch, if any."""
    preset, overrides = _preset(args)
    extra = {"search": _search(args), "price": args.price_per_gpu_hour, "gpus": args.gpus}
    if args.endpoint:
        args.endpoint = loadgen.base_url(args.endpoint)
        args.model = args.model or api.only_model(args.endpoint, args.api_key)
        return prepare_run(preset, overrides, None, device, False, _slos(args), **extra), None
    source, launch, measured = _launch_defaults(args, device)
    return prepare_run(preset, overrides, launch, device, source.is_smoke, _slos(args), measured, **extra), source


def _search(args: argparse.Namespace) -> dict | None:
    """The capacity plan's fields given (`capacity` only; `bench` runs a preset's own search, if any)."""
    if args.command != "capacity":
        return None
    return {"by": args.by, "percentile": args.percentile, "max_failed_share": args.max_failed_share,
            "upper": args.upper, "resolution": args.resolution}


def _launch(prepared: PreparedRun, device: sources.Device, source: sources.ModelSource) -> server.VLLMServer:
    if source.is_smoke:
        print(f"note: {sources.SMOKE_WARNING}", file=sys.stderr)
    srv = server.VLLMServer(device, source)
    print(f"starting vLLM ({source.served_name}); log in {server.LOG_DIR}", file=sys.stderr)
    srv.start(prepared.settings)
    status = srv.wait_ready(srv.ready_timeout_s + server.READY_MARGIN_S)
    if status.state is not server.State.READY:
        print("\n".join(status.log_tail), file=sys.stderr)
        srv.stop()
        raise server.ServerNotReady(status.message)
    print(f"note: {cores.pin_load_generator(device)}", file=sys.stderr)
    return srv


def bench_command(args: argparse.Namespace) -> int:
    device = sources.detect_device()
    if device.note:
        print(f"note: {device.note}", file=sys.stderr)
    if args.metrics_url and not args.endpoint:
        raise presets.PresetError("--metrics-url goes with --endpoint (a server launched here is read at its own "
                                  "/metrics)")
    prepared, source = _prepare(args, device)
    out_root = writable(args.out or RUNS_DIR)
    srv = _launch(prepared, device, source) if source is not None else None
    stop = threading.Event()
    try:
        target = (Target(srv.base_url, srv.served_model_name, srv.api_key) if srv is not None
                  else Target(args.endpoint, args.model, args.api_key, args.metrics_url))
        # SIGTERM (a scheduler, `kill`) and a first Ctrl-C: stop, keep and say what was measured.
        result = run_sync(prepared.meta, target, out_root=out_root, on_progress=_progress_bar(), stop=stop,
                          signals=True)
    finally:
        if srv is not None:
            srv.stop()
    return print_outcome(result)


def experiment_command(args: argparse.Namespace) -> int:
    device = sources.detect_device()
    if device.note:
        print(f"note: {device.note}", file=sys.stderr)
    if args.endpoint:
        raise presets.PresetError("an experiment's endpoints are --endpoint-a and --endpoint-b")
    if args.metrics_url:
        raise presets.PresetError("--metrics-url goes with one --endpoint, not an experiment's two")
    if (args.endpoint_a is None) != (args.endpoint_b is None):
        raise presets.PresetError("give both --endpoint-a and --endpoint-b, or neither")
    preset, overrides = _preset(args)
    endpoints = (args.endpoint_a, args.endpoint_b) if args.endpoint_a else None
    plan = experiment.plan_of(preset, endpoints, args.aa)
    if args.seed is not None:
        plan = plan.model_copy(update={"seed": args.seed})
    facts = {"price": args.price_per_gpu_hour, "gpus": args.gpus}
    repeats = args.repeats if args.repeats is not None else 3
    if endpoints:
        if args.model:
            plan = plan.model_copy(update={"arms": [a.model_copy(update={"model": args.model}) for a in plan.arms]})
        source, launch, smoke = None, None, False
    else:
        source, launch, measured = _launch_defaults(args, device)
        smoke, facts["measured"] = source.is_smoke, measured
    prep = experiment.prepare_experiment(preset, overrides, launch, device, smoke, repeats, plan, _slos(args),
                                         **facts)
    out_root = writable(args.out or RUNS_DIR)
    stop = threading.Event()
    _stop_on_signals(stop)  # between arms; while an arm runs, `run_sync`'s own handlers do the same
    srv = server.VLLMServer(device, source) if source is not None else None
    if source is not None and source.is_smoke:
        print(f"note: {sources.SMOKE_WARNING}", file=sys.stderr)
    switch = experiment.server_switch(srv, args.api_key) if srv is not None else \
        (lambda arm: experiment.endpoint_target(arm, args.api_key))
    pinned: list[bool] = []  # whether the load generator was pinned to its cores

    def ready(arm):
        if srv is not None and arm.arm.endpoint is None:
            print(f"arm {arm.name}: starting vLLM with its settings; log in {server.LOG_DIR}", file=sys.stderr)
        target = switch(arm)
        if srv is not None and not pinned:
            print(f"note: {cores.pin_load_generator(device)}", file=sys.stderr)
            pinned.append(True)
        return target

    order = " ".join(prep.order)
    print(f"experiment: {len(prep.arms)} arms, {prep.repeats} repeats each, in the order {order}", file=sys.stderr)
    try:
        result, exp = experiment.run_experiment(
            prep, ready, partial(_segment, stop), out_root, stop,
            on_arm=lambda name, i: print(f"arm {name} (segment {i + 1} of {len(prep.segments)})", file=sys.stderr))
    finally:
        if srv is not None:
            srv.stop()
    print_summary(result.summary)
    print()
    print("\n".join(experiment_lines(exp)))
    print(f"results: {result.folder}")
    return 0 if result.status is RunStatus.COMPLETED else 1


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and a first Ctrl-C set `stop`; a second Ctrl-C interrupts."""
    def handler(signum, _frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this arm's requests in flight; Ctrl-C again to abort", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _segment(experiment_stop: threading.Event, *args, **kwargs) -> RunResult:
    """One segment of an experiment, with the run's own signal handling while it runs."""
    try:
        return run_sync(*args, on_progress=_progress_bar(), signals=True, **kwargs)
    finally:
        _stop_on_signals(experiment_stop)


def experiment_lines(exp) -> list[str]:
    """An experiment's result as a person reads it: a sentence per metric, the claim, the method."""
    lines = [f"note: {exp.note}"] if exp.note else []
    lines += [a.name + f" skipped: {a.skipped}" for a in exp.arms if a.skipped]
    lines += exp.sentences
    if exp.claim is not None:
        lines.append(f"the article ({exp.claim.section}): \"{exp.claim.text}\" — {exp.claim_verdict}")
    lines.append(f"method: {exp.method}; order {' '.join(exp.order)}")
    return lines


def writable(folder: Path) -> Path:
    """The folder for run folders, made if need be; refused at once when it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise presets.PresetError(f"--out {folder}: cannot write run folders there ({exc.strerror or exc}).") from exc
    return folder


def print_outcome(result: RunResult) -> int:
    """Print the summary and how the run ended (a search: its answer); the exit status for it."""
    print_summary(result.summary)
    if result.capacity is not None:
        print(f"\n{result.capacity.sentence}\nresults: {result.folder}")
        answered = result.capacity.done or result.capacity.max_passing is not None
        return 0 if result.status is RunStatus.COMPLETED and answered else 1
    s = result.summary
    if result.message:
        how = result.message
    elif s.empty or (s["completed"] == 0).all():
        how = "no request completed" + (f": {'; '.join(s['errors'].dropna().astype(str))}" if not s.empty else "")
    elif (s["completed"] == 0).any():
        how = f"points {', '.join(str(p + 1) for p in s.loc[s['completed'] == 0, 'point'])} completed no request"
    else:
        how = "all points ran"
    print(f"\n{result.status.value}: {how}\nresults: {result.folder}")
    failed = result.status is not RunStatus.COMPLETED or result.summary.empty or (result.summary["completed"] == 0).any()
    return 1 if failed else 0


def _progress_bar():
    from tqdm import tqdm

    state: dict = {"bar": None, "point": None}

    def update(p) -> None:
        if state["point"] != p.point:
            if state["bar"] is not None:
                state["bar"].close()
            which = (f" arm {p.arm}" if p.arm else "") + (f" repeat {p.repeat + 1}/{p.repeats}" if p.repeats > 1 else "")
            where = f"probe {p.point}" if p.searching else f"point {p.point}/{p.points}"
            state["bar"] = tqdm(total=p.total, desc=where + which, unit="req", file=sys.stderr)
            state["point"] = p.point
        bar = state["bar"]
        bar.n = p.done
        bar.set_postfix_str(f"{p.tokens_per_s:.0f} tok/s, {p.failed} failed" if p.tokens_per_s is not None else p.message)
        bar.refresh()
        if p.total and p.done >= p.total:
            bar.close()

    return update


def print_summary(summary: pd.DataFrame) -> None:
    if summary.empty:
        print("no point was measured")
        return
    cols = [c for c in shown_columns(summary) if c in HEADERS]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.1f}".format):
        print(summary[cols].to_string(index=False))


def report_command(args: argparse.Namespace) -> int:
    from showcase import report as html_report

    print(html_report.write(args.run_dir))
    return 0


# -- roofline -----------------------------------------------------------------------------------------


def roofline_command(args: argparse.Namespace) -> int:
    if args.measure:
        result = measure.measured_device(sources.detect_device(), args.dtype, refresh=True)
        print(result.model_dump_json(indent=2) if args.json else result.line())
        if not args.json and args.model_config:
            shape = roofline.ModelShape.load(args.model_config)
            print(roofline.bounds_table(shape, result.as_gpu(), tp=1, dtype=args.dtype).to_string(index=False))
        return 0
    if not args.model_config or not args.gpu:
        raise roofline.RooflineError("give --model-config and --gpu, or --measure")
    shape = roofline.ModelShape.load(args.model_config)
    gpu = roofline.gpu(args.gpu)
    if args.check:
        try:
            table = pd.read_csv(args.check)
        except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            raise roofline.RooflineError(f"cannot read {args.check} as CSV: {exc}") from exc
        roofline.check_table(table, shape, gpu, tp=args.tp, dtype=args.dtype).to_csv(sys.stdout, index=False)
        return 0
    print(roofline.describe(roofline.Roofline(shape, gpu, args.tp, args.dtype)))
    print("Upper bounds (nothing can be faster): decode tokens/s summed over all streams at a mean "
          "context of 0, 1K and 8K tokens; requests/s for 1K-token prompts and 512-token replies.\n")
    print(roofline.bounds_table(shape, gpu, tp=args.tp, dtype=args.dtype).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

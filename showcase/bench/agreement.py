"""Our client beside vLLM's own (`vllm bench serve`) on the same server: the independent check.

This module owns running both clients on one workload against one server, one after the other,
and judging whether our figures agree with vLLM's within stated tolerances. vLLM's client runs
in this process from the installed vLLM (`vllm.benchmarks.serve`, as its console script would);
on a CPU-only machine `VLLM_TARGET_DEVICE=cpu` keeps its import off AVX-512 kernels. It knows
nothing of the UI; `benchmarks/agreement.py` prints the comparison and the tests assert it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from showcase import sources
from showcase.bench import run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import Workload

# Our figures agree with vLLM's client when (the real-server issue's criteria):
MIN_THROUGHPUT_RATIO = 0.85  # output tokens/s at least this share of vLLM's client's
TPOT_TOLERANCE = 0.25  # mean TPOT within this share of vLLM's client's
TTFT_RATIO, TTFT_SLACK_MS = 1.5, 20.0  # mean TTFT at most 1.5 × vLLM's client's + 20 ms


@dataclass(frozen=True)
class Figures:
    """One client's headline figures for one point."""

    client: str
    concurrency: int
    completed: int
    failed: int
    mean_ttft_ms: float
    mean_tpot_ms: float
    output_throughput: float
    flags: str = ""
    server_mean_ttft_ms: float = float("nan")  # the server's own view (its /metrics histograms); ours only


@dataclass(frozen=True)
class Tolerance:
    min_throughput_ratio: float = MIN_THROUGHPUT_RATIO
    tpot: float = TPOT_TOLERANCE
    ttft_ratio: float = TTFT_RATIO
    ttft_slack_ms: float = TTFT_SLACK_MS


def disagreements(ours: Figures, theirs: Figures, tol: Tolerance = Tolerance()) -> list[str]:
    """Why our figures do not agree with vLLM's client's; empty when they agree."""
    out = []
    if ours.failed:
        out.append(f"{ours.failed} of our requests failed")
    if theirs.failed:
        out.append(f"{theirs.failed} of vLLM's client's requests failed")
    if not ours.output_throughput >= tol.min_throughput_ratio * theirs.output_throughput:
        out.append(f"output {ours.output_throughput:.0f} tok/s < {tol.min_throughput_ratio:g} × "
                   f"{theirs.output_throughput:.0f}")
    if not abs(ours.mean_tpot_ms - theirs.mean_tpot_ms) <= tol.tpot * theirs.mean_tpot_ms:
        out.append(f"TPOT {ours.mean_tpot_ms:.2f} ms vs {theirs.mean_tpot_ms:.2f} ms (more than {tol.tpot:.0%} apart)")
    if not ours.mean_ttft_ms <= tol.ttft_ratio * theirs.mean_ttft_ms + tol.ttft_slack_ms:
        out.append(f"TTFT {ours.mean_ttft_ms:.1f} ms > {tol.ttft_ratio:g} × {theirs.mean_ttft_ms:.1f} + "
                   f"{tol.ttft_slack_ms:g} ms")
    return out


def run_ours(target: Target, concurrency: int, input_len: int, output_len: int, num_requests: int,
             out_root: Path) -> Figures:
    w = Workload(concurrency=[concurrency], input_len=[input_len], output_len=output_len,
                         num_requests=num_requests, warmup_requests=concurrency)
    result = bench.run_sync(bench.run_meta("agreement", w), target, out_root=out_root)
    row = result.summary.iloc[0]
    return Figures("ours", concurrency, int(row["completed"]), int(row["failed"]), float(row["mean_ttft_ms"]),
                   float(row["mean_tpot_ms"]), float(row["output_throughput"]),
                   "" if isinstance(row["flags"], float) else str(row["flags"]), float(row["server_mean_ttft_ms"]))


def run_vllm(target: Target, tokenizer: str, concurrency: int, input_len: int, output_len: int,
             num_requests: int) -> Figures:
    """`vllm bench serve` with the same workload, warm-ups and a fresh seed (so a prefix cache
    holding an earlier run's prompts cannot flatter it)."""
    if not sources.detect_device().is_gpu:
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.benchmarks import serve

    parser = argparse.ArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", target.base_url,
        "--model", target.model, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", str(input_len), "--random-output-len", str(output_len),
        "--num-prompts", str(num_requests), "--max-concurrency", str(concurrency), "--ignore-eos",
        "--num-warmups", str(concurrency), "--seed", str(random.getrandbits(31)), "--disable-tqdm",
        "--header", f"Authorization=Bearer {target.api_key}",
    ])
    with contextlib.redirect_stdout(io.StringIO()):  # its report is printed; we take the returned figures
        r = serve.main(args)
    return Figures("vllm bench serve", concurrency, int(r["completed"]), int(r.get("failed", 0) or 0),
                   float(r["mean_ttft_ms"]), float(r["mean_tpot_ms"]), float(r["output_throughput"]))


def mean_of(runs: list[Figures]) -> Figures:
    """One client's runs as one: mean of each figure (equal requests per run), failures summed."""
    n = len(runs)
    flags = sorted({f for r in runs for f in r.flags.split(";") if f})
    return Figures(runs[0].client, runs[0].concurrency, sum(r.completed for r in runs), sum(r.failed for r in runs),
                   sum(r.mean_ttft_ms for r in runs) / n, sum(r.mean_tpot_ms for r in runs) / n,
                   sum(r.output_throughput for r in runs) / n, ";".join(flags),
                   sum(r.server_mean_ttft_ms for r in runs) / n)


def compare(target: Target, tokenizer: str, concurrency: int, input_len: int = 256, output_len: int = 64,
            num_requests: int = 16, out_root: Path = Path("/tmp/agreement-runs")) -> tuple[Figures, Figures]:
    """(ours, theirs) on the same server and workload, each run twice in the order theirs, ours,
    ours, theirs: a small CPU server drifts by ±15 % from one run to the next, and this order
    cancels a steady drift between the two clients."""
    ours, theirs = [], []
    for who in ("theirs", "ours", "ours", "theirs"):
        if who == "ours":
            ours.append(run_ours(target, concurrency, input_len, output_len, num_requests, out_root))
        else:
            theirs.append(run_vllm(target, tokenizer, concurrency, input_len, output_len, num_requests))
    return mean_of(ours), mean_of(theirs)


def spread(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    return f"{min(finite):.1f}–{max(finite):.1f}" if finite else "—"


async def chat_figures(target: Target, input_len: int, output_len: int, times: int) -> tuple[float, float]:
    """The chat tab's own measurement (chat.stream_reply) of `times` answers to prompts of
    `input_len` tokens: mean TTFT in ms and mean tokens/s after the first token. Sampling as the
    benchmark's requests get it (the server's defaults), since sampling itself costs time per token.
    One answer first is left out, as the benchmark leaves out its warm-up: the SDK's first use in a
    process (its lazy imports, a new connection) is paid once, by the app's first chat, and here
    it alone moved the mean of four from about 25 to 90 ms on a busy machine."""
    from showcase import chat
    from showcase.bench.prompts import PromptFactory

    async with target.api() as api:
        prompts = await PromptFactory(api, target).build(input_len,
                                                         [random.getrandbits(31) for _ in range(times + 1)])
    ttfts, rates = [], []
    for k, messages in enumerate(prompts):
        stats = None
        async for _, last, _ in chat.stream_reply(target.base_url, target.api_key, target.model, messages,
                                               chat.Sampling(temperature=1.0, top_p=1.0, max_tokens=output_len)):
            stats = last
        assert stats is not None and stats.ttft_s is not None and stats.tokens_per_s is not None, "a reply streams"
        if k > 0:  # the first is the warm-up
            ttfts.append(stats.ttft_s * 1000)
            rates.append(stats.tokens_per_s)
    return sum(ttfts) / times, sum(rates) / times


def chat_vs_bench(target: Target, input_len: int = 256, output_len: int = 64, times: int = 4,
                  out_root: Path = Path("/tmp/agreement-runs")) -> tuple[float, float, Figures]:
    """The chat tab's mean TTFT (ms) and tokens/s beside our benchmark at one stream, measured
    before and after the chat's answers and averaged (the server drifts from minute to minute)."""
    import asyncio

    before = run_ours(target, 1, input_len, output_len, 2 * times, out_root)
    ttft_ms, tokens_per_s = asyncio.run(chat_figures(target, input_len, output_len, times))
    after = run_ours(target, 1, input_len, output_len, 2 * times, out_root)
    return ttft_ms, tokens_per_s, mean_of([before, after])

"""Our client beside vLLM's own `vllm bench serve` on the real vLLM server, in the same run.

Starts the server the app would start here (the CPU smoke model without a GPU, with vLLM and the
load generator on cores of their own), then, for each repetition and each concurrency, runs
vLLM's client and ours on the same workload (theirs, ours, ours, theirs; each client's two runs
averaged), and prints both with the verdict of `agreement.disagreements`; then the spread over
repetitions, and the chat tab's own TTFT and tokens/s beside what the benchmark measures for one
stream just before and after. Run from the project folder:

    .venv/bin/python -m benchmarks.agreement [--reps 3] [--levels 1,8] [--input-len 256] [--output-len 64]

A benchmark that prints figures, not a test (tests/test_agreement.py asserts the same, once).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import smoke
from showcase import cores
from showcase.bench import agreement
from showcase.bench.loadgen import Target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--levels", default="1,8")
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--num-requests", type=int, default=16)
    args = p.parse_args()
    device, _, srv, settings = smoke.this_machines_server()
    status = smoke.started(srv, settings)
    if status is None:
        return 1
    print(f"# {status.model} on {status.device}; {cores.pin_load_generator(device)}; log {status.log_path}")
    target = Target(status.base_url, srv.served_model_name, srv.api_key)
    levels = [int(x) for x in args.levels.split(",")]
    results: dict[int, list[tuple[agreement.Figures, agreement.Figures]]] = {c: [] for c in levels}
    print("| rep | streams | client | TTFT ms | the server's TTFT ms | TPOT ms | output tok/s | failed | flags | "
          "agrees |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    bad = 0
    for rep in range(1, args.reps + 1):
        for c in levels:
            ours, theirs = agreement.compare(target, settings.model, c, args.input_len, args.output_len,
                                             args.num_requests)
            results[c].append((ours, theirs))
            why = agreement.disagreements(ours, theirs)
            bad += bool(why)
            for f in (theirs, ours):
                verdict = ("yes" if not why else "NO: " + "; ".join(why)) if f is ours else ""
                server = f"{f.server_mean_ttft_ms:.1f}" if f is ours else ""
                print(f"| {rep} | {c} | {f.client} | {f.mean_ttft_ms:.1f} | {server} | {f.mean_tpot_ms:.2f} | "
                      f"{f.output_throughput:.0f} | {f.failed} | {f.flags or '—'} | {verdict} |")
    print("\nSpread over repetitions (min–max):\n")
    print("| streams | client | TTFT ms | TPOT ms | output tok/s |")
    print("| ---: | --- | --- | --- | --- |")
    for c, pairs in results.items():
        for i, name in ((1, "vllm bench serve"), (0, "ours")):
            rows = [pair[i] for pair in pairs]
            print(f"| {c} | {name} | {agreement.spread([r.mean_ttft_ms for r in rows])} | "
                  f"{agreement.spread([r.mean_tpot_ms for r in rows])} | "
                  f"{agreement.spread([r.output_throughput for r in rows])} |")
    ttft, rate, one = agreement.chat_vs_bench(target, args.input_len, args.output_len, 4)
    print(f"\nChat tab (4 answers after one warm-up, {args.input_len}-token prompts): TTFT {ttft:.1f} ms, {rate:.1f} tokens/s; "
          f"benchmark at 1 stream just before and after: TTFT {one.mean_ttft_ms:.1f} ms, "
          f"{1000 / one.mean_tpot_ms:.1f} tokens/s (1000 / TPOT)")
    srv.stop()
    print(f"\n{bad} of {args.reps * len(levels)} comparisons disagree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

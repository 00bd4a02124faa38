"""How many probes and how much wall time the capacity search needs, beside a plain sweep.

Against the stub server whose time per token grows with the streams running (5 ms + `slope` ms
per other stream, so p90 TPOT ≤ the SLO holds up to a known number of streams), for each slope it
runs the capacity search by concurrency, then a plain sweep of every concurrency level from 1 to
the first failing one (the least a sweep at the same resolution must measure to find the same
answer, knowing where to stop), and prints both: levels measured, requests sent, wall seconds,
and the answer each finds. Run from the project folder:

    .venv/bin/python -m benchmarks.capacity_search [--slopes 2,0.5,0.25] [--slo-tpot-ms 30]

This is a benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from benchmarks.client_overhead import start_stub
from showcase.bench import run as bench
from showcase.bench.capacity import CapacityPlan
from showcase.bench.loadgen import Target
from showcase.bench.workload import SLOs, Workload

ITL_MS, INPUT_LEN, OUTPUT_LEN, REQUESTS = 5.0, 32, 16, 8


def truth(slope: float, slo_ms: float) -> int:
    """The largest concurrency whose steady TPOT (5 ms + slope × (c − 1), less the first token's
    share) meets the SLO, from the stub's own rule."""
    return math.floor((slo_ms - ITL_MS) / slope) + 1


def search(url: str, slo: SLOs, upper: int, out: Path) -> tuple[bench.RunResult, float]:
    w = Workload(concurrency=[1], input_len=[INPUT_LEN], output_len=OUTPUT_LEN, num_requests=REQUESTS,
                 warmup_requests=0)
    t = time.perf_counter()
    result = bench.run_sync(bench.run_meta("search", w, slo, capacity=CapacityPlan(upper=upper)), Target(url, "stub"),
                            out_root=out)
    return result, time.perf_counter() - t


def sweep(url: str, slo: SLOs, last: int, out: Path) -> tuple[bench.RunResult, float]:
    # The same points the search would measure at each level: at least 2 requests a stream.
    # (Points set directly: a sweep of more than 64 levels is beyond what a workload may list.)
    w = Workload(concurrency=[1], input_len=[INPUT_LEN], output_len=OUTPUT_LEN, num_requests=REQUESTS,
                 warmup_requests=0)
    points = tuple(CapacityPlan(upper=last).point(w, c, c - 1) for c in range(1, last + 1))
    meta = bench.run_meta("sweep", w, slo).model_copy(update={"points": points})
    t = time.perf_counter()
    result = bench.run_sync(meta, Target(url, "stub"), out_root=out)
    return result, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slopes", default="2,0.5,0.25", help="ms per other stream, one stub each")
    p.add_argument("--slo-tpot-ms", type=float, default=30.0)
    p.add_argument("--upper", type=int, default=256)
    args = p.parse_args()
    slo = SLOs(tpot_ms=args.slo_tpot_ms)
    print(f"p90 TPOT ≤ {args.slo_tpot_ms:g} ms; stub: {ITL_MS:g} ms a token + slope per other stream; "
          f"{INPUT_LEN}-token prompts, {OUTPUT_LEN}-token replies, max({REQUESTS}, 2 × streams) requests a level\n")
    print("| slope ms | answer by the stub's setting | method | levels | requests | wall s | answer |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for slope in (float(x) for x in args.slopes.split(",")):
        proc, url = start_stub(10, ITL_MS, "--itl-per-stream-ms", str(slope))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                found, s_wall = search(url, slo, args.upper, Path(tmp))
                cap = found.capacity
                assert cap is not None
                last = int(cap.min_failing or cap.max_passing or 1)
                swept, w_wall = sweep(url, slo, last, Path(tmp))
                passing = [int(r.max_concurrency) for r in swept.summary.itertuples() if r.p90_tpot_ms <= slo.tpot_ms]
                answer = max((c for c in passing if all(x in passing for x in range(1, c + 1))), default=None)
                for name, result, wall, ans in (("search", found, s_wall, cap.max_passing),
                                                ("sweep 1…first failing", swept, w_wall, answer)):
                    n = int(result.summary["completed"].sum() + result.summary["failed"].sum())
                    print(f"| {slope:g} | {truth(slope, args.slo_tpot_ms)} | {name} | {len(result.summary)} | {n} | "
                          f"{wall:.1f} | {ans} |")
        finally:
            proc.kill()


if __name__ == "__main__":
    main()

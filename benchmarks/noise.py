"""How noisy is this machine's vLLM server, and how many repeats tell a 10 % or a 25 % difference?

Starts the server the app would start here (the CPU smoke model without a GPU, vLLM and the load
generator on cores of their own), runs an A/A experiment on it (the same settings as both arms,
ABBA order, `--repeats` repeats an arm: `engine.py experiment --aa` does the same), and prints
for each headline metric: its mean, the run-to-run spread of one repeat (coefficient of variation
over all repeats of both arms), the A/A verdict with its interval, and the repeats an arm needs
to detect a 10 % and a 25 % difference (Welch's t, 80 % power, at the experiment's simultaneous
confidence over its metrics). Run from the project folder:

    .venv/bin/python -m benchmarks.noise [--repeats 6] [--concurrency 8] [--input-len 256] [--output-len 64]

A benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import smoke
from showcase import cores, experiment
from showcase.bench import compare, stats
from showcase.bench.run import run_sync
from showcase.prepare import ad_hoc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--num-requests", type=int, default=16)
    args = p.parse_args()
    device, source, srv, settings = smoke.this_machines_server()
    preset = ad_hoc({"concurrency": [args.concurrency], "input_len": [args.input_len], "output_len": args.output_len,
                     "num_requests": args.num_requests, "warmup_requests": args.concurrency})
    plan = experiment.plan_of(preset, aa=True)
    prep = experiment.prepare_experiment(preset, None, settings, device, source.is_smoke, args.repeats, plan)
    status = smoke.started(srv, settings)
    if status is None:
        return 1
    print(f"# {status.model} on {status.device}; {cores.pin_load_generator(device)}")
    print(f"# A/A: {args.concurrency} streams, {args.input_len}-token prompts, {args.output_len}-token replies, "
          f"{args.num_requests} requests a repeat, {args.repeats} repeats an arm, order {' '.join(prep.order)}\n")
    try:
        with tempfile.TemporaryDirectory() as out:
            result, exp = experiment.run_experiment(prep, experiment.server_switch(srv, srv.api_key), run_sync,
                                                    Path(out), threading.Event())
            summary = result.summary
    finally:
        srv.stop()
    judged = [m for m, r in exp.metrics.items() if r.verdict != "not_measured"]
    each = 1 - (1 - exp.confidence) / max(1, len(judged))
    print("| metric | mean | spread of one repeat (CV) | A/A verdict | A/A 95 % CI of B − A | repeats an arm "
          "for 10 % | for 25 % |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: |")
    for m in judged:
        r = exp.metrics[m]
        values = pd.to_numeric(summary[m], errors="coerce").dropna().to_numpy()
        cv = float(np.std(values, ddof=1) / np.mean(values))
        need = [stats.repeats_to_detect(cv, e, each) for e in (0.10, 0.25)]
        print(f"| {compare.NAMES.get(m, m)} ({compare.unit(m)}) | {np.mean(values):,.1f} | {cv:.1%} | "
              f"{r.verdict.replace('_', ' ')} | {r.rel_ci[0]:+.1%} to {r.rel_ci[1]:+.1%} | "
              f"{need[0] if need[0] else '>1000'} | {need[1] if need[1] else '>1000'} |")
    print(f"\n{exp.method}; simultaneous confidence {exp.confidence:.0%} over {len(judged)} metrics "
          f"(each at {each:.2%}).")
    return 0 if all(exp.metrics[m].verdict == "no_difference" for m in judged) else 1


if __name__ == "__main__":
    sys.exit(main())

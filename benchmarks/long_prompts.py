"""How long our client takes to build exact prompts of 1K to 256K tokens, and to send them.

Against the stub server (whose tokenizer counts words, so the time is the client's own: the text,
the /tokenize round trips that check it, a megabyte-sized body), it builds 8 prompts of each
length and sends them as one point (one-token replies), printing the seconds each took. Run from
the project folder:

    .venv/bin/python -m benchmarks.long_prompts [--lengths 1024,32768,262144]

This is a benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.client_overhead import start_stub
from showcase.bench import prompts as prompt_kit
from showcase.bench import run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import Workload

PROMPTS = 8


async def build(url: str, n: int) -> tuple[float, int]:
    target = Target(url, "stub")
    async with target.api() as api:
        factory = prompt_kit.PromptFactory(api, target)
        await factory.calibrate()
        t = time.perf_counter()
        prompts = await factory.build(n, list(range(PROMPTS)))
        return time.perf_counter() - t, sum(len(p[0]["content"]) for p in prompts) // PROMPTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="1024,32768,262144")
    args = p.parse_args()
    stub, url = start_stub(5, 1)
    try:
        print(f"| prompt tokens | characters a prompt | build {PROMPTS} prompts s | run of {PROMPTS} (built and sent) s |")
        print("| ---: | ---: | ---: | ---: |")
        for n in (int(x) for x in args.lengths.split(",")):
            took, chars = asyncio.run(build(url, n))
            t = time.perf_counter()
            w = Workload(concurrency=[4], input_len=[n], output_len=1, num_requests=PROMPTS, warmup_requests=0)
            result = bench.run_sync(bench.run_meta("long", w), Target(url, "stub"), out_root="/tmp/long-prompt-runs")
            assert result.summary.iloc[0]["completed"] == PROMPTS, result.message
            print(f"| {n:,} | {chars:,} | {took:.2f} | {time.perf_counter() - t:.2f} |")
    finally:
        stub.kill()


if __name__ == "__main__":
    main()

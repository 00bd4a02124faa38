"""Writes this folder's two samples, deterministically: `python assets/samples/make_samples.py`.

prompts.jsonl: 300 prompts written for this project (questions, explanations, code, summaries of
documents of 200 to 1,800 words, reasoning, rewriting, creative writing), each with the length of
reply its kind asks for (`output_tokens`), so that a run is the same whatever the model says.
trace.jsonl: ten minutes of synthetic production traffic in the Mooncake format (`timestamp` ms,
`input_length`, `output_length`, `hash_ids` of 512-token blocks): a day's rise and fall
compressed, bursts, three shared system prompts, and conversations whose follow-ups resend their
history (so the prefix cache sees realistic reuse).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

TOPICS = ["the KV cache in a transformer", "continuous batching", "speculative decoding", "tensor parallelism",
          "paged attention", "quantization to 8 bits", "a load balancer's health checks", "prefix caching",
          "the roofline model", "memory bandwidth on a GPU", "chunked prefill", "a mixture-of-experts layer",
          "TCP keep-alive", "Poisson arrivals", "percentiles versus means", "an SLO for time to first token",
          "garbage collection pauses", "the CAP theorem", "vector databases", "retrieval-augmented generation"]
AUDIENCES = ["a new engineer on the team", "a product manager", "a ten-year-old", "a database expert",
             "a finance director deciding on a GPU budget"]
QUESTIONS = ["What is the capital of Australia?", "How many bytes are in a gibibyte?",
             "Who wrote 'The Left Hand of Darkness'?", "What does HTTP status 429 mean?",
             "Is 2,147,483,647 a prime number?", "What is the boiling point of water at 3,000 m altitude?",
             "Which planet has the shortest day?", "What is the difference between latency and throughput?",
             "How long does light take to travel from the Sun to Earth?", "What is a p99 latency?",
             "Why is the sky blue?", "What year did the first transatlantic telegraph cable work?",
             "How do I undo the last git commit but keep the changes?", "What is the unit of inductance?",
             "What does 'idempotent' mean for an HTTP request?", "How many tokens is a typical English word?"]
CODE = ["a Python function that merges overlapping intervals", "a SQL query for the top 3 customers by revenue "
        "per month", "a bash one-liner that finds the 10 largest files under a folder", "a Rust iterator adapter "
        "that yields sliding windows", "an asyncio rate limiter (token bucket) in Python", "a JavaScript debounce "
        "function with a cancel method", "a Go HTTP handler that streams server-sent events", "a unit test for a "
        "function that parses ISO 8601 durations", "a Dockerfile for a small Python web service",
        "a regular expression that matches IPv4 addresses, with an explanation"]
REASONING = ["A train leaves at 14:10 and arrives at 17:45 after two stops of 12 minutes each. How long was it "
             "moving? Show your steps.", "If 3 GPUs serve 1,200 tokens/s together and throughput scales at 90 % "
             "per added GPU, how many GPUs serve 5,000 tokens/s?", "A queue receives 8 requests a second and serves "
             "10 a second. What is the mean number in the system (M/M/1)? Explain.", "Three friends split a bill of "
             "$96 so that each pays $4 more than the previous one. Who pays what?", "Is it cheaper to serve a "
             "model at $2.50 per GPU-hour with 1,800 tokens/s or at $1.10 with 700 tokens/s? Per million tokens?"]
CREATIVE = ["a haiku about a GPU waiting for memory", "a short story (about 300 words) about a lighthouse keeper who "
            "collects radio signals", "a limerick about a benchmark that lied", "the opening paragraph of a mystery "
            "set in a data centre", "a product announcement for a coffee machine that predicts your order",
            "a dialogue between a compiler and a programmer at 3 a.m."]
REWRITE = ["Rewrite this sentence to be clearer: 'The thing that was done by the team in the previous sprint has "
           "resulted in outcomes that are, in a sense, better than expected in most respects.'",
           "Translate into French: 'The meeting is moved to Thursday; please bring the quarterly figures.'",
           "Translate into German: 'Our service was unavailable for twelve minutes because a certificate expired.'",
           "Make this email polite and short: 'Your report is late again. Send it now.'",
           "Turn these notes into three bullet points: latency up 20% after deploy, rollback fixed it, root cause "
           "unknown, need profiling, owner Sam."]
PARAGRAPHS = [
    "The harbour town woke slowly. Fishing boats came in before sunrise, their holds full of mackerel and the "
    "occasional surprised octopus, and the market filled with the smell of salt, diesel and coffee. The mayor had "
    "promised a new breakwater for ten years; the sea had answered each winter by taking a little more of the old one.",
    "In the quarterly review the operations team reported that median response time had improved by eleven percent "
    "while the ninety-ninth percentile had worsened by a third. The improvement came from a new cache in front of "
    "the search service; the regression came from requests that missed the cache and then waited behind a growing "
    "queue of batch jobs that had been moved to the same machines to save money.",
    "Photosynthesis converts light energy into chemical energy. In the light-dependent reactions, water is split and "
    "oxygen released, producing ATP and NADPH; in the Calvin cycle these carriers drive the fixation of carbon "
    "dioxide into sugars. The efficiency of the whole process rarely exceeds a few percent in field conditions.",
    "The committee considered three proposals for the new library. The first kept the historic facade and added a "
    "glass reading room behind it; the second replaced the building entirely; the third moved the library into the "
    "disused railway station across the square. Costs ranged from four to eleven million, and opinions were strong.",
    "When the migration began, every service wrote to both the old and the new database. Reads moved over one team "
    "at a time, each behind a flag that could be switched back within seconds. The last reads moved in week nine; "
    "the old database was kept read-only for another month before anyone was allowed to turn it off.",
    "Bees communicate the direction and distance of food through the waggle dance. The angle of the run relative to "
    "vertical encodes the direction relative to the sun, and its duration encodes distance. Foragers that follow the "
    "dance find the source with surprising accuracy, even when the sun is hidden behind clouds.",
    "The contract renewal raised the price per seat by fourteen percent but added priority support and a service "
    "level of four hours for critical incidents. Finance asked whether the company had ever had a critical incident "
    "that lasted longer than four hours; the answer, after some digging, was twice in three years.",
    "Night trains are returning to Europe. Operators cite demand from travellers who want to avoid short flights, "
    "though the economics remain hard: sleeping cars carry fewer passengers than seats, rolling stock is expensive, "
    "and track access charges are set by each country along the way, sometimes changing at every border.",
]
DOC_TASKS = ["Summarize the following document in five sentences.", "List the key facts in the document below as "
             "bullet points.", "What questions would a careful reader still have after reading this? List five.",
             "Write a one-paragraph executive summary of this text."]


def document(rng: random.Random, words: int) -> str:
    out, n = [], 0
    while n < words:
        p = rng.choice(PARAGRAPHS)
        out.append(p)
        n += len(p.split())
    return "\n\n".join(out)


def prompts(rng: random.Random) -> list[dict]:
    rows = []
    for q in QUESTIONS:
        rows.append({"prompt": q, "output_tokens": rng.randint(16, 96), "kind": "question"})
    for t in TOPICS:
        for a in rng.sample(AUDIENCES, 4):
            rows.append({"prompt": f"Explain {t} to {a}.", "output_tokens": rng.randint(200, 600), "kind": "explain"})
    for c in CODE:
        for variant in ("Write", "Write, with comments and type hints,", "Review and improve"):
            rows.append({"prompt": f"{variant} {c}.", "output_tokens": rng.randint(150, 500), "kind": "code"})
    for r in REASONING:
        for _ in range(5):
            rows.append({"prompt": r, "output_tokens": rng.randint(150, 400), "kind": "reasoning"})
    for c in CREATIVE:
        for _ in range(5):
            rows.append({"prompt": f"Write {c}.", "output_tokens": rng.randint(40, 450), "kind": "creative"})
    for r in REWRITE:
        for _ in range(4):
            rows.append({"prompt": r, "output_tokens": rng.randint(30, 120), "kind": "rewrite"})
    while len(rows) < 300:
        words = int(rng.choice([200, 400, 800, 1500]) * rng.uniform(0.8, 1.2))
        rows.append({"prompt": f"{rng.choice(DOC_TASKS)}\n\n{document(rng, words)}",
                     "output_tokens": rng.randint(120, 320), "kind": "document"})
    rng.shuffle(rows)
    return rows


SYSTEMS = {"assistant": (0, 2), "coder": (2, 6), "support": (6, 7)}  # shared block ids [start, end)
BLOCK = 512
MAX_INPUT = 7000  # with a reply of up to 1,024 tokens, within a context of 8,192 (the CPU smoke model's)


def rate_at(t: float) -> float:
    """Requests/s at second t of ten minutes: a day's rise and fall, and three bursts."""
    day = 1.0 + 5.0 * math.sin(math.pi * t / 600) ** 2
    burst = 6.0 if any(b <= t < b + 15 for b in (140, 330, 470)) else 0.0
    return day + burst


def trace(rng: random.Random) -> list[dict]:
    rows, t, next_id = [], 0.0, 1000
    sessions: list[dict] = []  # open conversations: their ids so far
    while True:
        t += rng.expovariate(rate_at(t))
        if t >= 600:
            break
        follow = sessions and rng.random() < 0.35
        if follow:
            s = rng.choice(sessions)
        else:
            name = rng.choice(list(SYSTEMS))
            s = {"ids": list(range(*SYSTEMS[name])), "turns": 0}
            sessions.append(s)
        new = max(1, int(rng.lognormvariate(math.log(350), 0.9)))
        blocks = math.ceil(new / BLOCK)
        s["ids"] = s["ids"] + list(range(next_id, next_id + blocks))
        next_id += blocks
        length = min(len(s["ids"]) * BLOCK - rng.randint(0, BLOCK - 1), MAX_INPUT)
        ids = s["ids"][: math.ceil(length / BLOCK)]
        out = min(1024, max(4, int(rng.lognormvariate(math.log(180), 0.7))))
        rows.append({"timestamp": int(t * 1000), "input_length": length, "output_length": out, "hash_ids": ids})
        s["turns"] += 1
        s["ids"] = ids + list(range(next_id, next_id + math.ceil(out / BLOCK)))  # the reply joins the history
        next_id += math.ceil(out / BLOCK)
        sessions = [x for x in sessions if x["turns"] < 6 and len(x["ids"]) * BLOCK < MAX_INPUT][-200:]
    return rows


def main() -> None:
    rng = random.Random(20261201)
    (HERE / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts(rng)))
    (HERE / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trace(rng)))


if __name__ == "__main__":
    main()

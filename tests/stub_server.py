"""A stub OpenAI-compatible server with known latencies, to check what a benchmark client measures.

It answers like vLLM (role chunk with the first token, one chunk per token, continuous usage,
a final usage chunk, [DONE]) after a set time to first token and a set time per token, so a
client's TTFT and TPOT can be compared with the truth. `--itl-per-stream-ms`: a time per token
that grows with the streams running (a capacity search then has a known answer).
`--batch-clock`: every stream's tokens after the first on one shared step clock of `--itl-ms`,
as a GPU batch emits them, written by the step itself, each step's frames serialized once.
GET /stub/served lists, per request, the TTFT, E2E, TPOT and inter-token gaps the stub really
produced (from receiving the request to sending a token), which under a burst of streams run a
little behind the set values; GET /stub/late says how far behind (p50, p99 and max lateness of
its tokens against its own schedule). With `--drop-idle-s` it closes,
unanswered, a request's connection that was idle longer than that (as load balancers do); GET
/stub/dropped counts them, and the connections chat requests came on. Its "tokenizer" counts
words: one token per space-separated word plus a fixed chat-template overhead. It knows nothing
of the project.

    python stub_server.py --port 8200 --ttft-ms 150 --itl-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

from aiohttp import web

TEMPLATE_OVERHEAD = 8  # tokens a chat template adds around one user message, as Qwen3's does
MODEL = "stub"
MAX_MODEL_LEN = 1_048_576  # room for a 256K-token prompt with a 32K-token reply


def count(messages: list[dict]) -> int:
    return TEMPLATE_OVERHEAD + sum(len(str(m.get("content", "")).split()) for m in messages)


def sse(obj: dict | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# vLLM's chunk fields; some clients (AIPerf) fail every request without them.
HEAD = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL}


class Stream:
    """One streamed reply on the batch clock: after its first token, the step writes its frames
    straight to its connection (an HTTP chunk each, as vLLM's server writes them)."""

    def __init__(self, transport, prompt: int, n: int, finish: str, reasoning: int) -> None:
        self.transport, self.prompt, self.n, self.finish, self.reasoning = transport, prompt, n, finish, reasoning
        self.i = 0  # tokens sent
        self.sent: list[float] = []
        self.finished = asyncio.get_running_loop().create_future()

    def frame(self) -> bytes:
        """The next token's SSE event (after the last token's, the usage event and [DONE])."""
        i = self.i
        delta = {"reasoning_content": " think"} if i < self.reasoning else {"content": " tok"}
        usage = {"prompt_tokens": self.prompt, "completion_tokens": i + 1, "total_tokens": self.prompt + i + 1}
        out = sse({**HEAD, "choices": [{"index": 0, "delta": delta,
                                       "finish_reason": self.finish if i == self.n - 1 else None}], "usage": usage})
        if i == self.n - 1:
            out += sse({**HEAD, "choices": [], "usage": usage}) + sse("[DONE]")
        return out

    def emit(self, chunk: bytes, now: float) -> None:
        if not self.transport.is_closing():
            self.transport.write(chunk)
        self.sent.append(now)
        self.i += 1


def make_app(ttft_ms: float, itl_ms: float, break_after: int | None = None,
             drop_idle_s: float | None = None, itl_per_stream_ms: float = 0.0,
             batch_clock: bool = False, reasoning_tokens: int = 0, no_histograms: bool = False,
             outside_ms: float = 0.0) -> web.Application:
    stats = {"running": 0, "dropped": 0}
    late: list[float] = []  # how late each token was written against the stub's own schedule (s)
    # With a batch clock, one step writes the next token of every stream running, every `itl_ms`,
    # as a GPU batch emits them; each step's frames are serialized once, shared by the streams at
    # the same place of the same length, so the stub's own cost stays out of the measurement.
    batch: list[Stream] = []

    async def step_clock(_app: web.Application):
        async def run() -> None:
            due = time.perf_counter()
            while True:
                due += itl_ms / 1000
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                frames: dict[tuple, bytes] = {}
                for st in list(batch):
                    key = (st.prompt, st.i, st.n, st.finish)
                    frame = frames.get(key) or frames.setdefault(key, chunked(st.frame()))
                    now = time.perf_counter()
                    late.append(now - due)
                    st.emit(frame, now)
                    if st.i == st.n:
                        batch.remove(st)
                        st.finished.set_result(None)

        task = asyncio.create_task(run())
        yield
        task.cancel()
    connections: set[object] = set()  # every connection a chat request came on (held: ids are reused)
    served: list[dict] = []  # what the stub really did, per streamed request: its own TTFT and E2E
    # The same as vLLM's latency histograms: (sum of seconds, count) per histogram, as requests end.
    hist = {name: [0.0, 0] for name in ("time_to_first_token_seconds", "e2e_request_latency_seconds",
                                        "request_queue_time_seconds", "request_prefill_time_seconds",
                                        "request_decode_time_seconds", "inter_token_latency_seconds")}

    def record(done: dict) -> None:
        served.append(done)
        for name, values in (("time_to_first_token_seconds", [done["ttft_s"]]),
                             ("e2e_request_latency_seconds", [done["e2el_s"]]), ("request_queue_time_seconds", [0.0]),
                             ("request_prefill_time_seconds", [done["ttft_s"]]),
                             ("request_decode_time_seconds", [done["e2el_s"] - done["ttft_s"]]),
                             ("inter_token_latency_seconds", done["gaps_s"])):
            hist[name][0] += sum(values)
            hist[name][1] += len(values)
    received: list[dict] = []  # what each chat request asked: its messages and lengths, and when it came
    idle_since: dict[object, float] = {}  # connection -> when its last answer ended

    async def chat(request: web.Request) -> web.StreamResponse:
        received = time.perf_counter()
        conn = request.transport
        connections.add(conn)
        if drop_idle_s is not None and received - idle_since.get(conn, received) > drop_idle_s:
            # As a load balancer does with a connection idle too long: close it, answer nothing.
            stats["dropped"] += 1
            conn.close()
            return web.Response()
        try:
            return await answer(request, received)
        finally:
            idle_since[conn] = time.perf_counter()

    async def answer(request: web.Request, received_at: float) -> web.StreamResponse:
        body = await request.json()
        if outside_ms:  # as an API server's work before the engine's clock starts: outside its histograms
            await asyncio.sleep(outside_ms / 1000)
            received_at = time.perf_counter()
        prompt = count(body["messages"])
        asked = body.get("max_completion_tokens") or body.get("max_tokens")  # vLLM honours both
        received.append({"messages": body["messages"], "max_tokens": asked, "ignore_eos": body.get("ignore_eos"),
                         "t": received_at})
        n = int(asked or 16)  # without a length the "model" stops after 16 tokens of its own
        stop_reason = "length" if asked else "stop"
        if prompt + n > MAX_MODEL_LEN:
            return web.json_response({"error": {"message": "too long", "code": 400}}, status=400)
        start = time.perf_counter()
        stats["running"] += 1
        try:
            if not body.get("stream"):
                await asyncio.sleep((ttft_ms + itl_ms * (n - 1)) / 1000)
                usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
                return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant",
                                          "content": " tok" * n}}], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            if batch_clock:
                return await on_the_clock(request, resp, received_at, start, prompt, n, stop_reason)

            async def event(obj: dict | str) -> None:
                await resp.write(sse(obj))

            def usage_of(done: int) -> dict:
                return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

            first = last = answer_first = None
            sent: list[float] = []
            due = start + ttft_ms / 1000
            for i in range(n):
                # absolute deadlines, so timer jitter does not accumulate over a reply
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                this_due = due
                # A loaded server steps slower: each token's gap grows with the streams running.
                due += (itl_ms + itl_per_stream_ms * (stats["running"] - 1)) / 1000
                if break_after is not None and i == break_after:
                    request.transport.close()  # the stream breaks midway
                    return resp
                if i == 0:
                    await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                                 "usage": usage_of(0)})
                # perf_counter is CLOCK_MONOTONIC, shared by processes: a client can compare stamps.
                last = time.perf_counter()
                late.append(last - this_due)
                first = first or last
                sent.append(last)
                finish = stop_reason if i == n - 1 else None  # as vLLM: the last token's chunk says why it ended
                # A reasoning model's first tokens are its reasoning, in a field of their own.
                delta = {"reasoning_content": " think"} if i < reasoning_tokens else {"content": " tok"}
                answer_first = answer_first or (last if i >= reasoning_tokens else None)
                await event({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                             "usage": usage_of(i + 1)})
            await event({**HEAD, "choices": [], "usage": usage_of(n)})
            await event("[DONE]")
            # The body's closing chunk follows [DONE] in a write of its own, a moment later, as from
            # a server whose generator has still to finish: a client must read to the end.
            record(truth(received_at, sent, reasoning_tokens))
            await asyncio.sleep(0.005)
            return resp
        finally:
            stats["running"] -= 1

    async def on_the_clock(request, resp, received_at, start, prompt, n, stop_reason) -> web.StreamResponse:
        """A streamed reply whose first token comes after the TTFT, the rest on the batch's steps."""
        due = start + ttft_ms / 1000
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        st = Stream(request.transport, prompt, n, stop_reason, reasoning_tokens)
        role = sse({**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}})
        now = time.perf_counter()
        late.append(now - due)
        first = role + st.frame()
        st.sent.append(now)
        st.i = 1
        await resp.write(first)  # through aiohttp: it sends the head first, then this as one chunk
        if st.i < n:
            batch.append(st)
            await st.finished
        record(truth(received_at, st.sent, reasoning_tokens))
        await asyncio.sleep(0.005)  # the body's closing chunk in a write of its own, as above
        with contextlib.suppress(ConnectionError):  # a client may close as soon as it has read [DONE]
            await resp.write_eof()
        return resp

    def truth(received_at: float, sent: list[float], reasoning: int) -> dict:
        first, last, n = sent[0], sent[-1], len(sent)
        return {"t_received": received_at, "t_end": last, "tokens": n,
                "ttft_s": first - received_at, "e2el_s": last - received_at,
                "ttft_answer_s": sent[reasoning] - received_at if reasoning < n else None,
                "tpot_s": (last - first) / (n - 1) if n > 1 else None,
                "gaps_s": [b - a for a, b in zip(sent, sent[1:])]}

    async def lateness(_: web.Request) -> web.Response:
        """How late the stub wrote its tokens against its own schedule: if this is large, a
        client's error against the stub's truth is not the client's alone."""
        ordered = sorted(late)
        pick = (lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]) if ordered else (lambda q: None)
        return web.json_response({"tokens": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                                  "max_ms": 1000 * ordered[-1] if ordered else None})

    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        if "messages" in body:
            n = count(body["messages"])
        else:
            n = len(body.get("prompt", "").split())
        return web.json_response({"count": n, "max_model_len": MAX_MODEL_LEN, "tokens": []})

    async def served_log(_: web.Request) -> web.Response:
        return web.json_response(served)

    async def received_log(_: web.Request) -> web.Response:
        return web.json_response(received)

    async def dropped(_: web.Request) -> web.Response:
        return web.json_response({"dropped": stats["dropped"], "connections": len(connections)})

    async def detokenize(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"prompt": " tok" * len(body.get("tokens", []))})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": MODEL, "max_model_len": MAX_MODEL_LEN}]})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    def histograms() -> str:
        """vLLM's latency histograms (sums and counts; one bucket, +Inf) of the streamed requests served,
        from the stub's own truth: the engine's view of a server whose engine is the stub."""
        out = []
        for name, (total, count) in hist.items():
            labels = f'model_name="{MODEL}"'
            out += [f"# TYPE vllm:{name} histogram", f'vllm:{name}_bucket{{{labels},le="+Inf"}} {count}',
                    f"vllm:{name}_count{{{labels}}} {count}", f"vllm:{name}_sum{{{labels}}} {total}"]
        return "\n".join(out) + "\n"

    def gauges() -> str:
        return ("# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{model_name="{MODEL}"}} {stats["running"]}\n'
                "# TYPE vllm:kv_cache_usage_perc gauge\n"
                f'vllm:kv_cache_usage_perc{{model_name="{MODEL}"}} 0.0\n')

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=gauges() + ("" if no_histograms else histograms()))

    async def engine_metrics(_: web.Request) -> web.Response:
        """Always with histograms: as an engine's own /metrics behind a router whose /metrics has none."""
        return web.Response(text=gauges() + histograms())

    app = web.Application(client_max_size=256 * 1024 * 1024)  # a 256K-token prompt is megabytes, as vLLM takes them
    if batch_clock:
        app.cleanup_ctx.append(step_clock)
    app.add_routes([
        web.post("/v1/chat/completions", chat), web.post("/tokenize", tokenize),
        web.post("/detokenize", detokenize), web.get("/v1/models", models),
        web.get("/health", health), web.get("/metrics", metrics), web.get("/stub/served", served_log),
        web.get("/stub/dropped", dropped), web.get("/stub/received", received_log),
        web.get("/stub/late", lateness), web.get("/stub/engine-metrics", engine_metrics),
    ])
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--ttft-ms", type=float, default=150)
    p.add_argument("--itl-ms", type=float, default=20)
    p.add_argument("--break-after", type=int, default=None, help="close every stream after this many tokens")
    p.add_argument("--batch-clock", action="store_true",
                   help="every stream's next token on one shared step clock of --itl-ms, as a GPU batch emits them")
    p.add_argument("--itl-per-stream-ms", type=float, default=0.0,
                   help="each token's gap grows by this much per other stream running (a loaded server)")
    p.add_argument("--reasoning-tokens", type=int, default=0,
                   help="the first N tokens of every reply are reasoning (reasoning_content), as a thinking model's")
    p.add_argument("--outside-ms", type=float, default=0.0,
                   help="wait this long before the stub's clock starts (its truth and histograms leave it out)")
    p.add_argument("--no-histograms", action="store_true",
                   help="/metrics without latency histograms, as a router's (GET /stub/engine-metrics has them)")
    p.add_argument("--drop-idle-s", type=float, default=None,
                   help="close, unanswered, a request's connection when it was idle longer than this")
    args = p.parse_args()
    try:
        import uvloop  # a faster loop keeps the stub's own timing error small at high concurrency

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.ttft_ms, args.itl_ms, args.break_after, args.drop_idle_s, args.itl_per_stream_ms,
                         args.batch_clock, args.reasoning_tokens, args.no_histograms, args.outside_ms),
                host="127.0.0.1",
                port=args.port, print=None, access_log=None, keepalive_timeout=3600)


if __name__ == "__main__":
    main()

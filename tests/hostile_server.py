"""A server that misbehaves on purpose, to check that a benchmark neither hangs nor crashes on it.

It answers like `stub_server.py` (word-counting tokenizer, 2 ms a token) except for one fault,
which hits every other chat request (so good and bad answers mix in one point) or one side route:

    python hostile_server.py --port 8300 --fault 'event:{"choices": 42}'

Faults: `event:RAW` (a streamed reply's content event is RAW), `usage:RAW` (its completion_tokens
is RAW, written as is), `http500-binary` (HTTP 500 with a body that is not UTF-8), `body:RAW` (a
non-streamed reply's body is RAW), `tokenize-hang` (/tokenize never answers), `models-hang`,
`version-hang`, `chat-hang` (every chat request waits for ever), `endless` (a streamed reply whose one line never ends), `redirect` (a 307 to another port), `models:RAW` and `tokenize:RAW` (those routes answer RAW). It knows nothing of the
project.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

MODEL = "stub"


def make_app(fault: str) -> web.Application:
    kind, _, raw = fault.partition(":")
    calls = {"chat": 0}

    def words(messages: list[dict]) -> int:
        return 8 + sum(len(str(m.get("content", "")).split()) for m in messages)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        calls["chat"] += 1
        bad = calls["chat"] % 2 == 0
        n, prompt = int(body.get("max_completion_tokens") or body.get("max_tokens") or 8), words(body["messages"])
        if kind == "chat-hang":  # accepts every request and never answers
            await asyncio.sleep(3600)
        if bad and kind == "redirect":  # to another port: a client must not follow it silently
            raise web.HTTPTemporaryRedirect(location="http://127.0.0.1:9/v1/chat/completions")
        if bad and kind == "http500-binary":
            return web.Response(status=500, body=b"\xff\xfe\xfa internal \x80\x81")
        if not body.get("stream"):
            if bad and kind == "body":
                return web.Response(text=raw, content_type="application/json")
            return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * n}}],
                                      "usage": {"prompt_tokens": prompt, "completion_tokens": n}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if kind == "endless":  # one SSE line that never ends (64 MiB at most, then the connection closes)
            await resp.write(b"data: ")
            for _ in range(1024):
                await resp.write(b"a" * 65536)
            return resp
        for i in range(n):
            await asyncio.sleep(0.002)
            done = str(i + 1) if not (bad and kind == "usage") else raw
            event = raw if bad and kind == "event" and i == 1 else (
                '{"choices": [{"index": 0, "delta": {"content": " x"}}], "usage": {"prompt_tokens": '
                f'{prompt}, "completion_tokens": {done}}}}}')
            await resp.write(f"data: {event}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def tokenize(request: web.Request) -> web.Response:
        if kind == "tokenize-hang":
            await asyncio.sleep(3600)
        if kind == "tokenize":
            return web.Response(text=raw, content_type="application/json")
        body = await request.json()
        n = words(body["messages"]) if "messages" in body else len(body.get("prompt", "").split())
        return web.json_response({"count": n, "max_model_len": 65536, "tokens": []})

    async def models(_: web.Request) -> web.Response:
        if kind == "models-hang":
            await asyncio.sleep(3600)
        if kind == "models":
            return web.Response(text=raw, content_type="application/json")
        return web.json_response({"data": [{"id": MODEL, "max_model_len": 65536}]})

    async def version(_: web.Request) -> web.Response:
        if kind == "version-hang":
            await asyncio.sleep(3600)
        return web.json_response({"version": "hostile"})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", chat), web.post("/tokenize", tokenize),
                    web.get("/v1/models", models), web.get("/version", version), web.get("/health", health)])
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fault", default="none")
    args = p.parse_args()
    web.run_app(make_app(args.fault), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

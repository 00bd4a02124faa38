"""The chat: streaming one reply from the server through the openai SDK, with its own timings.

This module owns the chat history's operations (a message history in Gradio's messages format:
add a user message, retry, undo, a note under an answer), turning it into OpenAI messages,
streaming a reply, timing it (time to first token, tokens from the server's usage, tokens/s),
closing the stream when the caller stops (so vLLM aborts the request), and turning API failures
into `ChatError` messages a person can act on. It knows nothing about Gradio components or the
vLLM process.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
import openai

from showcase.errors import UserError

# A person reads no faster than this; every update costs the UI a render and the app a message per
# visitor, so tokens arriving faster are sent together.
UPDATE_INTERVAL_S = 0.05


class ChatError(UserError):
    """The reply failed; the message says why in words for the person chatting."""


CHAT_CONNECT_S = 10.0
CHAT_STALL_S = 120.0  # the longest wait for the first token or between two; a long prompt's prefill fits
CHAT_TOTAL_S = 3600.0
MAX_LINE_BYTES = 1 << 20  # one SSE line this long is no token chunk: the stream is given up, not buffered
MAX_TOKENS = 1_048_576  # a reply longer than any served context is a typo, not a request


def clean(text: object, what: str = "message") -> str:
    """Text to send: a string, with any lone surrogate (invalid in UTF-8, as a broken client may
    send) replaced, so it cannot fail deep in the SDK; anything else is a `ChatError`."""
    if not isinstance(text, str):
        raise ChatError(f"the {what} must be text, not {type(text).__name__}.")
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 512

    @classmethod
    def of(cls, temperature: Any, top_p: Any, max_tokens: Any) -> Sampling:
        """From what a person or an API caller sent: numbers in range, or a `ChatError` saying which is not."""
        try:
            t, p, n = float(temperature), float(top_p), float(max_tokens)
        except (TypeError, ValueError):
            raise ChatError("temperature, top_p and max_tokens must be numbers.") from None
        if not (math.isfinite(t) and 0 <= t <= 2):
            raise ChatError(f"temperature must be between 0 and 2, not {temperature!r}.")
        if not (math.isfinite(p) and 0 < p <= 1):
            raise ChatError(f"top_p must be above 0 and at most 1, not {top_p!r}.")
        if not (math.isfinite(n) and 1 <= n <= MAX_TOKENS and n == int(n)):
            raise ChatError(f"max_tokens must be a whole number from 1 to {MAX_TOKENS:,}, not {max_tokens!r}.")
        return cls(t, p, int(n))


@dataclass(frozen=True)
class ReplyStats:
    """Measured for one answer: from sending to the first token of any kind (a reasoning model's
    reasoning comes first), to the first token of the answer, and over the whole reply."""

    ttft_s: float | None
    seconds: float
    tokens: int | None  # from the server's usage: reasoning and answer, counted once
    finish_reason: str | None
    answer_ttft_s: float | None = None  # to the first answer token; the same as ttft_s without reasoning

    @property
    def thinking_s(self) -> float | None:
        """How long the model reasoned before answering (None: it did not)."""
        if self.ttft_s is None or self.answer_ttft_s is None or self.answer_ttft_s <= self.ttft_s:
            return None
        return self.answer_ttft_s - self.ttft_s

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens after the first, over the time after the first (the decode rate)."""
        if not self.tokens or self.tokens < 2 or self.ttft_s is None or self.seconds <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.seconds - self.ttft_s)

    def line(self) -> str:
        parts = [f"first token {self.ttft_s:.2f} s" if self.ttft_s is not None else "no token"]
        if self.thinking_s is not None:
            parts[0] += " (thinking)"
            parts.append(f"first answer token {self.answer_ttft_s:.2f} s")
        if self.tokens is not None:
            parts.append(f"{self.tokens} tokens")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:.1f} tokens/s")
        parts.append(f"{self.seconds:.1f} s in all")
        if self.finish_reason == "length":
            parts.append("stopped at max tokens")
        return " · ".join(parts)


def text_of(content: object) -> str:
    """Gradio 6 message content (a string, or a list of blocks) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(block) for block in content)
    if isinstance(content, dict):
        return str(content.get("text", "")) if content.get("type", "text") == "text" else ""
    return ""


def to_openai(history: list[dict], system_prompt: str = "") -> list[dict]:
    """Plain {role, content} messages; the stats lines under answers (they carry metadata) are left out."""
    system_prompt = clean(system_prompt, "system prompt")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for m in history:
        if m.get("metadata") or m.get("role") not in ("user", "assistant"):
            continue
        text = clean(text_of(m.get("content")))
        if text:
            messages.append({"role": m["role"], "content": text})
    return messages


# -- the history ------------------------------------------------------------------------------------


def note(text: str) -> dict:
    """A line under an answer (stats or an error); messages with metadata are never sent to the model."""
    return {"role": "assistant", "content": "", "metadata": {"title": text}}


def thinking(reasoning: str, stats: ReplyStats | None) -> dict:
    """A reasoning model's reasoning as a folding block: pending while the reply streams, then done,
    with how long the model thought."""
    if stats is None:
        return {"role": "assistant", "content": reasoning, "metadata": {"title": "Thinking…", "status": "pending"}}
    took = stats.thinking_s
    meta = {"title": f"Thinking ({took:.1f} s)" if took is not None else "Thinking", "status": "done"}
    return {"role": "assistant", "content": reasoning, "metadata": meta | ({"duration": took} if took else {})}


def add_user(history: list[dict], message: str) -> list[dict]:
    return list(history) + [{"role": "user", "content": message}]


def last_user_index(history: list[dict]) -> int:
    return max((i for i, m in enumerate(history) if m["role"] == "user" and not m.get("metadata")), default=-1)


def retry(history: list[dict]) -> list[dict]:
    """The history up to and with the last user message, to answer it again."""
    i = last_user_index(history)
    return history[: i + 1] if i >= 0 else history


def undo(history: list[dict]) -> tuple[list[dict], str]:
    """The history before the last user message, and that message's text (back in the input box)."""
    i = last_user_index(history)
    if i < 0:
        return history, ""
    return history[:i], text_of(history[i]["content"])


def with_error(history: list[dict], text: str) -> list[dict]:
    """The history with an unanswered (empty) reply taken away and the error said under it."""
    history = list(history)
    if history and history[-1]["role"] == "assistant" and not history[-1].get("metadata") and not history[-1]["content"]:
        history.pop()
    return history + [note(f"⚠️ {text}")]


class _LineTooLong(Exception):
    pass


class _CappedLines(httpx.AsyncByteStream):
    """A response body that fails once a single line grows past `MAX_LINE_BYTES`: an endless SSE
    line would otherwise be buffered whole by the SDK (hundreds of MB in seconds)."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self):
        run = 0
        async for chunk in self.inner:
            cut = chunk.rfind(b"\n")
            run = len(chunk) - cut - 1 if cut >= 0 else run + len(chunk)
            if run > MAX_LINE_BYTES:
                raise _LineTooLong()
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CappedTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await super().handle_async_request(request)
        assert isinstance(resp.stream, httpx.AsyncByteStream)  # an async transport's
        return httpx.Response(resp.status_code, headers=resp.headers, stream=_CappedLines(resp.stream),
                              extensions=resp.extensions)


def _explain(exc: Exception) -> str:
    if isinstance(exc, openai.APIConnectionError):
        return "The model server cannot be reached: it may be starting or down. Try again in a moment."
    if isinstance(exc, openai.APITimeoutError):
        return f"The model server sent nothing for {CHAT_STALL_S:g} s (no first token, or the stream stalled)."
    if isinstance(exc, openai.APIStatusError):
        try:
            detail = exc.response.json().get("error", {}).get("message") or exc.message
        except ValueError:
            detail = exc.message
        return f"The model server refused the request (HTTP {exc.status_code}): {detail}"
    return f"The reply failed: {exc}"


class Streamed(NamedTuple):
    """A reply so far: the answer's text, its stats (once, at the end), and a reasoning model's reasoning."""

    text: str
    stats: ReplyStats | None
    reasoning: str = ""


def _reasoning_of(delta: object) -> str:
    """A reasoning parser's text in a delta: `reasoning` (vLLM ≥ 0.10) or `reasoning_content` (before)."""
    piece = getattr(delta, "reasoning", None) or getattr(delta, "reasoning_content", None) or ""
    if not isinstance(piece, str):
        raise TypeError(f"reasoning is {type(piece).__name__}")
    return piece


# No answer, or a stream that stops, for CHAT_STALL_S (to the first token or between two) ends the
# reply with that reason instead of holding the chat for the SDK's 10 minutes.
_TIMEOUT = httpx.Timeout(CHAT_TOTAL_S, connect=CHAT_CONNECT_S, read=CHAT_STALL_S)
KEEPALIVE_S = 1.0  # an idle pooled connection is closed after this (vLLM's server drops them after 5 s)
_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {(base, key): client}


def _client(base_url: str, api_key: str) -> openai.AsyncOpenAI:
    """One SDK client per server and event loop (its connections belong to that loop), kept for
    every answer: making one costs 35–65 ms (its TLS context), which a stakeholder would wait for
    before each first token (benchmarks/chat_latency.py)."""
    clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
    if (base_url, api_key) not in clients:
        http = httpx.AsyncClient(transport=_CappedTransport(limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S)),
                                 timeout=_TIMEOUT)
        clients[base_url, api_key] = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0,
                                                        timeout=_TIMEOUT, http_client=http)
    return clients[base_url, api_key]


async def stream_reply(
    base_url: str, api_key: str, model: str, messages: list[dict], sampling: Sampling,
    update_interval_s: float = UPDATE_INTERVAL_S,
) -> AsyncIterator[Streamed]:
    """Yield the reply so far while streaming (stats None), then once with its stats.

    The first content is yielded at once; after that at most one update per `update_interval_s`
    (the stats still time every chunk). If the caller stops iterating (Gradio's stop cancels the
    task), the stream is closed, so the server sees the disconnect and aborts the request.
    """
    client = _client(base_url, api_key)
    start = time.perf_counter()
    ttft = answer_ttft = last_update = None
    text, thought, tokens, finish = "", "", None, None
    try:
        stream = await client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True},
            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
        )
        try:
            async for chunk in stream:
                # Chunks already buffered are parsed without any real wait; without this, one fast
                # stream holds the event loop (other visitors, and a stop) for as long as its backlog.
                await asyncio.sleep(0)
                try:
                    usage, choices = chunk.usage, chunk.choices
                    if usage is not None:
                        tokens = usage.completion_tokens
                    if not choices:
                        continue
                    choice = choices[0]
                    finish = choice.finish_reason or finish
                    piece = choice.delta.content or ""
                    if not isinstance(piece, str):
                        raise TypeError(f"content is {type(piece).__name__}")
                    reasoning = _reasoning_of(choice.delta)
                except (AttributeError, TypeError, IndexError) as exc:
                    raise ChatError(f"The model server sent a malformed stream ({exc}); the reply stops here.") from exc
                if piece or reasoning:
                    now = time.perf_counter()
                    ttft = ttft if ttft is not None else now - start
                    answer_ttft = answer_ttft if answer_ttft is not None or not piece else now - start
                    text, thought = text + piece, thought + reasoning
                    if last_update is None or now - last_update >= update_interval_s:
                        last_update = now
                        yield Streamed(text, None, thought)
        finally:
            await stream.close()
    except openai.OpenAIError as exc:
        raise ChatError(_explain(exc)) from exc
    except _LineTooLong as exc:
        raise ChatError(f"The model server sent a stream line longer than {MAX_LINE_BYTES >> 20} MiB; "
                        "the reply stops here.") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # an event the SDK cannot parse
        raise ChatError(f"The model server sent a malformed stream ({exc}); the reply stops here.") from exc
    if finish is None:
        raise ChatError("The stream ended before the model server said the reply was complete: it may be cut short.")
    yield Streamed(text, ReplyStats(ttft, time.perf_counter() - start, tokens, finish, answer_ttft), thought)


async def answer(history: list[dict], base_url: str, api_key: str, model: str, system_prompt: str,
                 sampling: Sampling) -> AsyncIterator[list[dict]]:
    """The history with the reply streaming into it, then its timings (or its error) noted under it.
    A reasoning model's reasoning streams into a "thinking" block above the answer (a message with
    metadata: shown folded once done, never sent back to the model)."""
    messages = to_openai(history, system_prompt)
    before = list(history)
    try:
        async for text, stats, reasoning in stream_reply(base_url, api_key, model, messages, sampling):
            shown = [thinking(reasoning, stats)] if reasoning else []
            history = before + shown + [{"role": "assistant", "content": text}]
            if stats is not None:
                history.append(note(f"⏱ {stats.line()}"))
            yield history
    except ChatError as exc:
        yield with_error(history, str(exc))

"""What an OpenAI-compatible server's answers must look like, checked cheaply as they arrive.

This module owns the SSE framing (`SSESplitter`: `data:` payloads from any chunking, each read
scanned once, an event capped at `MAX_EVENT_BYTES`) and the shape of a chat completion, streamed
or not (`Answer`, decoded by msgspec straight into typed fields, the rest of a chunk skipped
unread: a seventh of `json.loads`' cost): an object with a list of at most one choice, text where
text belongs, usage counts that are whole numbers of 0 or more and no more output than asked.
Anything else is `MalformedAnswer`, which fails that one request with the reason. It does no I/O
and keeps no time.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_EVENT_BYTES = 4 * 1024 * 1024  # one SSE event this long is no token chunk: a broken or hostile server


class MalformedAnswer(ValueError):
    """An answer that is not what an OpenAI-compatible server sends: that request fails with the reason."""


class SSESplitter:
    """Splits a byte stream into SSE `data:` payloads; any chunking, any line length up to
    `MAX_EVENT_BYTES` (beyond it `MalformedAnswer`). Each read is scanned once: the buffer is
    searched only from where the last search ended."""

    def __init__(self) -> None:
        self._buf = b""
        self._cr = b""  # a read that ended in \r: its \n may start the next

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buf and not self._cr and data.endswith(b"\n\n") and b"\r" not in data:
            # The common read: whole events and nothing else (a server writes an event at a time),
            # most often one event of one data line.
            if data.startswith(b"data:") and data.find(b"\n") == len(data) - 2:
                return [data[5:-2].lstrip()]
            return [p for event in data[:-2].split(b"\n\n") if (p := self._payload(event)) is not None]
        data = self._cr + data
        self._cr = b"\r" if data.endswith(b"\r") else b""
        data = data[:-1] if self._cr else data
        start = max(0, len(self._buf) - 1)
        self._buf += data.replace(b"\r\n", b"\n")
        payloads = []
        while (cut := self._buf.find(b"\n\n", start)) >= 0:
            event, self._buf, start = self._buf[:cut], self._buf[cut + 2:], 0
            if (payload := self._payload(event)) is not None:
                payloads.append(payload)
        if len(self._buf) > MAX_EVENT_BYTES:
            raise MalformedAnswer(f"a stream event longer than {MAX_EVENT_BYTES // 2**20} MiB")
        return payloads

    @staticmethod
    def _payload(event: bytes) -> bytes | None:
        """An event's data (its `data:` lines joined), or None for an event without any (a comment)."""
        if event.startswith(b"data:") and b"\n" not in event:
            return event[5:].lstrip()
        lines = [ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
        return b"\n".join(lines) if lines else None


ERROR_CHARS = 300  # an error reason is cut here: enough to read, short enough for a table cell
ERROR_BYTES = 16 * 1024  # of an error response's body, read at most


def error_text(obj: object) -> str:
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:ERROR_CHARS]
        return str(err)[:ERROR_CHARS]
    return str(obj)[:ERROR_CHARS]


Count = Annotated[int, msgspec.Meta(ge=0, lt=2**40)]  # a number of tokens: whole, 0 or more, not absurd
# The records below hold no cycles: untracked by the garbage collector (gc=False), a token's
# chunk costs it nothing.


class Message(msgspec.Struct, gc=False):
    """A choice's delta (streamed) or message (whole): the answer, or a reasoning model's reasoning."""

    content: str | None = None
    reasoning: str | None = None  # vLLM's name for it since 0.10; reasoning_content before
    reasoning_content: str | None = None


class Choice(msgspec.Struct, gc=False):
    delta: Message | None = None
    message: Message | None = None
    text: str | None = None  # a completion's, not a chat completion's

    def parts(self) -> tuple[str | None, str | None, str | None]:
        m = self.delta or self.message
        return (m.content, m.reasoning or m.reasoning_content, self.text) if m else (None, None, self.text)

    def content(self) -> str:
        """Text of any kind: the answer, a reasoning model's reasoning, a completion's text."""
        content, reasoning, text = self.parts()
        return (content or "") + (reasoning or "") + (text or "")

    def answer(self) -> str:
        """The answer's text only (a reasoning model's reasoning left out)."""
        content, _, text = self.parts()
        return (content or "") + (text or "")


class Details(msgspec.Struct, gc=False):
    cached_tokens: Count | None = None


class Usage(msgspec.Struct, gc=False):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    prompt_tokens_details: Details | None = None


class Answer(msgspec.Struct, gc=False):
    """A streamed chunk or a whole response: only the fields a benchmark reads, each checked for
    its type as it is decoded (everything else in it is skipped unread)."""

    choices: list[Choice] | None = None
    usage: Usage | None = None
    error: object = None


_DECODER = msgspec.json.Decoder(Answer)


class NotJSON(ValueError):
    """Bytes that are not JSON at all."""


def decoded(payload: bytes, asked: int | None) -> Answer:
    """One event's or response's JSON, checked: an object whose choices are a list of at most one
    choice, text where text belongs, usage counts of tokens, no more output than `asked`."""
    try:
        answer = _DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        raise MalformedAnswer(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise NotJSON(str(exc)) from None
    if answer.choices is not None and len(answer.choices) > 1:
        raise MalformedAnswer(f"{len(answer.choices)} choices where one was asked")
    usage = answer.usage
    if usage is not None and asked is not None and (usage.completion_tokens or 0) > asked:
        raise MalformedAnswer(f"usage says {usage.completion_tokens} output tokens where {asked} were asked")
    return answer

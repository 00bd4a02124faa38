"""What an OpenAI-compatible server's answers must look like, checked cheaply as they arrive.

This module owns the SSE framing (`SSESplitter`: `data:` payloads from any chunking, each read
scanned once, an event capped at `MAX_EVENT_BYTES`) and the shape of a chat completion, streamed
or not: an object with a list of at most one choice, text where text belongs, usage counts that
are whole numbers of 0 or more and no more output than asked. Anything else is `MalformedAnswer`,
which fails that one request with the reason. It does no I/O and keeps no time.
"""

from __future__ import annotations


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

    def feed(self, data: bytes) -> list[str]:
        data = self._cr + data
        self._cr = b"\r" if data.endswith(b"\r") else b""
        data = data[:-1] if self._cr else data
        start = max(0, len(self._buf) - 1)
        self._buf += data.replace(b"\r\n", b"\n")
        payloads = []
        while (cut := self._buf.find(b"\n\n", start)) >= 0:
            event, self._buf, start = self._buf[:cut], self._buf[cut + 2:], 0
            lines = [ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
            if lines:
                payloads.append(b"\n".join(lines).decode("utf-8", "replace"))
        if len(self._buf) > MAX_EVENT_BYTES:
            raise MalformedAnswer(f"a stream event longer than {MAX_EVENT_BYTES // 2**20} MiB")
        return payloads


ERROR_CHARS = 300  # an error reason is cut here: enough to read, short enough for a table cell
ERROR_BYTES = 16 * 1024  # of an error response's body, read at most


def error_text(obj: object) -> str:
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:ERROR_CHARS]
        return str(err)[:ERROR_CHARS]
    return str(obj)[:ERROR_CHARS]


def _count(usage: dict, key: str) -> int | None:
    """A usage count: a whole number of 0 or more, or absent; anything else is malformed."""
    value = usage.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
        raise MalformedAnswer(f"usage {key} is {value!r}, not a count of tokens")
    return value


def checked_usage(obj: dict, asked: int | None) -> dict | None:
    usage = obj.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise MalformedAnswer(f"usage is {type(usage).__name__}, not an object")
    out = _count(usage, "completion_tokens")
    if out is not None and asked is not None and out > asked:
        raise MalformedAnswer(f"usage says {out} output tokens where {asked} were asked")
    _count(usage, "prompt_tokens")
    details = usage.get("prompt_tokens_details")
    if details is not None and not isinstance(details, dict):
        raise MalformedAnswer("usage prompt_tokens_details is not an object")
    if details:
        _count(details, "cached_tokens")
    return usage


def choices_of(obj: object) -> list[dict]:
    """A chunk's or response's choices, checked: an object with a list of (at most one) objects."""
    if not isinstance(obj, dict):
        raise MalformedAnswer(f"a {type(obj).__name__}, not a JSON object")
    choices = obj.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise MalformedAnswer("choices is not a list of objects")
    if len(choices) > 1:
        raise MalformedAnswer(f"{len(choices)} choices where one was asked")
    return choices


def _parts(choice: dict) -> tuple[str | None, str | None, str | None]:
    delta = choice.get("delta") or choice.get("message") or {}
    if not isinstance(delta, dict):
        raise MalformedAnswer("delta is not an object")
    parts = (delta.get("content"), delta.get("reasoning") or delta.get("reasoning_content"), choice.get("text"))
    if not all(p is None or isinstance(p, str) for p in parts):
        raise MalformedAnswer("content is not text")
    return parts


def content_of(choice: dict) -> str:
    """A choice's text of any kind: the answer, a reasoning model's reasoning, a completion's text."""
    return "".join(p for p in _parts(choice) if p)


def answer_of(choice: dict) -> str:
    """The answer's text only (a reasoning model's reasoning left out)."""
    content, _, text = _parts(choice)
    return (content or "") + (text or "")

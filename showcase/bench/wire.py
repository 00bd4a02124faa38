"""HTTP/1.1 for the measured requests: keep-alive connections whose bytes reach the reader in
the read that brought them, stamped with the time they arrived.

This module owns connections to servers (plain or TLS), a pool of idle ones, writing a request,
and reading its response: the status and headers, then the body (chunked, sized, or up to the
connection's end), piece by piece. Each piece goes to the caller's function with the
`time.perf_counter()` of its read, from inside the event loop's read callback: no task, future,
queue or copy per streamed token. That is where aiohttp spent most of a streamed token's CPU
(profiled at 256 streams: `benchmarks/client_overhead.py`, README "Client overhead"). It knows
nothing of JSON, SSE or chat completions (`answers`, `loadgen`); requests off the measured path
use aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 10.0
HEAD_MAX_BYTES = 64 * 1024  # a status line and headers longer than this are no HTTP server's

BodyFn = Callable[[bytes, float], None]  # a piece of the body and when its read arrived


class ConnectError(OSError):
    """The server could not be reached: refused, unknown host, or no connection within the time."""


class Broken(Exception):
    """The connection ended or broke before the response did; says how."""


class BadResponse(Exception):
    """Bytes that are not an HTTP/1.x response as a server sends one."""


class Enough(Exception):
    """Raised by a body function that has all it wants: the response ends there, without error,
    and its connection is closed (the rest of the body is never read)."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port, and the path prefix of the base URL."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                   parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


@dataclass(frozen=True)
class Head:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header's last value


_HEAD, _CHUNKED, _LENGTH, _TO_CLOSE, _TRAILER = range(5)


class Connection(asyncio.Protocol):
    """One connection, one response at a time: `exchange` writes a request and hands the
    response's head, once it has arrived, to the caller's `choose`, which names the function its
    body goes to; `done` resolves when the body has ended (or with why it broke). `reusable` says
    whether the connection may carry another request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # it carried a response before this one
        self.answered = False  # a byte of this response arrived
        self.reusable = False
        self.idle_since = 0.0
        self.done: asyncio.Future[None] | None = None
        self._state = _HEAD
        self._buf = b""
        self._left = 0  # bytes left of the body (sized) or of this chunk's data; -1: its CRLF is due
        self._keep = False
        self._choose: Callable[[Head], BodyFn] | None = None
        self._on_body: BodyFn | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.done is None or self.done.done():
            self._close()  # bytes nobody asked for: this connection is not to be trusted again
            return
        self.answered = True
        try:
            if self._state == _HEAD:
                rest = self._read_head(data)
                if rest is None:
                    return
                data = rest
            if self._state == _CHUNKED or self._state == _TRAILER:
                self._read_chunked(data, now)
            elif self._state == _LENGTH:
                if len(data) > self._left:
                    raise BadResponse("more bytes than its Content-Length")
                self._left -= len(data)
                if data:
                    self._on_body(data, now)  # type: ignore[misc]
                if self._left == 0:
                    self._finish(self._keep)
            elif data:
                self._on_body(data, now)  # type: ignore[misc]
        except Enough:
            self._finish(False)
        except Exception as exc:  # a body function's own error (a malformed answer) ends this response with it
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            if self._state == _TO_CLOSE:
                self._finish(False)  # a body that lasts until the connection ends has ended
            else:
                self._fail(Broken(f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"))

    # -- a response -------------------------------------------------------------------------------

    def exchange(self, request: bytes, choose: Callable[[Head], BodyFn]) -> None:
        """Write `request`; `choose(head)` picks the body's function once the head has arrived."""
        loop = asyncio.get_running_loop()
        self.reused = self.reusable
        self.answered = self.reusable = False
        self.done = loop.create_future()
        self._state, self._buf, self._choose = _HEAD, b"", choose
        assert self.transport is not None
        self.transport.write(request)

    def end_within(self, seconds: float) -> None:
        """The response is complete for its reader: its body's end may lag this long, then the
        connection is given up (closed, the response done)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._finish, False)

    def close(self) -> None:
        self._close()
        if self.done is not None and not self.done.done():
            self.done.cancel()

    def _read_head(self, data: bytes) -> bytes | None:
        buf = self._buf + data if self._buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > HEAD_MAX_BYTES:
                raise BadResponse(f"no end of headers within {HEAD_MAX_BYTES // 1024} KiB")
            self._buf = buf
            return None
        self._buf = b""
        lines = buf[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadResponse(f"a header line without a colon: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        rest_bytes = buf[end + 4:]
        if 100 <= status < 200:  # an interim response (100 Continue, 103 Early Hints): the real one follows
            return self._read_head(rest_bytes) if rest_bytes else None
        head = Head(status, headers)
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise BadResponse(f"a body in {encoding} encoding, which was not asked for")
        self._keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        self._on_body = self._choose(head)  # type: ignore[misc]
        te = headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            self._finish(self._keep)
            return None
        if te:
            if te != "chunked":
                raise BadResponse(f"transfer-encoding {te}")
            self._state, self._left = _CHUNKED, 0
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise BadResponse(f"Content-Length {headers['content-length']!r}") from None
            self._state = _LENGTH
            if self._left == 0:
                self._finish(self._keep)
                return None
        else:
            self._state = _TO_CLOSE
        return rest_bytes

    def _read_chunked(self, data: bytes, now: float) -> None:
        if self._buf:
            data, self._buf = self._buf + data, b""
        elif self._left == 0 and self._state == _CHUNKED and data.endswith(b"\r\n"):
            # The common read: exactly one whole chunk (a streaming server writes one an event).
            eol = data.find(b"\r\n")
            try:
                size = int(data[:eol].split(b";", 1)[0], 16)
            except ValueError:
                raise BadResponse(f"a chunk size of {data[:eol][:40]!r}") from None
            if size and eol + 4 + size == len(data):
                self._on_body(data[eol + 2:-2], now)  # type: ignore[misc]
                return
        pos, n = 0, len(data)
        while pos < n:
            if self._state == _TRAILER:  # after the last chunk: trailer fields, then an empty line
                rest = data[pos:]
                if rest.startswith(b"\r\n"):
                    if len(rest) > 2:
                        raise BadResponse("bytes after the end of the body")
                    self._finish(self._keep)
                    return
                end = rest.find(b"\r\n\r\n")
                if end < 0:
                    self._buf = rest
                    return
                self._finish(self._keep and end + 4 == len(rest))
                return
            if self._left > 0:  # inside a chunk's data
                take = min(self._left, n - pos)
                piece = data if take == n and pos == 0 else data[pos:pos + take]
                pos += take
                self._left -= take
                if self._left == 0:
                    self._left = -1
                self._on_body(piece, now)  # type: ignore[misc]
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self._buf = data[pos:]
                if len(self._buf) > HEAD_MAX_BYTES:
                    raise BadResponse("a chunk-size line without an end")
                return
            if self._left == -1:  # the CRLF after a chunk's data
                if eol != pos:
                    raise BadResponse("a chunk longer than its size")
                self._left = 0
                pos += 2
                continue
            try:
                size = int(data[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                raise BadResponse(f"a chunk size of {data[pos:eol][:40]!r}") from None
            pos = eol + 2
            if size == 0:
                self._state = _TRAILER
            else:
                self._left = size

    def _finish(self, keep: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reusable = keep and not self.closed
        self._state = _HEAD
        if not self.reusable:
            self._close()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        self._close()
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class Pool:
    """Idle keep-alive connections per origin, the most recently used first; one closed once it
    was idle `keepalive_s` (servers and balancers drop idle ones silently: vLLM after 5 s)."""

    def __init__(self, keepalive_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.keepalive_s, self.connect_timeout_s = keepalive_s, connect_timeout_s
        self._idle: dict[Origin, list[Connection]] = {}
        self._all: set[Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def connection(self, origin: Origin, fresh: bool = False) -> Connection:
        """An idle connection to `origin`, or (none, or `fresh`) a new one."""
        idle = self._idle.get(origin)
        now = time.perf_counter()
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                return conn
            conn.close()
            self._all.discard(conn)
        return await self._connect(origin)

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        if origin.scheme == "https" and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(Connection, origin.host, origin.port,
                                                       ssl=self._tls if origin.scheme == "https" else None)
        except TimeoutError:
            raise ConnectError(f"no connection to {origin.host}:{origin.port} within {self.connect_timeout_s:g} s") \
                from None
        except ConnectionRefusedError:
            raise ConnectError("connection refused") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        self._all.add(conn)
        return conn

    def release(self, origin: Origin, conn: Connection) -> None:
        """A connection whose request is over (answered, failed or abandoned): kept for the next
        request if its response ended cleanly, else closed."""
        if conn.reusable and not conn.closed and conn.done is not None and conn.done.done() \
                and not conn.done.cancelled() and conn.done.exception() is None:
            conn.idle_since = time.perf_counter()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
            self._all.discard(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._idle.clear()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

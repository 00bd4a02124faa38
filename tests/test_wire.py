"""The measured requests' HTTP/1.1 (`wire`), against a server on a real socket that writes
scripted bytes: every body framing, cut anywhere, keep-alive and its end, and how it breaks."""

from __future__ import annotations

import asyncio

import pytest

from showcase.bench import wire

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def scripted(replies: list[list[bytes]], close_after: bool = False):
    """A server answering the n-th request it reads with the n-th reply's pieces, each written
    apart (so that they arrive in reads of their own); it closes the connection after the last
    reply, or after every reply with `close_after`. Returns the server and its origin."""
    count = {"n": 0, "conns": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count["conns"] += 1
        while count["n"] < len(replies):
            if not await reader.readuntil(b"\r\n\r\n"):
                break
            pieces = replies[count["n"]]
            count["n"] += 1
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.002)
            if close_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, wire.Origin.of(f"http://127.0.0.1:{port}"), count


async def exchange(pool: wire.Pool, origin: wire.Origin, fresh: bool = False):
    """One request: (status, the body's pieces, the connection)."""
    got: dict = {"pieces": []}

    def choose(head: wire.Head):
        got["status"], got["headers"] = head.status, head.headers
        return lambda data, now: got["pieces"].append(data)

    conn = await pool.connection(origin, fresh)
    conn.exchange(REQUEST, choose)
    await asyncio.wait_for(conn.done, 5)
    pool.release(origin, conn)
    return got["status"], b"".join(got["pieces"]), conn


def run(coro):
    return asyncio.run(coro)


async def one_after_another(replies: list[list[bytes]]) -> list[tuple]:
    """Each scripted reply as the answer to one request, on one pool, one after another."""
    server, origin, _ = await scripted(replies)
    async with wire.Pool(keepalive_s=5) as pool:
        got = [await exchange(pool, origin) for _ in replies]
    server.close()
    return got


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("pieces", [
    [CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"],  # all in one read
    [CHUNKED, b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"],  # a chunk a read, as a streaming server writes
    # cut anywhere, a chunk extension included
    [CHUNKED[:10], CHUNKED[10:] + b"5\r", b"\nhel", b"lo\r", b"\n6;ext=1\r\n world", b"\r\n0\r\n", b"\r\n"],
    [CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"],  # trailer fields
    [b"HTTP/1.1 100 Continue\r\n\r\n", CHUNKED + b"b\r\nhello world\r\n0\r\n\r\n"],  # an interim response first
])
def test_a_chunked_body_arrives_whole_from_any_cut_and_the_connection_is_kept(pieces):
    (status, body, conn), (status2, body2, conn2) = run(one_after_another([pieces, pieces]))
    assert (status, body) == (200, b"hello world") == (status2, body2)
    assert conn2 is conn and conn2.reused  # one connection carried both


def test_a_sized_body_and_a_body_to_the_connections_end():
    sized = [b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot", b" found"]
    to_close = [b"HTTP/1.0 200 OK\r\n\r\nall of", b" it"]
    (status, body, conn), (status2, body2, conn2) = run(one_after_another([sized, to_close]))
    assert (status, body) == (404, b"not found") and conn2 is conn  # a sized body leaves the connection reusable
    assert (status2, body2, conn2.reusable) == (200, b"all of it", False)  # delimited by its close: not reused


def test_connection_close_and_an_idle_connection_past_keepalive_are_not_reused():
    closing = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]
    plain = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]

    async def main():
        server, origin, count = await scripted([closing, plain, plain], close_after=True)
        async with wire.Pool(keepalive_s=0.05) as pool:
            _, _, a = await exchange(pool, origin)
            _, _, b = await exchange(pool, origin)
            await asyncio.sleep(0.1)
            _, _, c = await exchange(pool, origin)
        server.close()
        return a, b, c, count["conns"]

    a, b, c, conns = run(main())
    assert not a.reusable and b is not a and c is not b and conns == 3


@pytest.mark.parametrize("pieces, says", [
    ([CHUNKED + b"5\r\nhello\r\n"], "closed the connection"),  # cut before the last chunk
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], "closed the connection"),
    ([CHUNKED + b"zz\r\nhello\r\n"], "chunk size"),
    ([CHUNKED + b"3\r\nhello\r\n"], "longer than its size"),
    ([b"SMTP ready\r\n\r\n"], "not an HTTP/1.x status line"),
    ([b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok"], "gzip"),
])
def test_a_response_that_breaks_or_is_not_http_says_how(pieces, says):
    async def main():
        server, origin, _ = await scripted([pieces], close_after=True)
        try:
            async with wire.Pool(keepalive_s=5) as pool:
                with pytest.raises((wire.Broken, wire.BadResponse)) as err:
                    await exchange(pool, origin)
                return str(err.value)
        finally:
            server.close()

    assert says in run(main())


def test_a_refused_connection_is_a_connect_error():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with wire.Pool(keepalive_s=5) as pool:
            await pool.connection(wire.Origin.of(f"http://127.0.0.1:{port}"))

    with pytest.raises(wire.ConnectError, match="refused"):
        run(main())


def test_a_body_function_that_has_enough_ends_the_response_and_the_connection():
    async def main():
        server, origin, _ = await scripted([[CHUNKED + b"5\r\nhello\r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"]])
        async with wire.Pool(keepalive_s=5) as pool:
            got = []

            def body(data, now):
                got.append(data)
                raise wire.Enough

            conn = await pool.connection(origin)
            conn.exchange(REQUEST, lambda head: body)
            await asyncio.wait_for(conn.done, 5)
        server.close()
        return got, conn

    got, conn = run(main())
    assert got == [b"hello"] and conn.closed and not conn.reusable


def test_each_piece_carries_the_time_its_read_arrived():
    async def main():
        server, origin, _ = await scripted([[CHUNKED, b"1\r\na\r\n", b"1\r\nb\r\n", b"0\r\n\r\n"]])
        times = []
        async with wire.Pool(keepalive_s=5) as pool:
            conn = await pool.connection(origin)
            conn.exchange(REQUEST, lambda head: lambda data, now: times.append(now))
            await asyncio.wait_for(conn.done, 5)
        server.close()
        return times

    first, second = run(main())
    assert second - first >= 0.001  # the server wrote them 2 ms apart


def test_origins_from_base_urls():
    assert wire.Origin.of("https://api.example.com/v2/") == wire.Origin("https", "api.example.com", 443, "/v2")
    assert wire.Origin.of("http://[::1]:8000").host_header == "[::1]:8000"
    assert wire.Origin.of("http://h").host_header == "h"
    with pytest.raises(ValueError):
        wire.Origin.of("ftp://h")

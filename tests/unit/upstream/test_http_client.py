"""The upstream HTTP client against raw loopback servers that misbehave in
ways fixture upstreams built on aiohttp cannot: keep-alive connections closed
under a request, bodies delimited by the end of the connection, garbage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import UpstreamConnectError, UpstreamMidStream, UpstreamProtocolError, UpstreamTimeout
from octoroute.upstream import UpstreamPool

OK_BODY = b'{"id":"x","object":"chat.completion","choices":[]}'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def with_server(handler: Handler, test: Callable[[UpstreamPool, object], Awaitable[None]], **ep: object) -> None:
    connections = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer, connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = parse_config({"models": {"fast": [{"name": "m", "base_url": f"http://127.0.0.1:{port}/v1", **ep}]}}, {})
    topology = build_topology(config, {})
    pool = UpstreamPool(topology.endpoints.values())
    await pool.start()
    try:
        await test(pool, topology.endpoints["fast/m"])
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


def test_a_pooled_connection_closed_under_a_request_is_retried_on_a_fresh_one():
    seen: list[int] = []

    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(answer(OK_BODY))
        await writer.drain()
        await read_request(reader)  # the second request on this connection: hang up without answering
        seen.append(n)

    async def test(pool, ep):
        for _ in range(3):
            reply = await pool.complete(ep, b"{}", {})
            assert reply.payload["id"] == "x"

    asyncio.run(with_server(handler, test))
    assert seen  # the hang-up really happened and was recovered from


def test_a_body_delimited_by_connection_close_is_complete():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + OK_BODY)
        await writer.drain()

    async def test(pool, ep):
        reply = await pool.complete(ep, b"{}", {})
        assert reply.body == OK_BODY

    asyncio.run(with_server(handler, test))


def test_garbage_instead_of_http_is_a_protocol_error():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def test(pool, ep):
        with pytest.raises(UpstreamProtocolError):
            await pool.complete(ep, b"{}", {})

    asyncio.run(with_server(handler, test))


def test_a_connection_closed_before_any_answer_is_a_connect_error():
    async def handler(reader, writer, n):
        await read_request(reader)

    async def test(pool, ep):
        with pytest.raises(UpstreamConnectError):
            await pool.complete(ep, b"{}", {})

    asyncio.run(with_server(handler, test))


def test_a_silent_upstream_hits_the_first_byte_deadline():
    async def handler(reader, writer, n):
        await read_request(reader)
        await asyncio.sleep(10)

    async def test(pool, ep):
        with pytest.raises(UpstreamTimeout, match=r"first_byte timeout after 0\.2s"):
            await pool.complete(ep, b"{}", {})

    asyncio.run(with_server(handler, test, timeouts={"first_byte": 0.2}))


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_stream_that_keeps_producing_outlives_the_total_timeout():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(SSE_HEAD)
        for i in range(8):
            writer.write(chunk(b'data: {"n": %d}\n\n' % i))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async def test(pool, ep):
        stream = await pool.open_stream(ep, b"{}", {})
        events = stream.first + b"".join([e async for e in stream.rest()])
        assert events.count(b"data:") == 9
        assert events.endswith(b"data: [DONE]\n\n")

    asyncio.run(with_server(handler, test, timeouts={"total": 0.2, "first_byte": 0.15}))


def test_a_stream_that_goes_quiet_fails_mid_stream():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b"data: {}\n\n"))
        await writer.drain()
        await asyncio.sleep(10)

    async def test(pool, ep):
        stream = await pool.open_stream(ep, b"{}", {})
        with pytest.raises(UpstreamMidStream, match=r"no data for 0\.2s"):
            async for _ in stream.rest():
                pass

    asyncio.run(with_server(handler, test, timeouts={"first_byte": 30, "idle": 0.2}))


def test_a_slow_first_byte_is_waited_for_longer_than_the_idle_limit():
    """A local server prefilling a long prompt sends nothing for a while, then streams:
    `first_byte` covers the prefill, `idle` only the gaps once tokens flow."""

    async def handler(reader, writer, n):
        await read_request(reader)
        await asyncio.sleep(0.5)  # the prefill
        writer.write(SSE_HEAD + chunk(b"data: {}\n\n") + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async def test(pool, ep):
        stream = await pool.open_stream(ep, b"{}", {})
        rest = b"".join([events async for events in stream.rest()])
        assert stream.first + rest == b"data: {}\n\ndata: [DONE]\n\n"

    asyncio.run(with_server(handler, test, timeouts={"first_byte": 30, "idle": 0.1}))


def test_a_large_body_is_read_whole_through_flow_control():
    big = b'{"id":"x","pad":"' + b"y" * 3_000_000 + b'"}'

    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(answer(big))
        await writer.drain()

    async def test(pool, ep):
        reply = await pool.complete(ep, b"{}", {})
        assert len(reply.body) == len(big)

    asyncio.run(with_server(handler, test))


def test_a_connect_that_never_completes_hits_the_connect_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once its queue is full, the kernel drops further SYNs
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue until a connect really hangs
        sock = socket.socket()
        sock.settimeout(0.3)
        fillers.append(sock)
        try:
            sock.connect(("127.0.0.1", port))
        except TimeoutError:
            break
    else:
        raise AssertionError("could not fill the listen queue")

    async def run() -> None:
        config = parse_config(
            {
                "models": {
                    "fast": [{"name": "m", "base_url": f"http://127.0.0.1:{port}/v1", "timeouts": {"connect": 0.2}}]
                }
            },
            {},
        )
        topology = build_topology(config, {})
        pool = UpstreamPool(topology.endpoints.values())
        await pool.start()
        try:
            with pytest.raises(UpstreamTimeout, match=r"connect timeout after 0\.2s"):
                await pool.complete(topology.endpoints["fast/m"], b"{}", {})
        finally:
            await pool.close()

    try:
        asyncio.run(run())
    finally:
        for sock in fillers:
            sock.close()
        listener.close()

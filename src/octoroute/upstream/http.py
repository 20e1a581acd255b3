"""A minimal HTTP/1.1 client for upstream calls: keep-alive connections on asyncio
protocols, responses parsed by `httptools` (the parser uvicorn uses).

Why not aiohttp's client: the gateway's budget is a fraction of a millisecond
per request, and `ClientSession.request` alone costs about as much as the rest
of the gateway (cookie jars, tracing, redirects, per-request timeout objects;
see bench/README.md). Upstreams here are OpenAI-compatible servers answering
POSTs with JSON or SSE, so this client does exactly that: one request at a time
per connection, no redirects, no cookies, no compression, flow control on the
response body, and one timer per connection for deadlines and idle gaps.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024  # pause reading when this much response body is unread
_KEPT_HEADERS = frozenset({b"content-type", b"content-length", b"transfer-encoding", b"retry-after"})


class ConnectionClosedError(ConnectionError):
    """The upstream closed the connection before the response was complete."""


class DeadlineError(TimeoutError):
    """A deadline set with `Connection.set_deadline` passed; `phase` says which."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


class ProtocolViolation(Exception):
    """The upstream sent something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an upstream lives, parsed once from its base URL."""

    host: str
    port: int
    tls: bool
    host_header: bytes
    path_prefix: str

    @classmethod
    def from_url(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if tls else 80)
        default = (tls and port == 443) or (not tls and port == 80)
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if default else f"{shown}:{port}"
        return cls(host, port, tls, host_header.encode("idna"), parts.path.rstrip("/"))


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    __slots__ = (
        "_body",
        "_buffered",
        "_deadline",
        "_eof_body",
        "_error",
        "_header_list",
        "_headers_ready",
        "_last_data",
        "_loop",
        "_paused",
        "_waiter",
        "closed",
        "complete",
        "headers",
        "keep_alive",
        "parser",
        "status",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._deadline: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_list: list[tuple[bytes, bytes]] = []
        self._headers_ready = False
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self.complete = False
        self.keep_alive = False
        self._eof_body = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._last_data = 0.0

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"invalid HTTP response: {exc}"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_deadline()
        if self._headers_ready and self._eof_body and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
        elif not self.complete:
            self._fail(ConnectionClosedError(str(exc) if exc else "upstream closed the connection"))

    # -- httptools callbacks ---------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key in _KEPT_HEADERS:  # the gateway reads only these; skip decoding the rest
            self._header_list.append((key, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in self._header_list}
        self.headers = headers
        self._eof_body = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        self._headers_ready = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- used by the pool ------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self._reset()
        self.transport.write(request)

    async def read_headers(self) -> None:
        while not self._headers_ready:
            await self._wait()

    async def read_chunk(self) -> bytes:
        """Next piece of the body; b"" once the body is complete."""
        while not self._body:
            if self.complete:
                return b""
            await self._wait()
        chunk = b"".join(self._body) if len(self._body) > 1 else self._body[0]
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_body(self, limit: int | None = None) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read_chunk():
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        return b"".join(parts)

    def set_deadline(self, when: float, phase: str) -> None:
        """Fail the current wait with `DeadlineError(phase)` at loop time `when`."""
        self._cancel_deadline()
        self._deadline = self._loop.call_at(when, self._deadline_passed, phase)

    def set_idle_limit(self, seconds: float) -> None:
        """Fail when no bytes arrive for `seconds` (checked lazily, no per-chunk timers)."""
        self._cancel_deadline()
        self._last_data = self._loop.time()
        self._deadline = self._loop.call_at(self._last_data + seconds, self._check_idle, seconds)

    def _check_idle(self, seconds: float) -> None:
        now = self._loop.time()
        if self._paused:  # we stopped reading (the client is slow): silence is ours, not the upstream's
            self._last_data = now
        due = self._last_data + seconds
        if now >= due:
            self._deadline_passed("idle")
        else:
            self._deadline = self._loop.call_at(due, self._check_idle, seconds)

    def _deadline_passed(self, phase: str) -> None:
        self._deadline = None
        if not self.complete:
            self._fail(DeadlineError(phase))
            self.abort()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self._error is None

    def abort(self) -> None:
        self.closed = True
        self._cancel_deadline()
        if self.transport is not None:
            self.transport.abort()


class HostPool:
    """Idle keep-alive connections to one origin."""

    def __init__(self, origin: Origin, *, max_idle: int = 256) -> None:
        self.origin = origin
        self._idle: list[Connection] = []
        self._max_idle = max_idle
        self.closed = False  # closed pools keep no connection: one released later is dropped
        self._ssl: ssl_module.SSLContext | None = ssl_module.create_default_context() if origin.tls else None

    def take_idle(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def connect(self, limit_seconds: float) -> Connection:
        loop = asyncio.get_running_loop()
        factory: Callable[[], Connection] = lambda: Connection(loop)  # noqa: E731
        async with asyncio.timeout(limit_seconds):
            _, conn = await loop.create_connection(
                factory,
                self.origin.host,
                self.origin.port,
                ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None,
            )
        return conn

    def release(self, conn: Connection) -> None:
        """Keep a connection whose response was read to the end; close any other."""
        conn._cancel_deadline()
        if conn.reusable and not self.closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    def close(self) -> None:
        self.closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()

"""Calling upstream endpoints: one keep-alive pool per upstream origin, created
at startup and closed at shutdown (the HTTP layer is `upstream/http.py`).

Timeouts per attempt: `connect` (TCP/TLS connect), `first_byte` (until the
response headers and, for streams, the first complete SSE event), `total` (a
whole non-streaming attempt, and a stream up to its first event). A stream
returned by `open_stream` has already received its first event: that is the
commit point. After it, the stream fails only if no bytes arrive for `idle`
seconds, so long generations are never cut while they progress;
later failures surface as `UpstreamMidStream`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from octoroute.config.models import LimitsConfig
from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import (
    TimeoutPhase,
    UpstreamConnectError,
    UpstreamError,
    UpstreamMidStream,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from octoroute.core.redact import redact
from octoroute.core.types import Api
from octoroute.protocols.openai import normalised_error
from octoroute.protocols.sse import (
    EventFramer,
    EventTooLarge,
    all_data_readable,
    ends_stream,
    first_data_problem,
    has_data,
)
from octoroute.upstream.http import (
    Connection,
    ConnectionClosedError,
    DeadlineError,
    HostPool,
    Origin,
    ProtocolViolation,
)

ERROR_BODY_LIMIT = 64 * 1024
DETAIL_CHARS = 300  # of an upstream's error message, in errors, logs and status pages


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete non-streaming answer: the upstream's bytes and their parsed form."""

    status: int
    body: bytes
    payload: dict[str, Any]
    latency_ms: float


@dataclass(frozen=True, slots=True)
class UpstreamPath:
    """Where a request goes on the endpoint's server: `path` after `base_url`, or from the
    server's root (`base_url` without a trailing /v1) when `root`. None in the calls below
    means the endpoint's chat path (`/chat/completions` or `/messages`)."""

    path: str
    root: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    """Everything about one endpoint that is the same for every request, built once."""

    pool: HostPool
    chat_head: bytes  # request line and fixed headers for POST .../chat/completions
    models_head: bytes  # the same for GET .../models
    fixed: bytes  # Host, User-Agent and credentials
    heads: dict[UpstreamPath, bytes]  # POST heads for other paths (embeddings, completions), made on first use

    def head_for(self, where: UpstreamPath | None) -> bytes:
        if where is None:
            return self.chat_head
        head = self.heads.get(where)
        if head is None:
            prefix = self.pool.origin.path_prefix
            if where.root:
                prefix = prefix.removesuffix("/v1")
            head = f"POST {prefix}{where.path} HTTP/1.1\r\n".encode() + self.fixed
            head += b"Content-Type: application/json\r\n"
            self.heads[where] = head
        return head


ANTHROPIC_VERSION = b"2023-06-01"


def _target(ep: EndpointSpec, pool: HostPool) -> _Target:
    """Request heads for the endpoint's API: OpenAI's chat completions with a bearer
    key, or Anthropic's messages with `x-api-key` and `anthropic-version`."""
    origin = pool.origin
    fixed = b"Host: " + origin.host_header + b"\r\nUser-Agent: octoroute\r\n"
    key = ep.api_key.encode("latin-1") if ep.api_key else None
    if ep.kind is Api.ANTHROPIC:
        fixed += b"anthropic-version: " + ANTHROPIC_VERSION + b"\r\n"
        if key:
            fixed += b"x-api-key: " + key + b"\r\n"
        path = "/messages"
    else:
        if key:
            fixed += b"Authorization: Bearer " + key + b"\r\n"
        path = "/chat/completions"
    chat = f"POST {origin.path_prefix}{path} HTTP/1.1\r\n".encode() + fixed
    chat += b"Content-Type: application/json\r\n"
    models = f"GET {origin.path_prefix}/models HTTP/1.1\r\n".encode() + fixed + b"Accept: application/json\r\n"
    return _Target(pool, chat, models, fixed, {})


def _headers_bytes(extra: Mapping[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in extra.items())


class UpstreamStream:
    """An upstream SSE stream that has delivered its first complete event."""

    __slots__ = (
        "_conn",
        "_endpoint",
        "_ends",
        "_framer",
        "_pool",
        "content_type",
        "first",
        "first_byte_ms",
        "status",
        "whole",
    )

    def __init__(
        self,
        endpoint: EndpointSpec,
        pool: HostPool,
        conn: Connection,
        framer: EventFramer,
        first: bytes,
        first_byte_ms: float,
        *,
        whole: bool = False,
        ends: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._ends = ends  # recognises the event that ends the stream, when not OpenAI's or Anthropic's
        self.whole = whole  # the server ignored `stream: true` and sent one complete body
        self._pool = pool
        self._conn: Connection | None = conn
        self._framer = framer
        self.first = first
        self.first_byte_ms = first_byte_ms
        self.status = conn.status
        self.content_type = conn.headers.get("content-type", "text/event-stream")

    async def rest(self) -> AsyncGenerator[bytes, None]:
        """Whole events after the first, as they arrive; raises `UpstreamMidStream`,
        also when the stream ends without the event that ends it normally (`[DONE]`,
        a `finish_reason`, `message_stop`): a cut stream is never passed off as complete."""
        conn = self._conn
        if conn is None:
            return
        framer = self._framer
        anthropic = self._endpoint.kind is Api.ANTHROPIC
        ends = self._ends or (lambda events: ends_stream(events, anthropic))
        ended = self.whole or ends(self.first)
        try:
            while chunk := await conn.read_chunk():
                events = framer.feed(chunk)
                if events:
                    ended = ended or ends(events)
                    yield events
            tail = framer.pending
            if tail.strip():  # an event the connection's end ended: relayed only if it is whole
                if not all_data_readable(tail):
                    raise UpstreamMidStream(self._endpoint.id, "the stream was cut inside an event")
                ended = ended or ends(tail)
                yield tail + b"\n\n"
        except DeadlineError as exc:
            raise UpstreamMidStream(self._endpoint.id, f"no data for {self._endpoint.timeouts.idle:g}s") from exc
        except (ConnectionClosedError, ProtocolViolation, OSError) as exc:
            raise UpstreamMidStream(self._endpoint.id, f"stream broke: {exc}") from exc
        except EventTooLarge as exc:
            conn.abort()
            raise UpstreamMidStream(self._endpoint.id, str(exc)) from exc
        finally:
            self.close()
        if not ended:
            raise UpstreamMidStream(self._endpoint.id, "the stream ended without its final event")

    def close(self) -> None:
        """Return the connection to its pool if the stream ended cleanly, else drop it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)


class UpstreamPool:
    """One keep-alive pool per upstream origin, shared by every endpoint on it."""

    def __init__(self, endpoints: Iterable[EndpointSpec], limits: LimitsConfig | None = None) -> None:
        self._endpoints = tuple(endpoints)
        self.limits = limits or LimitsConfig()
        self._pools: dict[Origin, HostPool] = {}
        self._targets: dict[str, _Target] = {}

    async def start(self, taking_over: UpstreamPool | None = None) -> None:
        """Ready every endpoint's request heads. `taking_over`: the pool of the config this
        one replaces (a reload): connections to origins both use are kept and shared, so
        requests still running on the old config return theirs to the same place; the old
        pool's other origins are closed (a connection released there later is dropped)."""
        kept = taking_over._pools if taking_over is not None else {}
        for ep in self._endpoints:
            origin = Origin.from_url(ep.base_url)
            pool = self._pools.get(origin) or self._pools.setdefault(origin, kept.get(origin) or HostPool(origin))
            self._targets[ep.id] = _target(ep, pool)
        for origin, pool in kept.items():
            if origin not in self._pools:
                pool.close()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()

    async def _exchange(self, ep: EndpointSpec, head: bytes, body: bytes, first_byte_at: float) -> Connection:
        """Send one request and wait for the response headers.

        A pooled connection the upstream closed while idle fails before any
        response byte; the request is then sent once more on a fresh connection.
        """
        target = self._targets[ep.id]
        phase = "first_byte" if first_byte_at - asyncio.get_running_loop().time() < ep.timeouts.total else "total"
        request = head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body if body else head + b"\r\n"
        for retry in (False, True):
            conn = None if retry else target.pool.take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(ep, target.pool)
            conn.set_deadline(first_byte_at, phase)
            conn.send(request)
            try:
                await conn.read_headers()
            except ConnectionClosedError as exc:
                conn.abort()
                if reused:
                    continue
                raise UpstreamConnectError(ep.id, f"{ep.base_url} closed the connection: {exc}") from exc
            except DeadlineError as exc:
                raise _timeout(ep, exc.phase) from exc
            except ProtocolViolation as exc:
                raise UpstreamProtocolError(ep.id, str(exc)) from exc
            except BaseException:
                conn.abort()
                raise
            return conn
        where = redact(ep.base_url, (ep.api_key,), max_chars=None)
        raise UpstreamConnectError(ep.id, f"{where} closed the connection twice")

    async def _connect(self, ep: EndpointSpec, pool: HostPool) -> Connection:
        try:
            return await pool.connect(ep.timeouts.connect)
        except TimeoutError as exc:
            raise UpstreamTimeout(ep.id, TimeoutPhase.CONNECT, ep.timeouts.connect) from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            where = redact(ep.base_url, (ep.api_key,), max_chars=None)  # no user:password@ in errors
            raise UpstreamConnectError(ep.id, f"cannot connect to {where}: {reason}") from exc

    async def _raise_status(self, ep: EndpointSpec, conn: Connection) -> None:
        """Read (a bounded part of) an error body and raise it; the caller releases `conn`."""
        try:
            body = await conn.read_body(ERROR_BODY_LIMIT)
        except (DeadlineError, ConnectionClosedError, ProtocolViolation):
            body = b""
        raise UpstreamStatusError(
            ep.id,
            conn.status,
            body,
            conn.headers.get("content-type"),
            conn.headers.get("retry-after"),
            detail=upstream_detail(ep, conn.status, body),
        )

    async def complete(
        self, ep: EndpointSpec, body: bytes, extra_headers: Mapping[str, str], where: UpstreamPath | None = None
    ) -> UpstreamReply:
        """One non-streaming call; the body must be a JSON object or the attempt failed."""
        target = self._targets[ep.id]
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + ep.timeouts.total
        head = target.chat_head if where is None else target.head_for(where)
        head += b"Accept: application/json\r\n" + _headers_bytes(extra_headers)
        conn = await self._exchange(ep, head, body, min(deadline, started + ep.timeouts.first_byte))
        try:
            conn.set_deadline(deadline, "total")
            if conn.status >= 400:
                await self._raise_status(ep, conn)
            raw = await self._read_whole(ep, conn)
        except DeadlineError as exc:
            raise _timeout(ep, exc.phase) from exc
        except (ConnectionClosedError, ProtocolViolation) as exc:
            raise UpstreamProtocolError(ep.id, f"response cut short: {exc}") from exc
        finally:
            target.pool.release(conn)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(ep.id, "answer is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise UpstreamProtocolError(ep.id, "answer is not a JSON object")
        return UpstreamReply(conn.status, raw, payload, (loop.time() - started) * 1000)

    async def _read_whole(self, ep: EndpointSpec, conn: Connection) -> bytes:
        """A whole answer body, refused (and the connection dropped) past `max_response_bytes`."""
        limit = self.limits.max_response_bytes
        declared = conn.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            conn.abort()
            raise UpstreamProtocolError(ep.id, f"answer of {int(declared):,} bytes exceeds the {limit:,}-byte limit")
        raw = await conn.read_body(limit + 1)
        if len(raw) > limit:
            conn.abort()
            raise UpstreamProtocolError(ep.id, f"answer exceeds the {limit:,}-byte limit")
        return raw

    async def open_stream(
        self,
        ep: EndpointSpec,
        body: bytes,
        extra_headers: Mapping[str, str],
        where: UpstreamPath | None = None,
        ends: Callable[[bytes], bool] | None = None,
    ) -> UpstreamStream:
        """Start a streaming call and wait for its first complete event (the commit point).
        `ends`: recognises a stream's last event where it is neither OpenAI's nor Anthropic's."""
        target = self._targets[ep.id]
        loop = asyncio.get_running_loop()
        started = loop.time()
        head = target.chat_head if where is None else target.head_for(where)
        head += b"Accept: text/event-stream\r\n" + _headers_bytes(extra_headers)
        conn = await self._exchange(ep, head, body, started + min(ep.timeouts.first_byte, ep.timeouts.total))
        framer = EventFramer(self.limits.max_event_bytes)
        whole = "text/event-stream" not in conn.headers.get("content-type", "")
        try:
            if conn.status >= 400:
                await self._raise_status(ep, conn)
            first = await self._read_whole(ep, conn) if whole else await _first_event(ep, conn, framer)
            if whole and not _is_json_object(first):  # a body instead of a stream must be an answer to commit
                raise UpstreamProtocolError(ep.id, "answered a stream request with a body that is not JSON")
        except DeadlineError as exc:
            conn.abort()
            raise _timeout(ep, exc.phase) from exc
        except (ConnectionClosedError, ProtocolViolation) as exc:
            conn.abort()
            raise UpstreamProtocolError(ep.id, f"stream cut before its first event: {exc}") from exc
        except EventTooLarge as exc:
            conn.abort()
            raise UpstreamProtocolError(ep.id, str(exc)) from exc
        except BaseException:
            target.pool.release(conn)
            raise
        conn.set_idle_limit(ep.timeouts.idle)
        latency = (loop.time() - started) * 1000
        return UpstreamStream(ep, target.pool, conn, framer, first, latency, whole=whole, ends=ends)

    async def probe(self, ep: EndpointSpec, limit_seconds: float) -> float:
        """GET {base_url}/models; returns latency in ms or raises an `UpstreamError`."""
        target = self._targets[ep.id]
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        conn = await self._exchange(ep, target.models_head, b"", loop.time() + limit_seconds)
        try:
            await conn.read_body()
        except DeadlineError as exc:
            raise UpstreamTimeout(ep.id, TimeoutPhase.TOTAL, limit_seconds) from exc
        except (ConnectionClosedError, ProtocolViolation) as exc:
            raise UpstreamProtocolError(ep.id, f"health check answer cut short: {exc}") from exc
        finally:
            target.pool.release(conn)
        if conn.status >= 400:
            raise UpstreamStatusError(ep.id, conn.status, b"", None, conn.headers.get("retry-after"))
        return (time.perf_counter() - started) * 1000

    async def fetch_json(
        self, ep: EndpointSpec, method: str, path: str, body: bytes, limit_seconds: float
    ) -> tuple[int, object]:
        """One small side request to the endpoint's server (discovery): `path` from the
        server's root (`base_url` without a trailing /v1). Returns the status and the
        decoded JSON (None when the body is not JSON); raises an `UpstreamError`."""
        target = self._targets[ep.id]
        origin = target.pool.origin
        prefix = origin.path_prefix.removesuffix("/v1")
        head = f"{method} {prefix}{path} HTTP/1.1\r\n".encode() + b"Host: " + origin.host_header
        head += b"\r\nUser-Agent: octoroute\r\nAccept: application/json\r\n"
        if ep.api_key and ep.kind is not Api.ANTHROPIC:
            head += b"Authorization: Bearer " + ep.api_key.encode("latin-1") + b"\r\n"
        if body:
            head += b"Content-Type: application/json\r\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_seconds
        conn = await self._exchange(ep, head, body, deadline)
        try:
            conn.set_deadline(deadline, "total")
            raw = await conn.read_body(ERROR_BODY_LIMIT * 16)
        except DeadlineError as exc:
            raise UpstreamTimeout(ep.id, TimeoutPhase.TOTAL, limit_seconds) from exc
        except (ConnectionClosedError, ProtocolViolation) as exc:
            raise UpstreamProtocolError(ep.id, f"answer to {path} cut short: {exc}") from exc
        finally:
            target.pool.release(conn)
        try:
            return conn.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return conn.status, None


def upstream_detail(ep: EndpointSpec, status: int, body: bytes) -> str:
    """The upstream's own message from an error body (any server's shape), with the
    endpoint's key and anything like a secret removed, on one bounded line."""
    return redact(str(normalised_error(body, status)["message"]), (ep.api_key,), max_chars=DETAIL_CHARS)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


async def _first_event(ep: EndpointSpec, conn: Connection, framer: EventFramer) -> bytes:
    """Read up to the first complete event that carries data (the commit point).

    Comment-only events before it (keep-alives) are dropped. A first data event
    that is not JSON fails the attempt, so it is retried elsewhere instead of
    being relayed as a success."""
    while True:
        chunk = await conn.read_chunk()
        if not chunk:
            raise UpstreamProtocolError(ep.id, "stream ended before its first event")
        events = framer.feed(chunk)
        if not events or not has_data(events):
            continue
        problem = first_data_problem(events)
        if problem is not None:
            conn.abort()
            raise UpstreamProtocolError(ep.id, f"stream rejected: {problem}")
        return events


def _timeout(ep: EndpointSpec, phase: str) -> UpstreamError:
    seconds = {"first_byte": ep.timeouts.first_byte, "connect": ep.timeouts.connect}.get(phase, ep.timeouts.total)
    return UpstreamTimeout(ep.id, TimeoutPhase(phase) if phase != "idle" else TimeoutPhase.FIRST_BYTE, seconds)

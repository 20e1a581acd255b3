"""Calling one upstream endpoint: one pooled `aiohttp.ClientSession` per base URL,
created at startup and closed at shutdown.

Timeouts per attempt: `connect` (TCP connect), `first_byte` (until the response
headers and, for streams, the first complete SSE event), `total` (the whole
attempt). A stream returned by `open_stream` has already received its first
event: that is the commit point, and later failures surface as
`UpstreamMidStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

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
from octoroute.protocols.sse import EventFramer

ERROR_BODY_LIMIT = 64 * 1024
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_STREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete non-streaming answer: the upstream's bytes and their parsed form."""

    status: int
    body: bytes
    payload: dict[str, Any]
    latency_ms: float


class UpstreamStream:
    """An upstream SSE stream that has delivered its first complete event."""

    __slots__ = ("_deadline", "_endpoint", "_framer", "_response", "first", "first_byte_ms", "status")

    def __init__(
        self,
        endpoint: EndpointSpec,
        response: aiohttp.ClientResponse,
        framer: EventFramer,
        first: bytes,
        deadline: float,
        first_byte_ms: float,
    ) -> None:
        self._endpoint = endpoint
        self._response = response
        self._framer = framer
        self._deadline = deadline
        self.first = first
        self.first_byte_ms = first_byte_ms
        self.status = response.status

    @property
    def content_type(self) -> str:
        return self._response.headers.get("Content-Type", "text/event-stream")

    async def rest(self) -> AsyncGenerator[bytes, None]:
        """Whole events after the first, as they arrive; raises `UpstreamMidStream`."""
        content = self._response.content
        framer = self._framer
        try:
            while True:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await content.readany()
                if not chunk:
                    tail = framer.pending
                    if tail.strip():
                        yield tail + b"\n\n"
                    return
                events = framer.feed(chunk)
                if events:
                    yield events
        except TimeoutError as exc:
            raise UpstreamMidStream(self._endpoint.id, "total timeout while streaming") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamMidStream(self._endpoint.id, f"stream broke: {_describe(exc)}") from exc
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _map_error(endpoint: EndpointSpec, exc: BaseException, phase: TimeoutPhase, seconds: float) -> UpstreamError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(endpoint.id, TimeoutPhase.CONNECT, endpoint.timeouts.connect)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(endpoint.id, phase, seconds)
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError | aiohttp.ServerDisconnectedError):
        return UpstreamConnectError(endpoint.id, f"cannot connect to {endpoint.base_url}: {_describe(exc)}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamProtocolError(endpoint.id, f"response cut short: {_describe(exc)}")
    return UpstreamConnectError(endpoint.id, _describe(exc))


class UpstreamPool:
    """One connection pool per upstream server, shared by every endpoint on it."""

    def __init__(self, endpoints: Iterable[EndpointSpec], *, limit_per_upstream: int = 256) -> None:
        self._endpoints = tuple(endpoints)
        self._limit = limit_per_upstream
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        for ep in self._endpoints:
            if ep.base_url not in self._sessions:
                connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300, keepalive_timeout=30)
                self._sessions[ep.base_url] = aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=None),
                    auto_decompress=True,
                    skip_auto_headers=("User-Agent",),
                )

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    def _headers(self, ep: EndpointSpec, base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
        headers = {**base, **extra}
        if ep.api_key:
            headers["Authorization"] = f"Bearer {ep.api_key}"
        return headers

    async def _post(
        self, ep: EndpointSpec, body: bytes, headers: dict[str, str], deadline: float
    ) -> aiohttp.ClientResponse:
        """POST and wait for the status line; raises mapped errors (4xx/5xx included)."""
        session = self._sessions[ep.base_url]
        timeout = aiohttp.ClientTimeout(total=None, connect=ep.timeouts.connect, sock_connect=ep.timeouts.connect)
        loop = asyncio.get_running_loop()
        first_byte_at = min(deadline, loop.time() + ep.timeouts.first_byte)
        phase = TimeoutPhase.FIRST_BYTE if first_byte_at < deadline else TimeoutPhase.TOTAL
        seconds = ep.timeouts.first_byte if phase is TimeoutPhase.FIRST_BYTE else ep.timeouts.total
        try:
            async with asyncio.timeout_at(first_byte_at):
                response = await session.post(
                    f"{ep.base_url}/chat/completions", data=body, headers=headers, timeout=timeout
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _map_error(ep, exc, phase, seconds) from exc
        if response.status >= 400:
            await self._raise_status(ep, response, deadline)
        return response

    async def _raise_status(self, ep: EndpointSpec, response: aiohttp.ClientResponse, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                body = await response.content.read(ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, OSError, TimeoutError):
            body = b""
        finally:
            response.close()
        raise UpstreamStatusError(
            ep.id,
            response.status,
            body,
            response.headers.get("Content-Type"),
            response.headers.get("Retry-After"),
        )

    async def complete(self, ep: EndpointSpec, body: bytes, extra_headers: Mapping[str, str]) -> UpstreamReply:
        """One non-streaming call; the body must be a JSON object or the attempt failed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + ep.timeouts.total
        response = await self._post(ep, body, self._headers(ep, _JSON_HEADERS, extra_headers), deadline)
        try:
            async with asyncio.timeout_at(deadline):
                raw = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            response.close()
            raise _map_error(ep, exc, TimeoutPhase.TOTAL, ep.timeouts.total) from exc
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(ep.id, "answer is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise UpstreamProtocolError(ep.id, "answer is not a JSON object")
        return UpstreamReply(response.status, raw, payload, (loop.time() - started) * 1000)

    async def open_stream(self, ep: EndpointSpec, body: bytes, extra_headers: Mapping[str, str]) -> UpstreamStream:
        """Start a streaming call and wait for its first complete event (the commit point)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + ep.timeouts.total
        response = await self._post(ep, body, self._headers(ep, _STREAM_HEADERS, extra_headers), deadline)
        framer = EventFramer()
        first_byte_at = min(deadline, started + ep.timeouts.first_byte)
        try:
            async with asyncio.timeout_at(first_byte_at):
                first = b""
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    # A server that ignored `stream: true` answered with one body: relay it whole.
                    first = await response.read()
                while not first:
                    chunk = await response.content.readany()
                    if not chunk:
                        raise UpstreamProtocolError(ep.id, "stream ended before its first event")
                    first = framer.feed(chunk)
        except UpstreamError:
            response.close()
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            response.close()
            phase = TimeoutPhase.FIRST_BYTE if first_byte_at < deadline else TimeoutPhase.TOTAL
            raise _map_error(ep, exc, phase, min(ep.timeouts.first_byte, ep.timeouts.total)) from exc
        except BaseException:
            response.close()
            raise
        return UpstreamStream(ep, response, framer, first, deadline, (loop.time() - started) * 1000)

    async def probe(self, ep: EndpointSpec, limit_seconds: float) -> float:
        """GET {base_url}/models; returns latency in ms or raises an `UpstreamError`."""
        session = self._sessions[ep.base_url]
        headers = self._headers(ep, {"Accept": "application/json"}, {})
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(limit_seconds),
                session.get(f"{ep.base_url}/models", headers=headers) as response,
            ):
                await response.read()
                if response.status >= 400:
                    raise UpstreamStatusError(ep.id, response.status, b"", None)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _map_error(ep, exc, TimeoutPhase.TOTAL, limit_seconds) from exc
        return (time.perf_counter() - started) * 1000


def close_quietly(stream: UpstreamStream | None) -> None:
    if stream is not None:
        with contextlib.suppress(Exception):
            stream.close()

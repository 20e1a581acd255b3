"""The HTTP/1.1 connection layer: what a client gets when its bytes never
become a request (malformed request line, bad or oversized headers,
Content-Length/Transfer-Encoding conflicts, a head sent too slowly).

aiohttp answers those itself, before any middleware runs, with a plain-text
400 and an ERROR traceback in its log; it offers no hook for them
(aio-libs/aiohttp#3287). `GatewayRunner` is an `AppRunner` whose connections
use `GatewayRequestHandler`, which renders these rejects in the error shape of
the route the request line named (Anthropic's for `/v1/messages*`, OpenAI's
otherwise or when no path could be read), logs one INFO line, and enforces
`[limits] client_header_timeout_seconds` on a request head that has started
to arrive. Idle connections (no byte of a next request) are closed by
aiohttp's keep-alive timeout, `[limits] client_keepalive_timeout_seconds`.

An `Expect` other than `100-continue` is answered 417 in the route's shape by
`refuse_expectations`, wrapped around the app's handler: aiohttp's default
expect handler answers it in plain text before any middleware, and on every
route, matched or not (RFC 9110 §10.1.1).

`Expect: 100-continue` is answered when the body is first read, not when the
head arrives (`continue_on_read`, every route's expect handler): a request the
middlewares refuse from its head alone (no or unknown `[auth]` key, a spent
budget, a declared Content-Length over `server.max_body_bytes`, a client over
its `[rate_limit]`: the app's `BEFORE_CONTINUE` checks) gets its final
answer with no `100 Continue` and none of its body read into memory, with
`Connection: close`, since the client may still be holding its body
(RFC 9110 §10.1.1, §15.2.1). aiohttp's own handler sends `100 Continue` before
any middleware has run. A path or method no route serves never reaches a route's
expect handler (aiohttp gives it its default one): `refuse_expectations` answers
its 404/405 the same way, in place of `100 Continue`.

Usage: `runner = GatewayRunner(app, handler_cancellation=True, access_log=None)`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import hdrs, http_exceptions, web, web_protocol
from aiohttp.http import HttpVersion11
from aiohttp.streams import EMPTY_PAYLOAD, AsyncStreamIterator, ChunkTupleAsyncStreamIterator, StreamReader
from aiohttp.web_request import BaseRequest

from octoroute.server.middleware import api_of, error_body_for
from octoroute.server.state import BEFORE_CONTINUE, LIVE, HeadCheck

log = logging.getLogger("octoroute.server")
_REQUEST_LINE = re.compile(rb"^\s*[!-~]{1,32} (?:[A-Za-z][A-Za-z0-9+.-]{0,16}://[^/\s]{0,255})?(/[^\s?#]{0,2048})")
_LINGER_SECONDS = 10.0  # aiohttp's default
_HEAD_KEEP = 8192  # bytes of a request head kept to find its path (aiohttp's own line limit is 8190)
_CONNECT = re.compile(rb"^\s*CONNECT[ \t\r\n]")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientTimeout(http_exceptions.HttpProcessingError):
    """A client did not send its request head within the header timeout."""

    code = 408


class TunnelRefused(http_exceptions.HttpProcessingError):
    """A CONNECT request: octoroute is not a forward proxy. Refused from its method
    alone, before aiohttp's parser, which treats what follows CONNECT as a tunnel and
    can leave a malformed one (no target) waiting for ever."""

    code = 405


def describe_reject(status: int, exc: BaseException | None, head: bytes) -> tuple[int, str, str]:
    """Status, message and code for a request aiohttp could not parse; `head`:
    the start of the request head as received.

    The parser's own text is not echoed: it quotes the client's bytes.
    """
    if isinstance(exc, ClientTimeout):
        return 408, "request head not received within limits.client_header_timeout_seconds", "request_timeout"
    if isinstance(exc, TunnelRefused):
        return 405, "CONNECT is not supported: octoroute is an HTTP gateway, not a proxy", "method_not_allowed"
    if isinstance(exc, http_exceptions.LineTooLong):
        if b"\n" not in head:  # the request line itself never ended
            return 414, "request line is too long", "uri_too_long"
        return 431, "request header fields are too large", "header_fields_too_large"
    said = str(exc).lower()
    if isinstance(exc, http_exceptions.BadHttpMessage) and "too many headers" in said:
        return 431, "too many request header fields", "header_fields_too_large"
    if "missing 'host' header" in said:
        return 400, "malformed HTTP request: HTTP/1.1 requires a Host header", "malformed_request"
    if "can't be present with content-length" in said:
        return 400, "malformed HTTP request: Content-Length and Transfer-Encoding together", "malformed_request"
    if "invalid `transfer-encoding`" in said:
        return 400, "malformed HTTP request: unsupported Transfer-Encoding", "malformed_request"
    if "https traffic on an http port" in said:
        return 400, "malformed HTTP request: TLS sent to a plain HTTP port", "malformed_request"
    if "duplicate '" in said:
        return 400, "malformed HTTP request: a header that may appear once appears twice", "malformed_request"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return 400, "malformed HTTP request: invalid request target", "malformed_request"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return 400, "malformed HTTP request: invalid header", "malformed_request"
    if isinstance(exc, http_exceptions.TransferEncodingError | http_exceptions.ContentLengthError):
        return 400, "malformed HTTP request: invalid body framing", "malformed_request"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return 400, "malformed HTTP request: invalid request line", "malformed_request"
    if isinstance(exc, http_exceptions.HttpProcessingError) and 400 <= exc.code < 500:
        return exc.code, "malformed HTTP request", "malformed_request"
    return status, "malformed HTTP request", "malformed_request"


def path_of_head(head: bytes) -> str:
    """The path of a (possibly partial or broken) request head, or '' if none can be read."""
    match = _REQUEST_LINE.match(head)
    return match.group(1).decode("ascii", "replace") if match else ""


def render_reject(status: int, message: str, code: str, path: str) -> web.Response:
    body = error_body_for(api_of(path), message, status, code)
    response = web.Response(status=status, body=body, content_type="application/json")
    response.force_close()
    return response


def refuse_expectations(
    handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    router: web.UrlDispatcher,
) -> Callable[[BaseRequest], Awaitable[web.StreamResponse]]:
    """`handler` (the app's, whose routes are `router`), with an HTTP/1.1 request whose
    `Expect` is not `100-continue` answered 417 in its route's shape and the connection
    closed. A `100-continue` request whose body was never asked for (refused from its
    head, or a path or method no route serves) is answered with the connection closed;
    HTTP/1.0 expectations are ignored."""

    # Not a coroutine itself: a request without Expect gets `handler`'s own awaitable,
    # so the check adds no coroutine frame per request.
    def handle(request: BaseRequest) -> Awaitable[web.StreamResponse]:
        expect = request.headers.get(hdrs.EXPECT)
        if expect and request.version >= HttpVersion11:
            if expect.lower() != "100-continue":
                return _refuse_expectation(request)
            return _close_unless_continued(request, handler, router)
        return handler(request)

    return handle


async def _refuse_expectation(request: BaseRequest) -> web.StreamResponse:
    text = "unsupported Expect header: only 100-continue is supported"  # the value is not echoed
    log.info("rejected a request from %s: %s (417)", request.remote, text)
    return render_reject(417, text, "expectation_failed", request.path)


async def _close_unless_continued(
    request: BaseRequest,
    handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    router: web.UrlDispatcher,
) -> web.StreamResponse:
    unrouted = (await router.resolve(cast(web.Request, request))).http_exception
    if unrouted is not None:
        return await _answer_unrouted(request, handler, unrouted)
    response = await handler(request)
    body = request.get(CONTINUATION)
    if body is not None and not body.continued:
        # The client may send its body anyway, or never: the next request's first byte
        # cannot be told from this body's, so this connection ends with this answer.
        response.force_close()
    return response


async def _answer_unrouted(
    request: BaseRequest,
    handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    refusal: web.HTTPException,
) -> web.StreamResponse:
    """A path no route serves (404) or a method its route does not take (405): no route's
    expect handler runs for it, and aiohttp's default one would send `100 Continue` before
    the middlewares answer. The request goes through the app without its `Expect`, with a
    body whose first read raises `refusal` instead of sending `100 Continue`, so the answer
    (in the route's shape, with a request id, after `[auth]`'s 401) replaces it, as nginx and
    Envoy answer a request they refuse from its head."""
    headers = request.headers.copy()
    del headers[hdrs.EXPECT]
    unexpected = request.clone(headers=headers)
    if not unexpected.can_read_body:  # nothing to wait for: answered as without Expect
        return await handler(unexpected)
    unexpected._payload = cast(StreamReader, ContinueOnRead(unexpected, refusal))
    response = await handler(unexpected)
    response.force_close()  # the client may still send the body, or not: as `_close_unless_continued`
    return response


async def continue_on_read(request: web.Request) -> None:
    """Every route's expect handler: `100 Continue` is deferred to the body's first read
    (`ContinueOnRead`). The request reaches the middlewares with nothing sent.

    Usage: `app.router.add_post(path, handler, expect_handler=continue_on_read)`."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version < HttpVersion11 or expect.lower() != "100-continue" or not request.can_read_body:
        return  # other expectations are refused by `refuse_expectations`; a bodiless request needs no 100
    body = ContinueOnRead(request, checks=request.app.get(BEFORE_CONTINUE, ()))
    request[CONTINUATION] = body
    # The body is reached only through `request.content` / `request.read()`, both of which read `_payload`.
    request._payload = cast(StreamReader, body)


class ContinueOnRead:
    """A request body that sends `100 Continue` when it is first read: the way a request
    refused from its head alone is answered without the client sending its body (Go's
    net/http defers it the same way). Before that, a declared Content-Length over the
    app's body limit is refused (413) instead: the body would be refused once read; then
    each of `checks` (the app's `BEFORE_CONTINUE`, e.g. `[rate_limit]`) may raise a refusal.
    `refusal` (a 404/405 for a request no route serves) is raised on the first read."""

    def __init__(
        self,
        request: BaseRequest,
        refusal: web.HTTPException | None = None,
        checks: tuple[HeadCheck, ...] = (),
    ) -> None:
        self._body = request.content
        self._request = request
        self._refusal = refusal  # raised on the first read instead of `100 Continue` (a 404/405)
        self._checks = checks  # the app's `BEFORE_CONTINUE`: each may raise a refusal instead
        self.continued = False

    def __getattr__(self, name: str) -> Any:  # the rest of StreamReader (at_eof, exception, ...)
        return getattr(self._body, name)

    async def _go_on(self) -> None:
        if self.continued:
            return
        if self._refusal is not None:
            raise self._refusal
        declared, limit = self._request.content_length, self._request.client_max_size
        if limit and declared is not None and declared > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
        for check in self._checks:
            await check(cast(web.Request, self._request))
        self.continued = True
        writer = self._request.writer
        await writer.write(_CONTINUE)
        writer.output_size = 0  # as aiohttp's own expect handler: the response itself has not started

    async def read(self, n: int = -1) -> bytes:
        await self._go_on()
        return await self._body.read(n)

    async def readany(self) -> bytes:
        await self._go_on()
        return await self._body.readany()

    async def readchunk(self) -> tuple[bytes, bool]:
        await self._go_on()
        return await self._body.readchunk()

    async def readexactly(self, n: int) -> bytes:
        await self._go_on()
        return await self._body.readexactly(n)

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        await self._go_on()
        return await self._body.readline(max_line_length=max_line_length)

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        await self._go_on()
        return await self._body.readuntil(separator, max_size=max_size)

    async def wait_eof(self) -> None:
        await self._go_on()
        await self._body.wait_eof()

    def __aiter__(self) -> AsyncStreamIterator[bytes]:
        return AsyncStreamIterator(self.readline)

    def iter_chunked(self, n: int) -> AsyncStreamIterator[bytes]:
        self._body.set_read_chunk_size(n)
        return AsyncStreamIterator(lambda: self.read(n))

    def iter_any(self) -> AsyncStreamIterator[bytes]:
        return AsyncStreamIterator(self.readany)

    def iter_chunks(self) -> ChunkTupleAsyncStreamIterator:
        return ChunkTupleAsyncStreamIterator(cast(StreamReader, self))


CONTINUATION = web.RequestKey("continuation", ContinueOnRead)  # set by `continue_on_read`


class GatewayRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with rejects in the route's shape and a head timeout."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._head = b""  # bytes of the request head now arriving (bounded), to name its route
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected = False

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        idle = not self._request_in_progress and not self._messages
        if idle and len(self._head) < _HEAD_KEEP:
            self._head = (self._head + data)[:_HEAD_KEEP]
        if idle and _CONNECT.match(self._head):
            self._reject_head(TunnelRefused(message="CONNECT"), 405)
            return
        if idle and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_expired)
            if self._keepalive_handle is not None:  # no longer idle: the head timeout governs until it is parsed
                self._keepalive_handle.cancel()
                self._keepalive_handle = None
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:  # a head was parsed (or rejected): its clock stops
            self._stop_head_timer()
            for message, _ in self._messages:  # a loop, not any(genexpr): this runs once per request
                if isinstance(message, web_protocol._ErrInfo):
                    break
            else:
                self._head = b""

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages or self.transport is None:
            return
        self._reject_head(ClientTimeout(message="request head timed out"), 408)

    def _reject_head(self, reject: http_exceptions.HttpProcessingError, status: int) -> None:
        """Answer the request head now arriving with `reject` and close the connection;
        later bytes are ignored. Goes through aiohttp's own error path, as a parse error does."""
        self._stop_head_timer()
        self._rejected = True
        self._messages.append((web_protocol._ErrInfo(status=status, exc=reject, message=""), EMPTY_PAYLOAD))
        self._request_count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A body the client garbled (bad chunks, a Content-Encoding it is not in) was answered
        400 by `body_middleware`; aiohttp meets the same error again draining what is left, and
        would log it as an unhandled exception with a traceback."""
        if isinstance(kw.get("exc_info"), web.RequestPayloadError):
            log.info("closed a connection after a malformed request body")
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a fault of the gateway, not of the client: aiohttp's own logging and answer
            return super().handle_error(request, status, exc, message)
        status, text, code = describe_reject(status, exc, self._head)
        path = path_of_head(self._head)
        log.info("rejected a malformed request from %s: %s (%d)", request.remote, text, status)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is closed instead")
        return render_reject(status, text, code, path)


class GatewayServer(web.Server):
    """A `web.Server` whose connections are `GatewayRequestHandler`s."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout

    def __call__(self) -> web_protocol.RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An `AppRunner` for a gateway app: its connections answer protocol-level
    rejects in the route's shape, with the client timeouts of `[limits]`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        limits = self.app[LIVE].gateway.config.limits
        kwargs = dict(made._kwargs)  # what AppRunner was given for each connection
        kwargs["keepalive_timeout"] = limits.client_keepalive_timeout_seconds
        # After a rejected body, aiohttp drains what is left before closing (so the client reads the
        # answer rather than a reset), for at most this long; never longer than a body may take.
        kwargs["lingering_time"] = min(_LINGER_SECONDS, limits.client_body_timeout_seconds)
        return GatewayServer(
            refuse_expectations(made.request_handler, self.app.router),
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            header_timeout=limits.client_header_timeout_seconds,
            **kwargs,
        )

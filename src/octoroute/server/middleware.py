"""Cross-cutting request concerns, one job each, assembled in `app.create_app`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from octoroute.core.errors import ClientError, InvalidRequest, RequestTimeout, RoutingExhausted, UpstreamStatusError
from octoroute.core.types import Api
from octoroute.observe.observer import Observer
from octoroute.protocols import anthropic, ollama
from octoroute.protocols.openai import error_body, normalised_error
from octoroute.server.state import REQUEST_ID, TRACE

log = logging.getLogger("octoroute.server")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others count as 'other'
UNMATCHED = "unmatched"
CLIENT_CLOSED = 499  # nginx's convention for "client closed the connection"; logs and metrics only
NO_SUCH_ROUTE = (
    "no such route; the API is GET /v1/models, POST /v1/chat/completions, POST /v1/messages, "
    "POST /v1/responses, POST /v1/embeddings, POST /v1/completions, and Ollama's /api/* "
    "(/api/chat, /api/generate, /api/embed, /api/tags, /api/show, /api/ps, /api/version)"
)


class RequestIds:
    """Request ids: a random prefix per app (so workers never collide) and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def __call__(self, incoming: str | None) -> str:
        """Keep a caller's id when it is safe to echo, else make one."""
        if incoming and _SAFE_ID.match(incoming):
            return incoming
        return f"{self._prefix}{next(self._counter):012x}"


def api_of(path: str) -> Api:
    if path.startswith("/v1/messages"):
        return Api.ANTHROPIC
    return Api.OLLAMA if path.startswith("/api/") else Api.OPENAI


def error_body_for(api: Api, message: str, status: int, code: str | None = None, param: str | None = None) -> bytes:
    """An error object in `api`'s shape."""
    if api is Api.ANTHROPIC:
        return anthropic.error_body(message, status)
    if api is Api.OLLAMA:
        return ollama.error_body(message)
    return error_body(message, status, code=code, param=param)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error described independently of the shape it is rendered in."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: str | None = None
    upstream_body: bytes | None = None  # an upstream 4xx, normalised to the OpenAI error object


def describe_error(exc: BaseException) -> ErrorInfo:
    """Status, message and code for anything a handler raised; never a traceback."""
    if isinstance(exc, ClientError):
        return ErrorInfo(exc.status, exc.message, exc.code, exc.param, retry_after=exc.retry_after)
    if isinstance(exc, UpstreamStatusError):
        # The upstream's own words (already redacted by the upstream client), saying who said them;
        # its type, code and param are kept so SDKs and agents can still act on them.
        error = normalised_error(exc.body, exc.status)
        error["message"] = exc.client_message
        body = orjson.dumps({"error": error})
        return ErrorInfo(exc.status, exc.client_message, retry_after=exc.retry_after, upstream_body=body)
    if isinstance(exc, RoutingExhausted):
        retry_after = None if exc.retry_after is None else str(exc.retry_after)
        return ErrorInfo(exc.status, str(exc), exc.code, retry_after=retry_after)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ErrorInfo(413, "request body is too large; the limit is server.max_body_bytes", "payload_too_large")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ErrorInfo(405, f"method not allowed; use {allowed}", "method_not_allowed")
    if isinstance(exc, web.HTTPNotFound):
        return ErrorInfo(404, NO_SUCH_ROUTE, "not_found")
    if isinstance(exc, web.HTTPException):
        return ErrorInfo(exc.status, exc.reason)
    return ErrorInfo(500, "internal error in octoroute; see the gateway log for details", "internal_error")


def render_error(exc: BaseException, api: Api = Api.OPENAI) -> web.Response:
    """Any error in the error shape of the API the client called, with the right status."""
    info = describe_error(exc)
    if api is Api.OPENAI and info.upstream_body is not None:
        body = info.upstream_body
    else:
        body = error_body_for(api, info.message, info.status, info.code, info.param)
    response = web.Response(status=info.status, body=body, content_type="application/json")
    if info.retry_after:
        response.headers["Retry-After"] = info.retry_after
    if info.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="octoroute"'
    return response


def route_of(request: web.Request) -> str:
    """The registered route that matched (a bounded set), or 'unmatched'."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def observe_middleware(ids: RequestIds, observer: Observer) -> Middleware:
    """Outermost: gives every request its id and, for API calls (POST), a
    `RequestTrace`; counts every request in the HTTP metrics once its response
    (the whole stream, for streams) has been sent, and hands the trace to the
    observer's sinks (log line, decisions window, event file, span)."""
    metrics = observer.metrics

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = ids(request.headers.get("X-Request-Id"))
        request[REQUEST_ID] = request_id
        route = route_of(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        trace = None
        if method == "POST":
            trace = observer.start(request_id, route, method, request.headers.get("traceparent"))
            request[TRACE] = trace
            began = trace.started
        else:
            began = time.perf_counter()
        metrics.http_started()
        status = CLIENT_CLOSED  # unless a response comes back: the client went away and the handler was cancelled
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            seconds = time.perf_counter() - began
            if trace is not None:
                trace.status = trace.status or status  # a stream whose client left has set 499 itself
                trace.latency_ms = seconds * 1000
                status = trace.status
                observer.finish(trace)
            metrics.http_finished(route, method, status, seconds)

    return middleware


def errors_middleware() -> Middleware:
    """Turns every exception into an error response in the caller's shape, and
    puts the request id on responses not yet sent."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _handle(request, handler, request[REQUEST_ID])

    return middleware


async def _handle(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except (ClientError, RoutingExhausted, UpstreamStatusError, web.HTTPException) as exc:
        response = render_error(exc, api_of(request.path))
    except Exception as exc:
        log.exception("unhandled error serving %s %s (request %s)", request.method, request.path, request_id)
        response = render_error(exc, api_of(request.path))
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def body_middleware(timeout: float) -> Middleware:
    """Reads a request's body (aiohttp keeps it for `request.read()`) within
    `limits.client_body_timeout_seconds`; a body that is late, cut short, badly
    framed or too large is a 408, 400 or 413 in the caller's shape, never a hang
    or a 500, and the connection is closed (the rest of the body is not read)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.can_read_body:
            rejected: Exception | None = None
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                rejected = RequestTimeout("request body not received within limits.client_body_timeout_seconds")
            except web.RequestPayloadError:
                rejected = InvalidRequest(
                    "malformed HTTP request: the body is cut short, badly framed or not in its Content-Encoding"
                )
            except web.HTTPRequestEntityTooLarge as exc:
                rejected = exc
            if rejected is not None:
                log.info(
                    "request body rejected (request %s): %s", request[REQUEST_ID], describe_error(rejected).message
                )
                response = render_error(rejected, api_of(request.path))
                response.force_close()
                return response
        return await handler(request)

    return middleware

"""Cross-cutting request concerns, one job each, assembled in `app.create_app`."""

from __future__ import annotations

import itertools
import logging
import os
import re

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from octoroute.core.errors import ClientError, RoutingExhausted, UpstreamStatusError
from octoroute.protocols.openai import error_body, normalise_error_body
from octoroute.server.state import REQUEST_ID

log = logging.getLogger("octoroute.server")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


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


def json_error(status: int, message: str, *, code: str | None, param: str | None = None) -> web.Response:
    return web.Response(
        status=status, body=error_body(message, status, code=code, param=param), content_type="application/json"
    )


def render_error(exc: BaseException) -> web.Response:
    """Any error as the OpenAI error object with the right status; never a traceback."""
    if isinstance(exc, ClientError):
        return json_error(exc.status, exc.message, code=exc.code, param=exc.param)
    if isinstance(exc, UpstreamStatusError):
        response = web.Response(
            status=exc.status, body=normalise_error_body(exc.body, exc.status), content_type="application/json"
        )
        if exc.retry_after:
            response.headers["Retry-After"] = exc.retry_after
        return response
    if isinstance(exc, RoutingExhausted):
        return json_error(exc.status, str(exc), code=exc.code)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return json_error(
            413, "request body is too large; the limit is server.max_body_bytes", code="payload_too_large"
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return json_error(405, f"method not allowed; use {allowed}", code="method_not_allowed")
    if isinstance(exc, web.HTTPNotFound):
        return json_error(404, "no such route; see GET /v1/models and POST /v1/chat/completions", code="not_found")
    if isinstance(exc, web.HTTPException):
        return json_error(exc.status, exc.reason, code=None)
    return json_error(500, "internal error in octoroute; see the gateway log for details", code="internal_error")


def errors_middleware(ids: RequestIds) -> Middleware:
    """Outermost: gives every request an id, and turns every exception into an
    error response in the caller's shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _handle(request, handler, ids(request.headers.get("X-Request-Id")))

    return middleware


async def _handle(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    request[REQUEST_ID] = request_id
    try:
        response: web.StreamResponse = await handler(request)
    except (ClientError, RoutingExhausted, UpstreamStatusError, web.HTTPException) as exc:
        response = render_error(exc)
    except Exception as exc:
        log.exception("unhandled error serving %s %s (request %s)", request.method, request.path, request_id)
        response = render_error(exc)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response

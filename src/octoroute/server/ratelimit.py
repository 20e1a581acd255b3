"""Per-client rate limits at the ingress: `fleet.ratelimit.RateLimiter` as an
aiohttp middleware over the routed API paths.

`create_app` registers it only when `[rate_limit] enabled`, so a gateway
without limits pays nothing per request. A refused request is answered here,
in the error shape of the API its path speaks, and never reaches a handler or
an upstream. The token budget is charged with an estimate (body bytes / 4)
when the request is admitted, then settled with the upstream's reported usage
(input + output tokens) when it reports one; the estimate is given back when
the request ends in an error.

With `Expect: 100-continue`, `check_before_continue` gives the same refusal from
the request head, before the client sends its body (`server.protocol.ContinueOnRead`);
it charges nothing, and a request it lets through is checked here as any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from octoroute.config.models import RateLimitConfig, RateLimitOverride
from octoroute.core.errors import ClientError, RoutingExhausted, UpstreamStatusError
from octoroute.core.types import Api
from octoroute.fleet.clientkeys import ClientKey
from octoroute.fleet.ratelimit import ClientLimits, LimitReason, RateLimiter, SharedLimiter, Verdict, client_key
from octoroute.observe.metrics import Recorder
from octoroute.server.middleware import api_of, error_body_for
from octoroute.server.state import CLIENT, TRACE, HeadCheck

log = logging.getLogger("octoroute.ratelimit")

# The routes that reach an upstream. count_tokens never does; health, readiness,
# model lists and metrics must keep answering a client that is being limited.
LIMITED_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/messages", "/chat", "/v1/responses", "/api/chat", "/api/generate"}
)
LIMITED_PATHS |= {
    "/v1/embeddings",
    "/v1/completions",
    "/api/embed",
    "/api/embeddings",
}  # embeddings_api, completions_api
BYTES_PER_TOKEN = 4  # the same rough estimate as count_tokens (characters / 4)


def build_limiter(
    config: RateLimitConfig,
    keys: Iterable[tuple[str, RateLimitOverride]],
    clock: Callable[[], float],
    client_keys: Iterable[tuple[str, ClientLimits]] = (),
) -> RateLimiter:
    """The limiter for `[rate_limit]`, with each override's raw key (from `Topology.rate_limit_keys`)
    and each `[auth]` key's own limits under its bucket name (`ClientKey.rate_limit_key`)."""
    default = ClientLimits(config.requests_per_second, config.burst, config.tokens_per_minute)
    overrides = {key: _merge(default, override) for key, override in keys}
    return RateLimiter(
        default,
        overrides,
        clock,
        idle_seconds=config.idle_seconds,
        max_clients=config.max_clients,
        buckets=dict(client_keys),
    )


def _merge(default: ClientLimits, override: RateLimitOverride) -> ClientLimits:
    """An override's limits, each one it leaves out taken from the section."""
    return ClientLimits(
        override.requests_per_second if override.requests_per_second is not None else default.requests_per_second,
        override.burst if override.burst is not None else default.burst,
        override.tokens_per_minute if override.tokens_per_minute is not None else default.tokens_per_minute,
    )


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The client's API key: `Authorization: Bearer <key>`, else `x-api-key`, else None.

    `headers` is the request's case-insensitive multidict. The key is not checked
    against anything (octoroute does not authenticate clients): it only names the
    client's bucket.
    """
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def estimate_tokens(body: bytes) -> int:
    return (len(body) + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN


def rate_limit_middleware(limiter: RateLimiter, metrics: Recorder, shared: SharedLimiter | None = None) -> Middleware:
    """Admit or refuse each POST to `LIMITED_PATHS` per client; everything else passes.

    `shared`: the buckets live in the `[state]` store (Redis, or the workers' shared
    memory) instead of `limiter`'s own, so workers and replicas limit together; the
    in-process path stays free of awaits.

    Place it inside `errors_middleware`, so refusals get a request id and errors
    raised while reading the body are rendered. With a token budget, a request
    is admitted against an estimate (body bytes / 4) and settled afterwards with
    the tokens the upstream reported (input + output), or released when it
    failed; without a report the estimate stands.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path not in LIMITED_PATHS:
            return await handler(request)
        key = bucket_of(request)
        limits = limiter.limits_for(key)
        # The body is read (and cached for the handler) only when a token budget needs its size.
        estimate = estimate_tokens(await request.read()) if limits.tokens_per_minute is not None else None
        if shared is None:
            verdict = limiter.check_request(key, estimated_tokens=estimate)
            metrics.buckets(limiter.live_buckets)
        else:
            verdict = await shared.check_request(key, estimated_tokens=estimate)
        if not verdict.allowed:
            log.debug("refused %s for %s: %s", request.path, key, verdict.reason)
            _count_refusal(metrics, verdict)
            return refusal(verdict, limits, api_of(request.path), estimate)
        if not estimate:
            return await handler(request)
        try:
            response = await handler(request)
        except (ClientError, RoutingExhausted, UpstreamStatusError, web.HTTPException):
            await _settle(limiter, shared, key, 0, estimate)
            raise
        trace = request.get(TRACE)
        if response.status >= 400:  # nothing was generated: give the reservation back
            await _settle(limiter, shared, key, 0, estimate)
        elif trace is not None and (trace.input_tokens is not None or trace.output_tokens is not None):
            used = (trace.input_tokens or 0) + (trace.output_tokens or 0)
            await _settle(limiter, shared, key, used, estimate)
        return response

    return middleware


def bucket_of(request: web.Request) -> str:
    """The request's bucket: with [auth], the key's name (a client cannot mint a new
    allowance per request); else its hashed API key, or its address."""
    authenticated: ClientKey | None = request.get(CLIENT)
    if authenticated is not None:
        return authenticated.rate_limit_key
    return client_key(api_key_of(request.headers), request.remote)


def check_before_continue(limiter: RateLimiter, metrics: Recorder, shared: SharedLimiter | None = None) -> HeadCheck:
    """`rate_limit_middleware`'s refusal, for a request awaiting `100 Continue`, given from its
    head alone (`server.protocol.ContinueOnRead`, app key `BEFORE_CONTINUE`): the client then
    never sends a body that would be refused once read.

    Nothing is charged here. A request this lets through is checked, and charged, by the
    middleware once its body is in, as any request; one it refuses would have been refused
    there at this instant for any body, and a refusal charges nothing either. The token
    estimate is the one the middleware will make when the declared `Content-Length` is
    the body's size (no `Content-Encoding`); otherwise 0, a lower bound, so only a spent
    request rate or a budget in debt refuses, and `Retry-After` may be shorter than
    the body's own estimate would make it.

    A key that may not use every model is not checked here: after its body the model
    check (403) comes before the rate limit (429), and the model is in the body, so
    only the body can say which answer it gets."""

    async def check(request: web.Request) -> None:
        if request.method != "POST" or request.path not in LIMITED_PATHS:
            return
        authenticated: ClientKey | None = request.get(CLIENT)
        if authenticated is not None and authenticated.restricted:
            return
        key = bucket_of(request)
        limits = limiter.limits_for(key)
        estimate = _declared_estimate(request) if limits.tokens_per_minute is not None else None
        if shared is None:
            verdict = limiter.peek_request(key, estimated_tokens=estimate)
            metrics.buckets(limiter.live_buckets)
        else:
            verdict = await shared.peek_request(key, estimated_tokens=estimate)
        if not verdict.allowed:
            log.debug("refused %s for %s before 100 Continue: %s", request.path, key, verdict.reason)
            _count_refusal(metrics, verdict)
            raise RateLimited(*_refusal_of(verdict, limits, estimate))

    return check


def _count_refusal(metrics: Recorder, verdict: Verdict) -> None:
    """A refusal in `refusals` by reason (`octoroute_rate_limited`), whether it went out in
    place of `100 Continue` or after the body."""
    metrics.rate_limited(verdict.reason.value if verdict.reason else LimitReason.REQUESTS.value)


def _declared_estimate(request: web.Request) -> int:
    """`estimate_tokens` of the body the head declares, or 0 when its size is not known
    from the head (chunked, or a `Content-Encoding` the body is decoded from)."""
    declared = request.content_length
    if declared is None or request.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity":
        return 0
    return (declared + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN


class RateLimited(ClientError):
    """A `[rate_limit]` refusal raised before the body is read; rendered by `errors_middleware`
    exactly as `refusal` renders it (status, code, message, `Retry-After`)."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retry_after = retry_after


async def _settle(limiter: RateLimiter, shared: SharedLimiter | None, key: str, used: int, reserved: int) -> None:
    if shared is None:
        limiter.record_tokens(key, used, reserved_tokens=reserved)
    else:
        await shared.record_tokens(key, used, reserved_tokens=reserved)


def refusal(verdict: Verdict, limits: ClientLimits, api: Api, estimate: int | None) -> web.Response:
    """429 with `Retry-After` for a retryable refusal, 413 for a request over the whole
    per-minute budget; in the error shape of `api`."""
    status, code, message, retry_after = _refusal_of(verdict, limits, estimate)
    body = error_body_for(api, message, status, code)
    response = web.Response(status=status, body=body, content_type="application/json")
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _refusal_of(verdict: Verdict, limits: ClientLimits, estimate: int | None) -> tuple[int, str, str, str | None]:
    """Status, code, message and `Retry-After` (None for a 413) of a refusal."""
    retry_after: str | None = None
    if verdict.reason is LimitReason.TOO_LARGE:
        status, code = 413, "request_too_large"
        message = (
            f"this request is estimated at {estimate} tokens (body bytes / {BYTES_PER_TOKEN}), more than "
            f"this client's whole budget of {limits.tokens_per_minute} tokens per minute "
            "(rate_limit.tokens_per_minute); it can never be served, so send a shorter request"
        )
    else:
        status, code = 429, "rate_limit_exceeded"
        retry_after = verdict.retry_after_header()
        if verdict.reason is LimitReason.TOKENS:
            message = (
                f"token budget exceeded: this client may send {limits.tokens_per_minute} tokens per minute "
                f"(estimated as body bytes / {BYTES_PER_TOKEN}); retry after {retry_after} s"
            )
        else:
            message = (
                f"rate limit exceeded: this client may send {limits.requests_per_second:g} requests per second "
                f"in bursts of up to {limits.burst}; retry after {retry_after} s"
            )
    return status, code, message, retry_after

"""Client authentication at the ingress: `[auth]` keys checked on every route
but `/health` and `/ready`.

A key is read from `Authorization: Bearer`, `x-api-key` (Anthropic clients) or
`api-key` (Azure-style clients). Missing or unknown: 401 with `WWW-Authenticate`;
a spent day/month token budget: 429 with `Retry-After`; a `model` the key may
not use: 403; each in the error shape of the API the path speaks. The first two
are decided before the body is read, so with `Expect: 100-continue` the client
never sends it (`server.protocol.continue_on_read`). The key's
name (never the key) goes on the request trace, so the access log, the event
file and the per-key metric carry it; the rate limiter buckets by name.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from octoroute.config.models import ClientKeyConfig, Config
from octoroute.config.topology import Topology
from octoroute.core.errors import ClientError, Unauthorised
from octoroute.core.state import StateStore
from octoroute.fleet.clientkeys import Budgets, ClientKey, KeyRing
from octoroute.fleet.ratelimit import ClientLimits
from octoroute.fleet.state import LocalState
from octoroute.observe.metrics import AuthOutcome, Recorder
from octoroute.protocols.ollama import untagged
from octoroute.server.state import CLIENT, TRACE

log = logging.getLogger("octoroute.auth")

OPEN_PATHS = frozenset({"/health", "/ready", "/"})  # "/": Ollama clients' "is a server there?" probe
METRICS_PATHS = frozenset({"/metrics", "/metrics.json", "/dashboard"})  # the metrics token guards these when set
MODEL_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/chat", "/v1/responses"}
    | {"/api/chat", "/api/generate"}
)
MODEL_PATHS |= {"/v1/embeddings", "/v1/completions", "/api/embed", "/api/embeddings"}  # embeddings_api, completions_api


class Forbidden(ClientError):
    status = 403
    code = "permission_denied"


class BudgetExhausted(ClientError):
    status = 429
    code = "token_budget_exceeded"


def build_keyring(config: Config, topology: Topology) -> KeyRing:
    """Every key `[auth]` accepts, with its `[[auth.keys]]` entry's permissions."""
    keys = []
    for resolved in topology.client_keys:
        entry = config.auth.keys[resolved.index] if resolved.index is not None else None
        keys.append(_client_key(resolved.name, resolved.digest, entry, config))
    return KeyRing(keys)


def _client_key(name: str, digest: str, entry: ClientKeyConfig | None, config: Config) -> ClientKey:
    if entry is None:
        return ClientKey(name, digest)
    rl = config.rate_limit
    limited = entry.requests_per_second is not None or entry.burst is not None or entry.tokens_per_minute is not None
    limits = (
        ClientLimits(
            entry.requests_per_second if entry.requests_per_second is not None else rl.requests_per_second,
            entry.burst if entry.burst is not None else rl.burst,
            entry.tokens_per_minute if entry.tokens_per_minute is not None else rl.tokens_per_minute,
        )
        if limited
        else None
    )
    return ClientKey(name, digest, entry.models, limits, entry.tokens_per_day, entry.tokens_per_month)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer`, else `x-api-key`, else `api-key`."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or headers.get("api-key") or None


def auth_middleware(
    ring: KeyRing,
    metrics: Recorder,
    *,
    metrics_token_set: bool,
    wall_clock: Callable[[], float] = time.time,
    store: StateStore | None = None,
) -> Middleware:
    """Refuse requests without a known key or with a spent budget; stamp the key on the request.

    Place it inside `errors_middleware` (refusals are rendered in the caller's shape,
    401 with `WWW-Authenticate`), before `body_middleware` (nothing is read for a
    refused key) and `model_access_middleware`, and outside the rate limiter (which
    buckets by name). It never reads the body itself: a read here would escape
    `limits.client_body_timeout_seconds`."""
    budgets = Budgets(store if store is not None else LocalState(time.monotonic))  # [state]: shared by replicas

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or (metrics_token_set and path in METRICS_PATHS):
            return await handler(request)
        key = ring.verify(presented_key(request.headers))
        if key is None:
            metrics.client_request(None, AuthOutcome.UNAUTHENTICATED)
            raise Unauthorised(
                "missing or unknown API key: send it as 'Authorization: Bearer <key>', 'x-api-key' or 'api-key'"
            )
        request[CLIENT] = key
        trace = request.get(TRACE)
        if trace is not None:
            trace.client = key.name
        if request.method == "POST" and path in MODEL_PATHS:
            # The budget before the model: a spent key is refused before its body is read
            # (with `Expect: 100-continue`, before the client sends it; server.protocol).
            refusal = await budgets.check(key, wall_clock())
            if refusal is not None:
                metrics.client_request(key.name, AuthOutcome.BUDGET)
                error = BudgetExhausted(
                    f"API key '{key.name}' has used its {refusal.budget} tokens for this {refusal.period} (UTC); "
                    f"it resets in {math.ceil(refusal.resets_in)} s"
                )
                error.retry_after = str(math.ceil(refusal.resets_in))
                raise error
        else:  # model routes are counted by `model_access_middleware`, once their body is in
            metrics.client_request(key.name, AuthOutcome.ACCEPTED)
        response = await handler(request)
        if trace is not None and (trace.input_tokens is not None or trace.output_tokens is not None):
            await budgets.record(key, (trace.input_tokens or 0) + (trace.output_tokens or 0), wall_clock())
        return response

    return middleware


def model_access_middleware(metrics: Recorder) -> Middleware:
    """Refuse a key the model its request names (403); runs after `body_middleware`,
    so the body it looks at was read within `limits.client_body_timeout_seconds`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.get(CLIENT)
        path = request.path
        if key is not None and request.method == "POST" and path in MODEL_PATHS:
            model = _model_of(await request.read()) or ("auto" if path == "/chat" else None)
            if model is not None and not _allows(key, model, path):
                metrics.client_request(key.name, AuthOutcome.FORBIDDEN)
                raise Forbidden(f"API key '{key.name}' may not use model '{model[:200]}'", param="model")
            metrics.client_request(key.name, AuthOutcome.ACCEPTED)
        return await handler(request)

    return middleware


def _allows(key: ClientKey, model: str, path: str) -> bool:
    """Ollama clients add `:latest` to names; a key allowed the bare name may use it so."""
    if key.allows(model):
        return True
    bare = untagged(model) if path.startswith("/api/") else None
    return bare is not None and key.allows(bare)


def _model_of(body: bytes) -> str | None:
    """The top-level `model` of a JSON body, None when there is none (the handler then says why)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None

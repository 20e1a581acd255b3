"""The app factory: one `Live` per app holding the running `Gateway` (swapped by a
config reload), its pools opened on startup and closed on cleanup, the
health-check task alongside."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING

from aiohttp import web

from octoroute import __version__
from octoroute.config.models import Config
from octoroute.config.topology import Topology
from octoroute.core.state import StateStore
from octoroute.fleet.ratelimit import SharedLimiter
from octoroute.fleet.state import LocalState
from octoroute.observe.metrics import PrometheusRecorder, Recorder
from octoroute.observe.observer import Observer
from octoroute.observe.tracing import Tracing
from octoroute.observe.usage import prices_of
from octoroute.routing.scoring import ScoreModel
from octoroute.server import anthropic_api, completions_api, embeddings_api, handlers, ollama_api, responses_api
from octoroute.server.auth import auth_middleware, build_keyring, model_access_middleware
from octoroute.server.live import Live
from octoroute.server.middleware import RequestIds, body_middleware, errors_middleware, observe_middleware
from octoroute.server.protocol import continue_on_read
from octoroute.server.ratelimit import build_limiter, check_before_continue, rate_limit_middleware
from octoroute.server.responses_store import Responses, ResponseStore
from octoroute.server.state import BEFORE_CONTINUE, DASHBOARD, LIVE, RESPONSES, STATE, HeadCheck
from octoroute.service import Gateway
from octoroute.state.documents import DirectoryDocuments
from octoroute.state.guard import GuardedState
from octoroute.state.redis_store import RedisState
from octoroute.state.shm import SharedMemoryState
from octoroute.upstream.client import UpstreamPool

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

SHARED_MEMORY_FILE = "state.shm"  # in the workers' metrics directory
RESPONSES_DIRECTORY = "responses"  # the workers' stored responses, in the same directory
STATE_CONNECT_SECONDS = 2.0  # for the first connection to Redis, at startup
DASHBOARD_PAGE = files("octoroute.observe").joinpath("dashboard.html")


def create_app(
    config: Config,
    topology: Topology,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    multiprocess_dir: str | None = None,
    workers: int = 1,
    started_at: float | None = None,
    span_exporter: SpanExporter | None = None,
    wall_clock: Callable[[], float] = time.time,
    score_model: ScoreModel | None = None,
) -> web.Application:
    """A complete gateway app; run it with `server.GatewayRunner(app, handler_cancellation=True)`
    (protocol-level rejects in the route's shape, client timeouts) so that a client
    disconnect cancels its upstream request.

    `multiprocess_dir` / `workers`: set by `octoroute serve --workers N`, so that
    metrics and the decisions window are shared by the workers; `started_at`: when
    the server (not this worker) started. `span_exporter`:
    where trace spans go instead of OTLP (tests). `wall_clock`: epoch
    seconds, for the UTC days and months of `[auth]` token budgets. `score_model`:
    the learned scorer's model instead of the bundled one (tests)."""
    ring = build_keyring(config, topology) if config.auth.enabled else None
    client_keys = sorted({k.name for k in ring.keys}) if ring is not None else []
    observer = build_observer(config, topology, multiprocess_dir, workers, span_exporter, client_keys)
    store = build_state(config, topology, clock, multiprocess_dir, workers, observer.metrics)
    shared = None if isinstance(store, LocalState) else store  # one process alone: nothing to share
    if shared is not None and observer.metrics.enabled:
        observer.usage.share(shared, client_keys)
    middlewares = [observe_middleware(RequestIds(), observer), errors_middleware()]
    if ring is not None:  # off by default: the demo and loopback setups stay open
        metrics_token_set = bool(topology.metrics_token)
        middlewares.append(
            auth_middleware(
                ring, observer.metrics, metrics_token_set=metrics_token_set, wall_clock=wall_clock, store=store
            )
        )
    # the body is read (within its timeout) only once the key has been checked,
    # and the key's model patterns are checked against that body after it
    middlewares.append(body_middleware(config.limits.client_body_timeout_seconds))
    if ring is not None:
        middlewares.append(model_access_middleware(observer.metrics))
    key_limits = [(k.rate_limit_key, k.limits) for k in ring.keys if k.limits is not None] if ring else []
    before_continue: list[HeadCheck] = []
    if config.rate_limit.enabled:  # not registered at all otherwise: no cost per request
        limiter = build_limiter(config.rate_limit, topology.rate_limit_keys, clock, key_limits)
        shared_limiter = SharedLimiter(limiter, shared) if shared is not None else None
        middlewares.append(rate_limit_middleware(limiter, observer.metrics, shared_limiter))
        before_continue.append(check_before_continue(limiter, observer.metrics, shared_limiter))
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=middlewares)
    if before_continue:  # with Expect: 100-continue, refused from the head (server.protocol.ContinueOnRead)
        app[BEFORE_CONTINUE] = tuple(before_continue)

    def build(config: Config, topology: Topology) -> Gateway:
        return Gateway(
            config,
            topology,
            UpstreamPool(topology.endpoints.values(), config.limits),
            clock=clock,
            rng=rng,
            observer=observer,
            started_at=started_at,
            score_model=score_model,
            state=shared,
        )

    app[LIVE] = Live(build(config, topology), build)
    app[STATE] = store
    app[DASHBOARD] = DASHBOARD_PAGE.read_bytes()
    app[RESPONSES] = build_responses(config, store, clock, multiprocess_dir, workers)
    app.cleanup_ctx.append(_lifecycle)
    # every route defers `100 Continue` to its body's first read (server.protocol.continue_on_read)
    post = partial(app.router.add_post, expect_handler=continue_on_read)
    get = partial(app.router.add_get, expect_handler=continue_on_read)
    delete = partial(app.router.add_delete, expect_handler=continue_on_read)
    post("/v1/chat/completions", handlers.chat_completions)
    get("/v1/models", handlers.list_models)
    post("/v1/messages", anthropic_api.messages)
    post("/v1/messages/count_tokens", anthropic_api.count_tokens)
    post("/v1/responses", responses_api.create_response)
    get("/v1/responses/{response_id}", responses_api.get_response)
    delete("/v1/responses/{response_id}", responses_api.delete_response)
    post("/v1/embeddings", embeddings_api.embeddings)
    post("/v1/completions", completions_api.completions)
    post("/api/embed", embeddings_api.ollama_embed)
    post("/api/embeddings", embeddings_api.ollama_embeddings)
    post("/chat", handlers.native_chat)
    get("/health", handlers.health)
    get("/metrics", handlers.metrics)
    get("/metrics.json", handlers.metrics_json)
    get("/dashboard", handlers.dashboard)
    get("/ready", handlers.ready)
    get("/models", handlers.endpoints)
    # Ollama's API (docs/api-ollama.md); `/api/embed` and `/api/embeddings` are above
    get("/", ollama_api.root)
    post("/api/chat", ollama_api.chat)
    post("/api/generate", ollama_api.generate)
    get("/api/tags", ollama_api.tags)
    post("/api/show", ollama_api.show)
    get("/api/ps", ollama_api.ps)
    get("/api/version", ollama_api.version)
    return app


def build_state(
    config: Config,
    topology: Topology,
    clock: Callable[[], float],
    multiprocess_dir: str | None,
    workers: int,
    metrics: Recorder,
) -> StateStore:
    """The `[state]` store: Redis guarded by a local fallback; else the workers' shared
    memory (in the metrics directory) with `--workers N`; else this process alone."""
    state = config.state
    metrics.state_backend(True)
    if state.backend == "redis":
        timeout = state.timeout_ms / 1000
        return GuardedState(
            RedisState(topology.state_url, prefix=state.key_prefix, timeout_seconds=timeout),
            LocalState(clock),
            timeout_seconds=timeout,
            retry_seconds=state.retry_seconds,
            on_change=lambda up, error: metrics.state_backend(up),
            on_error=metrics.state_backend_error,
        )
    if workers > 1 and multiprocess_dir is not None:
        return SharedMemoryState(os.path.join(multiprocess_dir, SHARED_MEMORY_FILE))
    return LocalState(clock)


def build_responses(
    config: Config, store: StateStore, clock: Callable[[], float], multiprocess_dir: str | None, workers: int
) -> Responses:
    """The Responses API's store, shared with what `[state]` is shared with: Redis (this
    process's memory beside it, for outages), else a directory in the workers' metrics
    directory with `--workers N`, else memory alone."""
    local = ResponseStore(config.responses.store_max_entries, config.responses.store_ttl_seconds, clock)
    if isinstance(store, GuardedState):
        return Responses(local, store, keep_local=True)
    if workers > 1 and multiprocess_dir is not None:
        return Responses(local, DirectoryDocuments(os.path.join(multiprocess_dir, RESPONSES_DIRECTORY)))
    return Responses(local)


def build_observer(
    config: Config,
    topology: Topology,
    multiprocess_dir: str | None,
    workers: int,
    span_exporter: SpanExporter | None,
    client_keys: list[str] | None = None,
) -> Observer:
    obs = config.observability
    metrics = (
        PrometheusRecorder(
            topology.endpoints,
            topology.groups,
            routing_unit=obs.routing_duration_unit,
            multiprocess_dir=multiprocess_dir,
            client_keys=client_keys or (),
            prices=prices_of(topology.endpoints.values()),
            currency=config.usage.currency,
        )
        if obs.metrics
        else Recorder()
    )
    tracing = Tracing.build(obs.tracing, span_exporter) if obs.tracing.enabled else None
    return Observer.build(
        metrics,
        decisions_kept=obs.decisions_kept,
        events_file=obs.events_file,
        log_content=obs.log_content,
        tracing=tracing,
        multiprocess_dir=multiprocess_dir,
        workers=workers,
    )


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    live = app[LIVE]
    observer = live.gateway.observer
    observer.started({"pid": os.getpid(), "version": __version__, "endpoints": list(live.gateway.topology.endpoints)})
    store = app[STATE]
    if isinstance(store, GuardedState):
        await store.start(STATE_CONNECT_SECONDS)
    await live.start()
    try:
        yield
    finally:
        await live.stop()
        await live.gateway.stop_publishing()
        await observer.usage.drain()
        await store.close()
        await asyncio.to_thread(observer.close)  # flushing spans may block on the exporter

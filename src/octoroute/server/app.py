"""The app factory: one `Gateway` per app, its pools opened on startup and
closed on cleanup, the health-check task alongside."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from octoroute.config.models import Config
from octoroute.config.topology import Topology
from octoroute.server import anthropic_api, handlers
from octoroute.server.middleware import RequestIds, errors_middleware
from octoroute.server.ratelimit import build_limiter, rate_limit_middleware
from octoroute.server.state import GATEWAY
from octoroute.service import Gateway
from octoroute.upstream.client import UpstreamPool


def create_app(
    config: Config,
    topology: Topology,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> web.Application:
    """A complete gateway app; run it with `aiohttp.web.AppRunner(app, handler_cancellation=True)`
    so that a client disconnect cancels its upstream request."""
    middlewares = [errors_middleware(RequestIds())]
    if config.rate_limit.enabled:  # not registered at all otherwise: no cost per request
        limiter = build_limiter(config.rate_limit, topology.rate_limit_keys, clock)
        middlewares.append(rate_limit_middleware(limiter))
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=middlewares)
    gateway = Gateway(config, topology, UpstreamPool(topology.endpoints.values()), clock=clock, rng=rng)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_post("/v1/messages", anthropic_api.messages)
    app.router.add_post("/v1/messages/count_tokens", anthropic_api.count_tokens)
    app.router.add_post("/chat", handlers.native_chat)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/ready", handlers.ready)
    app.router.add_get("/models", handlers.endpoints)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    await gateway.pool.start()
    task: asyncio.Task[None] | None = None
    if gateway.config.health.active:
        task = asyncio.create_task(gateway.run_health_checks(), name="octoroute-health")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.pool.close()

"""Shared fixtures: a background event loop, fixture upstreams (real HTTP
servers on loopback) and a gateway started from a config dict."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import anthropic
import openai
import pytest
from aiohttp import web
from hypothesis import settings
from tests.local_servers import LocalServer
from tests.redis_server import RedisServer
from tests.support import serve_on_loopback

from octoroute.config import build_topology, parse_config
from octoroute.demo.simulated import SimulatedUpstream
from octoroute.demo.slotted import SlottedUpstream
from octoroute.server import GatewayRunner, create_app
from octoroute.server.state import LIVE
from octoroute.service import Gateway

# CI (CI=true) runs the property tests on a fixed seed, so a run is reproducible from its
# commit alone; local runs draw fresh examples and keep failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    settings.load_profile("ci")

T = TypeVar("T")
P = ParamSpec("P")


class Server(Protocol):
    """A fixture server started and stopped on the test loop."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class LoopThread:
    """An asyncio loop in a daemon thread, so sync tests and sync SDK clients can
    talk to servers running on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def serving(
        self, make: Callable[P, S], before_stop: Callable[[S], object] | None = None
    ) -> Iterator[Callable[P, S]]:
        """The body of a factory fixture: each call builds a server with `make` and starts it
        on this loop; when the test ends, each is stopped (after `before_stop(server)`, run
        on the loop, e.g. to let go of held answers).

            @pytest.fixture
            def servers(loop_thread): yield from loop_thread.serving(ContextUpstream)
        """
        started: list[S] = []

        def start(*args: P.args, **kwargs: P.kwargs) -> S:
            server = make(*args, **kwargs)
            self.run(server.start())
            started.append(server)
            return server

        async def stop(server: S) -> None:
            if before_stop is not None:
                before_stop(server)
            await server.stop()

        yield start
        for server in started:
            self.run(stop(server))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@dataclass
class RunningGateway:
    url: str
    port: int
    app: web.Application
    runner: web.AppRunner

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def gateway(self) -> Gateway:
        return self.app[LIVE].gateway


async def start_gateway(
    config_data: dict[str, Any], env: dict[str, str] | None = None, **app_options: Any
) -> RunningGateway:
    """`app_options` go to `create_app` (e.g. `span_exporter`)."""
    config = parse_config(config_data, env or {})
    app = create_app(config, build_topology(config, env or {}), **app_options)
    runner, port = await serve_on_loopback(app, runner_type=GatewayRunner, handler_cancellation=True)
    return RunningGateway(f"http://127.0.0.1:{port}", port, app, runner)


@pytest.fixture
def upstreams(loop_thread: LoopThread) -> Iterator[Callable[[str], SimulatedUpstream]]:
    """Factory: `upstreams("label")` starts a fresh fixture upstream; all stop after the test."""

    def make(label: str) -> SimulatedUpstream:
        return SimulatedUpstream(label=label, record=True)

    yield from loop_thread.serving(make)


@pytest.fixture
def slotted(loop_thread: LoopThread) -> Iterator[Callable[..., SlottedUpstream]]:
    """Factory: `slotted("label", slots=1)` starts a llama.cpp-like fixture with slots and a
    prompt cache per slot; held answers are let go and all stop after the test."""

    def make(label: str, **options: Any) -> SlottedUpstream:
        return SlottedUpstream(label=label, **options)

    yield from loop_thread.serving(make, before_stop=SlottedUpstream.release_all)


@pytest.fixture
def gateway(loop_thread: LoopThread) -> Iterator[Callable[..., RunningGateway]]:
    """Factory: `gateway(config_dict, env=None, **create_app_options)` starts octoroute on a
    loopback port; stopped after the test."""
    started: list[RunningGateway] = []

    def make(config_data: dict[str, Any], env: dict[str, str] | None = None, **app_options: Any) -> RunningGateway:
        running = loop_thread.run(start_gateway(config_data, env, **app_options))
        started.append(running)
        return running

    yield make
    for running in started:
        loop_thread.run(running.runner.cleanup())


class SdkClients:
    """Official SDK clients for a running gateway, strict validation on, no retries;
    closed after the test."""

    def __init__(self) -> None:
        self._made: list[openai.OpenAI | anthropic.Anthropic] = []

    def openai(self, gw: RunningGateway | str) -> openai.OpenAI:
        """For a gateway, or any OpenAI base URL (…/v1)."""
        base_url = gw if isinstance(gw, str) else gw.base_url
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, _strict_response_validation=True)
        self._made.append(client)
        return client

    def anthropic(self, gw: RunningGateway | str) -> anthropic.Anthropic:
        """For a gateway, or any Anthropic base URL (without /v1)."""
        url = gw if isinstance(gw, str) else gw.url
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, _strict_response_validation=True)
        self._made.append(client)
        return client

    def close(self) -> None:
        for client in self._made:
            client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running `redis-server` of this test's own on a free loopback port; stopped after it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sdk_clients() -> Iterator[SdkClients]:
    clients = SdkClients()
    yield clients
    clients.close()


@pytest.fixture
def local_server(loop_thread: LoopThread) -> Iterator[Callable[..., LocalServer]]:
    """Factory: `local_server(Kind.OLLAMA, [Model("qwen2.5:3b", 3.1e9)], tools=False)` starts a
    server answering like Ollama, llama.cpp or vLLM (tests/local_servers.py); all stop after the test
    (a held listing is let go first)."""
    yield from loop_thread.serving(LocalServer, before_stop=LocalServer.release_listing)

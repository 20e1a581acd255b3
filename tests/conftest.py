"""Shared fixtures: a background event loop, fixture upstreams (real HTTP
servers on loopback) and a gateway started from a config dict."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from aiohttp import web
from tests.local_servers import Kind, LocalServer, Model

from octoroute.config import build_topology, parse_config
from octoroute.demo.simulated import SimulatedUpstream
from octoroute.demo.slotted import SlottedUpstream
from octoroute.server import GatewayRunner, create_app
from octoroute.server.state import LIVE
from octoroute.service import Gateway

T = TypeVar("T")


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
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return RunningGateway(f"http://127.0.0.1:{port}", port, app, runner)


@pytest.fixture
def upstreams(loop_thread: LoopThread) -> Iterator[Callable[[str], SimulatedUpstream]]:
    """Factory: `upstreams("label")` starts a fresh fixture upstream; all stop after the test."""
    started: list[SimulatedUpstream] = []

    def make(label: str) -> SimulatedUpstream:
        sim = SimulatedUpstream(label=label, record=True)
        loop_thread.run(sim.start())
        started.append(sim)
        return sim

    yield make
    for sim in started:
        loop_thread.run(sim.stop())


@pytest.fixture
def slotted(loop_thread: LoopThread) -> Iterator[Callable[..., SlottedUpstream]]:
    """Factory: `slotted("label", slots=1)` starts a llama.cpp-like fixture with slots and a
    prompt cache per slot; held answers are let go and all stop after the test."""
    started: list[SlottedUpstream] = []

    def make(label: str, **options: Any) -> SlottedUpstream:
        up = SlottedUpstream(label=label, **options)
        loop_thread.run(up.start())
        started.append(up)
        return up

    yield make
    for up in started:
        loop_thread.run(_call(up.release_all))
        loop_thread.run(up.stop())


async def _call(fn: Callable[[], object]) -> None:
    fn()


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
def sdk_clients() -> Iterator[SdkClients]:
    clients = SdkClients()
    yield clients
    clients.close()


@pytest.fixture
def local_server(loop_thread: LoopThread) -> Iterator[Callable[..., LocalServer]]:
    """Factory: `local_server(Kind.OLLAMA, [Model("qwen2.5:3b", 3.1e9)], tools=False)` starts a
    server answering like Ollama, llama.cpp or vLLM (tests/local_servers.py); all stop after the test."""
    started: list[LocalServer] = []

    def make(kind: Kind, models: list[Model], **options: Any) -> LocalServer:
        server = LocalServer(kind, models, **options)
        loop_thread.run(server.start())
        started.append(server)
        return server

    yield make
    for server in started:
        if server.hold_listing is not None:
            loop_thread.loop.call_soon_threadsafe(server.hold_listing.set)
        loop_thread.run(server.stop())

"""`[rate_limit]`: per-client limits on the routed API paths, on a real gateway
whose clock is a fake one the tests advance (no sleeping)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import orjson
import pytest
import urllib3
from aiohttp import web
from tests.conftest import LoopThread
from tests.spec_validation import validate
from tests.support import FakeClock, endpoint, fleet_config, serve_on_loopback

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import ConfigError
from octoroute.demo.simulated import SimulatedUpstream
from octoroute.server import create_app

HTTP = urllib3.PoolManager()
CHAT: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE: dict[str, Any] = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
BODIES: dict[str, dict[str, Any]] = {"/v1/chat/completions": CHAT, "/v1/messages": MESSAGE, "/chat": {"prompt": "hi"}}


@dataclass
class Limited:
    url: str
    app: web.Application
    upstream: SimulatedUpstream
    clock: FakeClock

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        return HTTP.request(
            "POST",
            self.url + path,
            body=orjson.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
            retries=False,
        )

    def statuses(self, n: int, path: str = "/v1/chat/completions", **headers: str) -> list[int]:
        return [self.post(path, BODIES[path], headers).status for _ in range(n)]


@pytest.fixture
def limited(loop_thread: LoopThread, upstreams: Callable[[str], SimulatedUpstream]) -> Iterator[Callable[..., Limited]]:
    """Factory: `limited(rate_limit={...}, env={...})` starts a gateway on a fake clock."""
    runners: list[web.AppRunner] = []

    async def start(config_data: dict[str, Any], env: dict[str, str], clock: FakeClock) -> tuple[str, web.AppRunner]:
        config = parse_config(config_data, env)
        app = create_app(config, build_topology(config, env), clock=clock)
        runner, port = await serve_on_loopback(app, handler_cancellation=True)
        return f"http://127.0.0.1:{port}", runner

    def make(rate_limit: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Limited:
        upstream = upstreams("fast")
        sections = {"rate_limit": rate_limit} if rate_limit is not None else {}
        data = fleet_config({"fast": [endpoint(upstream, "fast-model")]}, **sections)
        clock = FakeClock()
        url, runner = loop_thread.run(start(data, env or {}, clock))
        runners.append(runner)
        return Limited(url, runner.app, upstream, clock)

    yield make
    for runner in runners:
        loop_thread.run(runner.cleanup())


def test_a_burst_then_429_with_retry_after_and_nothing_forwarded(limited):
    gw = limited({"enabled": True, "requests_per_second": 0.5, "burst": 3})
    assert gw.statuses(3) == [200, 200, 200]

    refused = gw.post("/v1/chat/completions", CHAT)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"  # one request per 2 s
    assert refused.headers["X-Request-Id"]
    body = refused.json()
    validate("ErrorResponse", body)
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "0.5 requests per second" in body["error"]["message"]
    assert gw.upstream.count == 3


def test_the_client_recovers_as_the_clock_advances(limited):
    gw = limited({"enabled": True, "requests_per_second": 1, "burst": 2})
    assert gw.statuses(3) == [200, 200, 429]
    gw.clock.advance(0.5)
    assert gw.statuses(1) == [429]
    gw.clock.advance(0.5)
    assert gw.statuses(2) == [200, 429]
    gw.clock.advance(10)  # refilled to the burst, no further
    assert gw.statuses(3) == [200, 200, 429]
    assert gw.upstream.count == 5


def test_an_override_keyed_by_an_environment_variable(limited):
    rate_limit = {"enabled": True, "burst": 1, "overrides": [{"key_env": "TEAM_A_KEY", "burst": 4}]}
    gw = limited(rate_limit, env={"TEAM_A_KEY": "sk-team-a"})
    team_a = {"Authorization": "Bearer sk-team-a"}
    assert [gw.post("/v1/chat/completions", CHAT, team_a).status for _ in range(4)] == [200] * 4
    # The same key in Anthropic's header is the same client.
    assert gw.post("/v1/chat/completions", CHAT, {"x-api-key": "sk-team-a"}).status == 429
    assert gw.statuses(2, Authorization="Bearer sk-someone-else") == [200, 429]


def test_clients_are_limited_independently(limited):
    gw = limited({"enabled": True, "requests_per_second": 1, "burst": 1})
    assert gw.statuses(2, Authorization="Bearer key-one") == [200, 429]
    assert gw.statuses(2, **{"x-api-key": "key-two"}) == [200, 429]
    assert gw.statuses(2) == [200, 429]  # no key: limited by address
    assert gw.upstream.count == 3


def test_the_anthropic_route_refuses_in_anthropic_shape(limited):
    gw = limited({"enabled": True, "burst": 1})
    assert gw.post("/v1/messages", MESSAGE).status == 200

    refused = gw.post("/v1/messages", MESSAGE)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    error = anthropic.types.ErrorResponse.model_validate(refused.json())
    assert error.error.type == "rate_limit_error"
    # The SDK sees its own RateLimitError.
    with anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        client.messages.create(model="auto", max_tokens=16, messages=MESSAGE["messages"])  # a new key: allowed
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="auto", max_tokens=16, messages=MESSAGE["messages"])
    assert gw.upstream.count == 2


def test_chat_is_limited_and_other_paths_never_are(limited):
    gw = limited({"enabled": True, "burst": 1})
    assert gw.statuses(2, "/chat") == [200, 429]
    assert gw.statuses(1) == [429]  # one bucket per client across the routed paths
    for path in ("/health", "/ready", "/models", "/metrics", "/v1/models"):
        assert [HTTP.request("GET", gw.url + path, retries=False).status for _ in range(5)] == [200] * 5, path
    count_tokens = [gw.post("/v1/messages/count_tokens", MESSAGE).status for _ in range(5)]
    assert count_tokens == [200] * 5


def test_a_token_budget_refuses_by_estimate_and_returns_failed_reservations(limited):
    gw = limited({"enabled": True, "requests_per_second": 1000, "burst": 1000, "tokens_per_minute": 100})
    padded = {**CHAT, "messages": [{"role": "user", "content": "x" * 200}]}  # ~65 tokens (body bytes / 4)
    too_large = {**CHAT, "messages": [{"role": "user", "content": "x" * 500}]}

    refused = gw.post("/v1/chat/completions", too_large)
    assert refused.status == 413
    validate("ErrorResponse", refused.json())
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert "Retry-After" not in refused.headers

    # A request that fails (here: no messages) gives its reservation back.
    assert gw.post("/v1/chat/completions", {**padded, "messages": []}).status == 400
    assert gw.post("/v1/chat/completions", padded).status == 200
    refused = gw.post("/v1/chat/completions", padded)
    assert refused.status == 429
    assert "token budget" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    gw.clock.advance(60)
    assert gw.post("/v1/chat/completions", padded).status == 200
    assert gw.upstream.count == 2


def test_off_by_default_and_no_middleware_registered(limited):
    gw = limited()
    assert len(gw.app.middlewares) == 3  # observe_middleware, errors_middleware and body_middleware only
    assert gw.statuses(30) == [200] * 30
    off = limited({"enabled": False, "burst": 1, "overrides": [{"key_env": "UNSET_KEY"}]})
    assert len(off.app.middlewares) == 3
    assert off.statuses(5) == [200] * 5


def problems(rate_limit: dict[str, Any], env: dict[str, str]) -> list[str]:
    data = {"models": {"fast": [{"name": "m", "base_url": "http://127.0.0.1:1/v1"}]}, "rate_limit": rate_limit}
    with pytest.raises(ConfigError) as info:
        parse_config(data, env)
    return [str(p) for p in info.value.problems]


def test_config_problems_name_the_key():
    assert problems({"requests_per_second": 0, "burst": 0, "colour": "red"}, {}) == [
        "rate_limit.requests_per_second: must be > 0",
        "rate_limit.burst: must be >= 1",
        "rate_limit.colour: unknown key",
    ]
    overrides = [{"key_env": "A_KEY"}, {"key_env": "B_KEY"}, {"key_env": "C_KEY"}, {"key_env": "D_KEY"}]
    assert problems({"enabled": True, "overrides": overrides}, {"B_KEY": "", "C_KEY": "k", "D_KEY": "k"}) == [
        "rate_limit.overrides[0].key_env: environment variable A_KEY is not set",
        "rate_limit.overrides[1].key_env: environment variable B_KEY is empty",
        "rate_limit.overrides[3].key_env: D_KEY holds the same API key as rate_limit.overrides[2] (C_KEY)",
    ]


def test_a_token_budget_is_settled_with_the_usage_the_upstream_reports(limited):
    gw = limited({"enabled": True, "requests_per_second": 1000, "burst": 1000, "tokens_per_minute": 150})
    gw.upstream.behaviour.reply_text = " ".join(["word"] * 140)  # ~140 completion tokens for a tiny prompt
    first = gw.post("/v1/chat/completions", CHAT)
    assert first.status == 200
    used = first.json()["usage"]["total_tokens"]
    assert used > 140  # far above the estimate the request was admitted with (body bytes / 4, about 20)
    # Charged by the estimate alone, a second small request would fit (20 + 20 <= 150); charged
    # by what the upstream reported, the budget is spent.
    refused = gw.post("/v1/chat/completions", CHAT)
    assert refused.status == 429
    assert "token budget" in refused.json()["error"]["message"]
    gw.clock.advance(60)
    gw.upstream.behaviour.reply_text = "ok"
    assert gw.post("/v1/chat/completions", CHAT).status == 200
    assert gw.upstream.count == 2

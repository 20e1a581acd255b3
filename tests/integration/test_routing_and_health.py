"""LLM and hybrid routing against a router-tier fixture, active health probes,
and client disconnects cancelling upstream work."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
import urllib3
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode

HTTP = urllib3.PoolManager()
CASUAL = [{"role": "user", "content": "hi there"}]
UNMATCHED = [{"role": "user", "content": "What is the history of tea?"}]  # a short question: no rule fires


@pytest.fixture
def client(sdk_clients):
    """`client(base_url)`: the openai SDK against the gateway at `base_url`."""
    return sdk_clients.openai


def _route(client, gw, messages):
    raw = client(gw.base_url).chat.completions.with_raw_response.create(model="auto", messages=messages)
    return raw.headers["X-Octoroute-Tier"], raw.headers["X-Octoroute-Strategy"], raw.headers["X-Octoroute-Reason"]


def test_llm_strategy_follows_the_router_models_answer(upstreams, gateway, client):
    judge, _fast, deep = upstreams("judge"), upstreams("fast"), upstreams("deep")
    judge.behaviour.reply_text = "DEEP"
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(judge, "judge", id="judge")], "deep": [endpoint(deep, "d", id="deep-1")]},
            routing={"strategy": "llm", "router_tier": "fast"},
        )
    )
    assert _route(client, gw, CASUAL) == ("deep", "llm", "llm_classified")
    judged = judge.requests[-1].body
    assert judged["model"] == "judge"
    assert judged["stream"] is False
    assert "hi there" in orjson.dumps(judged["messages"]).decode()
    assert deep.count == 1


def test_llm_garbage_falls_back_to_rules_and_says_so(upstreams, gateway, client):
    judge, deep = upstreams("judge"), upstreams("deep")
    judge.behaviour.reply_text = "I would rather talk about cheese"
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(judge, "judge")], "deep": [endpoint(deep, "d")]},
            routing={"strategy": "llm", "router_tier": "fast"},
        )
    )
    tier, strategy, reason = _route(client, gw, CASUAL)
    assert (tier, strategy, reason) == ("fast", "llm", "llm_failed_fallback_rule")


def test_llm_router_down_retries_then_falls_back(upstreams, gateway, client):
    j1, j2, j3, balanced = upstreams("j1"), upstreams("j2"), upstreams("j3"), upstreams("balanced")
    for j in (j1, j2, j3):
        j.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(j, "judge") for j in (j1, j2, j3)], "balanced": [endpoint(balanced, "b")]},
            routing={"strategy": "llm", "router_tier": "fast", "llm_retries": 2},
            retry={"max_attempts": 1},
        )
    )
    tier, _, reason = _route(client, gw, UNMATCHED)
    assert reason == "llm_failed_fallback_default"
    assert tier == "balanced"
    assert (j1.count, j2.count, j3.count) == (1, 1, 1)


def test_llm_router_timeout_falls_back(upstreams, gateway, client):
    judge, balanced = upstreams("judge"), upstreams("balanced")
    judge.behaviour.mode = Mode.SLOW
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(judge, "judge")], "balanced": [endpoint(balanced, "b")]},
            routing={"strategy": "llm", "router_tier": "fast", "llm_timeout_seconds": 0.2, "llm_retries": 0},
        )
    )
    tier, _, reason = _route(client, gw, UNMATCHED)
    assert (tier, reason) == ("balanced", "llm_failed_fallback_default")


def test_hybrid_asks_the_llm_only_when_no_rule_matches(upstreams, gateway, client):
    judge, deep = upstreams("judge"), upstreams("deep")
    judge.behaviour.reply_text = "Answer: DEEP"
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(judge, "judge")], "deep": [endpoint(deep, "d")]},
            routing={"strategy": "hybrid", "router_tier": "fast"},
        )
    )
    assert _route(client, gw, CASUAL) == ("fast", "hybrid", "rule_casual_short")
    assert (judge.count, deep.count) == (1, 0)  # served the chat itself; nobody was asked to classify
    assert _route(client, gw, UNMATCHED) == ("deep", "hybrid", "llm_classified")
    assert (judge.count, deep.count) == (2, 1)


def test_active_probes_mark_endpoints_down_and_up(upstreams, gateway, loop_thread):
    sim = upstreams("probed")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="probed")]}, health={"failure_threshold": 2}))
    sim.behaviour.mode = Mode.ERROR_500
    for _ in range(2):
        loop_thread.run(gw.gateway.probe_all())
    row = orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"][0]
    assert (row["healthy"], row["consecutive_failures"]) == (False, 2)
    assert row["last_check_age_seconds"] is not None
    assert HTTP.request("GET", f"{gw.url}/ready").status == 503
    sim.behaviour.mode = Mode.NORMAL
    loop_thread.run(gw.gateway.probe_all())
    row = orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"][0]
    assert (row["healthy"], row["consecutive_failures"]) == (True, 0)
    assert HTTP.request("GET", f"{gw.url}/ready").status == 200
    assert sim.count == 0  # probes use GET /v1/models, not chat


def _send_and_hang_up(port: int, body: bytes, loop_thread, sim) -> None:
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        loop_thread.run(asyncio.wait_for(sim.wait_started(), 10))
    loop_thread.run(asyncio.wait_for(sim.wait_cancelled(), 10))


def test_client_disconnect_cancels_a_waiting_upstream_request(upstreams, gateway, loop_thread):
    sim = upstreams("slow")
    sim.behaviour.mode = Mode.SLOW
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    _send_and_hang_up(gw.port, orjson.dumps({"model": "fast", "messages": CASUAL}), loop_thread, sim)
    assert sim.cancelled == 1


def test_client_disconnect_cancels_a_streaming_upstream(upstreams, gateway, loop_thread):
    sim = upstreams("streamer")
    sim.behaviour.token_delay = 5.0
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    body = orjson.dumps({"model": "fast", "messages": CASUAL, "stream": True})
    _send_and_hang_up(gw.port, body, loop_thread, sim)
    assert sim.cancelled == 1


def test_the_background_health_loop_probes_on_its_interval(upstreams, gateway, loop_thread):
    sim = upstreams("probed")
    sim.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(sim, "m", id="probed")]},
            health={"active": True, "failure_threshold": 2, "check_interval_seconds": 0.05},
        )
    )
    loop_thread.run(asyncio.wait_for(sim.wait_requests("/v1/models", 3), 10))
    row = orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"][0]
    assert row["healthy"] is False
    assert row["consecutive_failures"] >= 2
    assert sim.count == 0

"""Deeply nested client JSON is a clear 400 in the route's error shape, never a 500."""

from __future__ import annotations

import logging

import orjson
import pytest
import urllib3
from tests.support import endpoint, fleet_config

HTTP = urllib3.PoolManager()


def nested(depth: int) -> bytes:
    """A JSON array nested `depth` levels deep."""
    return b"[" * depth + b"]" * depth


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    response = HTTP.request("POST", url, body=body, headers={"content-type": "application/json", **(headers or {})})
    return response.status, orjson.loads(response.data)


@pytest.mark.parametrize("depth", [70, 300, 1000, 5000])
def test_deep_json_is_a_400_on_both_apis(upstreams, gateway, caplog, depth: int) -> None:
    sim = upstreams("fast")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    deep = nested(depth)
    chat = b'{"model":"fast","messages":[{"role":"user","content":"hi"}],"metadata":' + deep + b"}"
    tool = (
        b'{"model":"fast","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
        b'"tools":[{"name":"t","input_schema":{"type":"object","properties":{"a":' + deep + b"}}}]}"
    )
    with caplog.at_level(logging.INFO):
        status, body = post(f"{gw.base_url}/chat/completions", chat)
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "deeper than 64 levels" in body["error"]["message"]  # type: ignore[index]
        status, body = post(f"{gw.url}/v1/messages", tool, {"anthropic-version": "2023-06-01"})
        assert status == 400
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "deeper than 64 levels" in body["error"]["message"]  # type: ignore[index]
    assert sim.count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_nesting_within_the_limit_is_served(upstreams, gateway) -> None:
    sim = upstreams("fast")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}, limits={"max_json_depth": 100}))
    chat = b'{"model":"fast","messages":[{"role":"user","content":"hi"}],"metadata":' + nested(90) + b"}"
    status, _ = post(f"{gw.base_url}/chat/completions", chat)
    assert status == 200
    assert sim.count == 1

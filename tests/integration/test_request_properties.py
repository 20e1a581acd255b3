"""Property: any request body, on either API, over real HTTP to a gateway with
a fixture upstream, gets a 2xx or a 4xx in the route's error shape, never a
5xx and never a hang, and never a traceback in the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest
import urllib3
from hypothesis import example, given
from hypothesis import strategies as st
from tests.bodies import BOUNDED, anything, chat_bodies, messages_bodies, native_bodies
from tests.support import endpoint, fleet_config

HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=30), retries=False)  # a hang fails the test


@pytest.fixture
def gw(upstreams, gateway):
    return gateway(fleet_config({"fast": [endpoint(upstreams("fast"), "m")]}))


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    response = HTTP.request(
        "POST", url, body=body, headers={"content-type": "application/json", "anthropic-version": "2023-06-01"}
    )
    return response.status, response.headers.get("content-type", ""), response.data


def check_openai(status: int, content_type: str, data: bytes) -> None:
    assert status < 500, data
    if status >= 400:
        error = orjson.loads(data)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str)
        assert error["message"]
    elif content_type.startswith("application/json"):
        assert orjson.loads(data)["object"] == "chat.completion"
    else:
        assert content_type.startswith("text/event-stream")
        assert data.rstrip().endswith(b"data: [DONE]")


def check_anthropic(status: int, content_type: str, data: bytes) -> None:
    assert status < 500, data
    if status >= 400:
        body = orjson.loads(data)
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
    elif content_type.startswith("application/json"):
        answer = orjson.loads(data)
        assert answer.get("type") == "message" or set(answer) == {"input_tokens"}
    else:
        assert content_type.startswith("text/event-stream")
        assert b"event: message_stop" in data


def encode(body: Any) -> bytes:
    """Standard JSON, integers beyond 64 bits included (orjson would refuse to write them)."""
    return json.dumps(body, ensure_ascii=False).encode()


@BOUNDED
@given(body=chat_bodies)
@example(body={"model": "fast", "messages": [{"role": {}, "content": ""}]})  # found by schemathesis: was a 500
@example(body={"model": "fast", "messages": [{"role": ["user"], "content": "hi"}]})
def test_any_chat_body_gets_a_2xx_or_an_openai_4xx(gw, caplog, body: dict[str, Any]) -> None:
    with caplog.at_level(logging.WARNING):
        check_openai(*post(f"{gw.base_url}/chat/completions", encode(body)))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@BOUNDED
@given(body=messages_bodies, path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
def test_any_messages_body_gets_a_2xx_or_an_anthropic_4xx(gw, caplog, body: dict[str, Any], path: str) -> None:
    with caplog.at_level(logging.WARNING):
        check_anthropic(*post(f"{gw.url}{path}", encode(body)))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@BOUNDED
@given(body=anything, raw=st.binary(max_size=64), which=st.sampled_from(["json", "raw"]))
@example(body={"prompt": "hi", "temperature": [1]}, raw=b"", which="json")
def test_any_json_value_or_bytes_on_every_post_route(gw, body: Any, raw: bytes, which: str) -> None:
    payload = encode(body) if which == "json" else raw
    check_openai(*post(f"{gw.base_url}/chat/completions", payload))
    check_anthropic(*post(f"{gw.url}/v1/messages", payload))
    check_anthropic(*post(f"{gw.url}/v1/messages/count_tokens", payload))
    status, _, data = post(f"{gw.url}/chat", payload)
    assert status < 500, data
    if status >= 400:  # the 1.0 endpoint's errors are OpenAI error objects too
        assert set(orjson.loads(data)["error"]) == {"message", "type", "param", "code"}


@BOUNDED
@given(body=native_bodies)
def test_any_native_chat_body_gets_a_2xx_or_an_openai_4xx(gw, caplog, body: dict[str, Any]) -> None:
    with caplog.at_level(logging.WARNING):
        status, _, data = post(f"{gw.url}/chat", encode(body))
    assert status < 500, data
    answer = orjson.loads(data)
    if status >= 400:
        assert set(answer["error"]) == {"message", "type", "param", "code"}
    else:
        assert isinstance(answer["response"], str)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

"""The OpenAI-compatible API end to end: the official SDK with strict response
validation, against fixture upstreams that are real HTTP servers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode
from octoroute.server.state import LIVE

HTTP = urllib3.PoolManager()


_CLIENTS: list[openai.OpenAI] = []


def sdk(base_url: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0, _strict_response_validation=True)
    _CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def raw_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return HTTP.request("POST", url, body=body, headers={"Content-Type": "application/json", **(headers or {})})


@pytest.fixture
def three_tiers(upstreams, gateway):
    fast, balanced, deep = upstreams("fast"), upstreams("balanced"), upstreams("deep")
    gw = gateway(
        fleet_config(
            {
                "fast": [endpoint(fast, "fast-model", id="fast-1")],
                "balanced": [endpoint(balanced, "balanced-model", id="balanced-1")],
                "deep": [endpoint(deep, "deep-model", id="deep-1")],
            }
        )
    )
    return gw, fast, balanced, deep


HELLO = [{"role": "user", "content": "hi there"}]


def test_non_streaming_response_is_spec_valid_and_carries_decision_headers(three_tiers):
    gw, fast, _, _ = three_tiers
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))
    assert raw.headers["X-Octoroute-Tier"] == "fast"
    assert raw.headers["X-Octoroute-Endpoint"] == "fast-1"
    assert raw.headers["X-Octoroute-Strategy"] == "rule"
    assert raw.headers["X-Octoroute-Reason"] == "rule_casual_short"
    assert raw.headers["X-Request-Id"]
    assert fast.count == 1
    assert fast.requests[0].body["model"] == "fast-model"


def test_streaming_with_usage_is_spec_valid(three_tiers):
    gw, _, _, _ = three_tiers
    stream = sdk(gw.base_url).chat.completions.create(
        model="auto", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))


def test_raw_stream_chunks_validate_and_end_with_done(three_tiers):
    gw, _, _, _ = three_tiers
    body = orjson.dumps({"model": "auto", "messages": HELLO, "stream": True})
    response = raw_post(f"{gw.base_url}/chat/completions", body)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in response.data.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]"
    for event in events[:-1]:
        validate("CreateChatCompletionStreamResponse", orjson.loads(event.removeprefix(b"data: ")))


def test_client_json_is_forwarded_unchanged_except_model_and_hints(three_tiers):
    gw, _, _, deep = three_tiers
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
    sdk(gw.base_url).chat.completions.create(
        model="auto",
        messages=HELLO,
        tools=tools,
        response_format={"type": "text"},
        extra_body={"importance": "high", "task_type": "question_answer", "vendor_knob": {"x": [1, 2]}},
    )
    sent = deep.requests[-1].body
    assert sent["model"] == "deep-model"
    assert sent["tools"] == tools
    assert sent["response_format"] == {"type": "text"}
    assert sent["vendor_knob"] == {"x": [1, 2]}
    assert "importance" not in sent
    assert "task_type" not in sent
    assert sent["messages"] == HELLO


def test_header_hints_route_like_body_hints(three_tiers):
    gw, _, _, deep = three_tiers
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, extra_headers={"X-Octoroute-Importance": "high", "X-Octoroute-Task-Type": "code"}
    )
    assert raw.headers["X-Octoroute-Tier"] == "deep"
    assert raw.headers["X-Octoroute-Reason"] == "rule_high_importance"
    assert deep.count == 1


def test_code_prompt_routes_to_balanced(three_tiers):
    gw, _, balanced, _ = three_tiers
    prompt = "Fix this:\n```python\ndef add(a, b):\n    return a - b\n```"
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    assert raw.headers["X-Octoroute-Tier"] == "balanced"
    assert raw.headers["X-Octoroute-Reason"] == "rule_code"
    assert balanced.count == 1


def test_group_and_endpoint_names_bypass_routing(three_tiers):
    gw, fast, balanced, deep = three_tiers
    client = sdk(gw.base_url)
    raw = client.chat.completions.with_raw_response.create(model="deep", messages=HELLO)
    assert (raw.headers["X-Octoroute-Strategy"], raw.headers["X-Octoroute-Reason"]) == ("direct", "explicit_group")
    raw = client.chat.completions.with_raw_response.create(model="balanced-1", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "balanced-1"
    assert raw.headers["X-Octoroute-Reason"] == "explicit_endpoint"
    assert (fast.count, balanced.count, deep.count) == (0, 1, 1)


def test_models_list_is_spec_valid(three_tiers):
    gw, _, _, _ = three_tiers
    response = HTTP.request("GET", f"{gw.base_url}/models")
    validate("ListModelsResponse", orjson.loads(response.data))
    ids = [m.id for m in sdk(gw.base_url).models.list()]
    assert ids == ["auto", "fast", "balanced", "deep", "fast-1", "balanced-1", "deep-1"]


# -- errors ---------------------------------------------------------------


def _error(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    body = orjson.loads(response.data)
    validate("ErrorResponse", body)
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "auto", "messages": [', None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"model": "auto"}', "messages"),
        (b'{"model": "auto", "messages": []}', "messages"),
        (b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}', "stream"),
        (b'{"model": "auto", "importance": "urgent", "messages": [{"role": "user", "content": "x"}]}', "importance"),
    ],
)
def test_bad_input_is_a_400_in_openai_shape(three_tiers, body, param):
    gw, fast, balanced, deep = three_tiers
    response = raw_post(f"{gw.base_url}/chat/completions", body)
    assert response.status == 400
    error = _error(response)
    assert error["param"] == param
    assert error["message"]
    assert fast.count + balanced.count + deep.count == 0


def test_unknown_model_is_a_404(three_tiers):
    gw, _, _, _ = three_tiers
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gw.base_url).chat.completions.create(model="gpt-17", messages=HELLO)
    assert info.value.status_code == 404
    validate("ErrorResponse", info.value.response.json())
    assert "gpt-17" in info.value.response.json()["error"]["message"]


def test_body_over_the_limit_is_a_413(upstreams, gateway):
    sim = upstreams("fast")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}, server={"max_body_bytes": 4096}))
    body = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * 10_000}]})
    response = raw_post(f"{gw.base_url}/chat/completions", body)
    assert response.status == 413
    assert _error(response)["code"] == "payload_too_large"
    assert sim.count == 0


def test_unknown_route_and_wrong_method_are_openai_errors(three_tiers):
    gw, _, _, _ = three_tiers
    assert HTTP.request("GET", f"{gw.url}/v2/nothing").status == 404
    response = HTTP.request("GET", f"{gw.base_url}/chat/completions")
    assert response.status == 405
    _error(response)


def test_unknown_route_hint_names_every_api_and_each_is_served(three_tiers):
    """The 404 for an unknown path lists the APIs a client may have meant, and every
    route it names exists: none of them answers with that same 404."""
    gw, _, _, _ = three_tiers
    response = HTTP.request("POST", f"{gw.url}/v1/respones", body=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 404
    error = _error(response)
    assert error["code"] == "not_found"
    hint = error["message"]
    for route in ("/v1/responses", "/v1/embeddings", "/v1/completions", "/api/chat", "/api/generate", "/api/tags"):
        assert route in hint
    named = re.findall(r"(GET|POST)? ?(/(?:v1|api)/[a-z_/]+[a-z])", hint)
    assert len(named) >= 12
    for method, route in named:
        answer = HTTP.request(
            method or "POST", f"{gw.url}{route}", body=b"{}", headers={"Content-Type": "application/json"}
        )
        assert answer.status != 404 or hint.encode() not in answer.data, route


# -- retries, fallback, health ---------------------------------------------


def test_a_500_is_retried_on_another_endpoint(upstreams, gateway):
    bad, good = upstreams("bad"), upstreams("good")
    bad.behaviour.mode = Mode.ERROR_500
    gw = gateway(fleet_config({"fast": [endpoint(bad, "m", id="bad", priority=2), endpoint(good, "m", id="good")]}))
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "good"
    assert raw.headers["X-Octoroute-Attempts"] == "2"
    assert (bad.count, good.count) == (1, 1)


def test_429_is_retried_but_400_is_passed_through(upstreams, gateway):
    limited, picky, spare = upstreams("limited"), upstreams("picky"), upstreams("spare")
    limited.behaviour.mode = Mode.ERROR_429
    gw = gateway(
        fleet_config(
            {
                "fast": [endpoint(limited, "m", id="limited", priority=2), endpoint(spare, "m", id="spare")],
                "deep": [endpoint(picky, "m", id="picky")],
            }
        )
    )
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "spare"
    picky.behaviour.mode = Mode.REJECT_400  # (a context-overflow 400 is escalated: test_context_windows)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw.base_url).chat.completions.create(model="deep", messages=HELLO)
    validate("ErrorResponse", info.value.response.json())
    assert picky.count == 1
    assert info.value.response.headers["X-Octoroute-Endpoint"] == "picky"
    assert info.value.response.headers["X-Octoroute-Attempts"] == "1"


def test_exhausted_group_falls_back_to_the_next_tier(upstreams, gateway):
    f1, f2, balanced = upstreams("f1"), upstreams("f2"), upstreams("balanced")
    f1.behaviour.mode = f2.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {
                "fast": [endpoint(f1, "m", id="f1"), endpoint(f2, "m", id="f2")],
                "balanced": [endpoint(balanced, "b", id="b1")],
            }
        )
    )
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["X-Octoroute-Tier"] == "balanced"
    assert raw.headers["X-Octoroute-Endpoint"] == "b1"
    assert "fallback from fast to balanced" in raw.headers["X-Octoroute-Reason"]
    assert (f1.count, f2.count, balanced.count) == (1, 1, 1)


def test_explicit_fallback_config_is_followed(upstreams, gateway):
    coder, deep = upstreams("coder"), upstreams("deep")
    coder.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"coder": [endpoint(coder, "c")], "deep": [endpoint(deep, "d", id="d1")]}, fallback={"coder": "deep"}
        )
    )
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="coder", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "d1"


def test_all_endpoints_failing_is_a_502(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.behaviour.mode = b.behaviour.mode = Mode.ERROR_500
    gw = gateway(fleet_config({"fast": [endpoint(a, "m"), endpoint(b, "m")]}))
    response = raw_post(f"{gw.base_url}/chat/completions", orjson.dumps({"model": "fast", "messages": HELLO}))
    assert response.status == 502
    error = _error(response)
    assert "fast" in error["message"]
    assert response.headers["X-Octoroute-Tier"] == "fast"
    assert response.headers["X-Octoroute-Attempts"] == "2"
    assert "X-Octoroute-Endpoint" not in response.headers


def test_refused_connection_fails_over(upstreams, gateway, loop_thread):
    dead, alive = upstreams("dead"), upstreams("alive")
    dead_entry = endpoint(dead, "m", id="dead", priority=5)
    loop_thread.run(dead.stop())
    gw = gateway(fleet_config({"fast": [dead_entry, endpoint(alive, "m", id="alive")]}))
    raw = sdk(gw.base_url).chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "alive"
    status = {e["id"]: e for e in orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"]}
    assert status["dead"]["consecutive_failures"] == 1
    assert "connect" in status["dead"]["last_error"]


def test_slow_upstream_times_out_with_504(upstreams, gateway):
    slow = upstreams("slow")
    slow.behaviour.mode = Mode.SLOW
    slow.behaviour.slow_seconds = 30
    gw = gateway(fleet_config({"fast": [endpoint(slow, "m", timeouts={"first_byte": 0.2})]}))
    response = raw_post(f"{gw.base_url}/chat/completions", orjson.dumps({"model": "fast", "messages": HELLO}))
    assert response.status == 504
    assert "first_byte timeout" in _error(response)["message"]


def test_unhealthy_endpoints_are_skipped_then_503(upstreams, gateway):
    sim = upstreams("x")
    sim.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(sim, "m", id="x")]},
            health={"failure_threshold": 2, "fail_open": False, "check_interval_seconds": 7.5},
            retry={"max_attempts": 1},
        )
    )
    url = f"{gw.base_url}/chat/completions"
    body = orjson.dumps({"model": "fast", "messages": HELLO})
    assert [raw_post(url, body).status for _ in range(2)] == [502, 502]
    response = raw_post(url, body)
    assert response.status == 503
    assert _error(response)["code"] == "no_healthy_endpoint"
    assert response.headers["Retry-After"] == "8"  # the check interval, rounded up
    assert sim.count == 2
    assert HTTP.request("GET", f"{gw.url}/ready").status == 503


def test_priority_wins_while_healthy(upstreams, gateway):
    primary, backup = upstreams("primary"), upstreams("backup")
    gw = gateway(fleet_config({"fast": [endpoint(backup, "m", priority=1), endpoint(primary, "m", priority=2)]}))
    client = sdk(gw.base_url)
    for _ in range(10):
        client.chat.completions.create(model="fast", messages=HELLO)
    assert (primary.count, backup.count) == (10, 0)


# -- streaming commit point ------------------------------------------------


def test_failure_before_first_byte_is_retried_for_streams(upstreams, gateway):
    bad, good = upstreams("bad"), upstreams("good")
    bad.behaviour.mode = Mode.ERROR_500
    gw = gateway(fleet_config({"fast": [endpoint(bad, "m", priority=2), endpoint(good, "m", id="good")]}))
    with sdk(gw.base_url).chat.completions.with_streaming_response.create(
        model="fast", messages=HELLO, stream=True
    ) as response:
        assert response.headers["X-Octoroute-Endpoint"] == "good"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text


def test_drop_after_first_byte_ends_with_one_error_event(upstreams, gateway):
    sim = upstreams("dropper")
    sim.behaviour.mode = Mode.DROP_MID_STREAM
    sim.behaviour.drop_after_chunks = 3
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    response = raw_post(
        f"{gw.base_url}/chat/completions", orjson.dumps({"model": "fast", "messages": HELLO, "stream": True})
    )
    assert response.status == 200
    events = [e.removeprefix(b"data: ") for e in response.data.split(b"\n\n") if e.strip()]
    assert b"[DONE]" not in events
    last = orjson.loads(events[-1])
    assert set(last) == {"error"}
    validate("ErrorResponse", last)
    for event in events[:-1]:
        chunk = orjson.loads(event)
        assert all(choice.get("finish_reason") is None for choice in chunk["choices"])
    assert sim.count == 1
    row = orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"][0]
    assert row["consecutive_failures"] == 1  # a broken stream counts against the endpoint


def test_fifty_concurrent_streams_arrive_complete_and_unmixed(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(fleet_config({"fast": [endpoint(a, "m"), endpoint(b, "m")]}))

    async def one(client: openai.AsyncOpenAI, n: int) -> tuple[int, str, list[str | None]]:
        stream = await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": f"token{n} please"}], stream=True
        )
        text, finishes = "", []
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finishes.append(choice.finish_reason)
        return n, text, finishes

    async def run_all() -> list[tuple[int, str, list[str | None]]]:
        async with openai.AsyncOpenAI(
            base_url=gw.base_url, api_key="k", max_retries=0, _strict_response_validation=True
        ) as client:
            return await asyncio.gather(*(one(client, n) for n in range(50)))

    results = asyncio.run(run_all())
    assert a.count + b.count == 50
    for n, text, finishes in results:
        assert f"token{n}" in text
        others = [m for m in range(50) if m != n and f"token{m} " in text]
        assert not others
        assert finishes[-1] == "stop"


# -- native and operational endpoints --------------------------------------


def test_native_chat_api(three_tiers):
    gw, _, _, deep = three_tiers
    response = raw_post(
        f"{gw.url}/chat", orjson.dumps({"prompt": "hello", "importance": "high", "task_type": "question_answer"})
    )
    assert response.status == 200
    body = orjson.loads(response.data)
    assert body["model_used"] == "deep_120b"  # octoroute 1.0's name of the deep tier
    assert body["upstream_model"] == "deep-model"
    assert body["routing_strategy"] == "rule"
    direct = sdk(deep.base_url).chat.completions.create(
        model="deep-model", messages=[{"role": "user", "content": "hello"}]
    )
    assert direct.usage is not None
    assert body["token_count"] == direct.usage.total_tokens
    assert body["response"]
    assert body["processing_time_ms"] > 0
    bad = raw_post(f"{gw.url}/chat", b'{"prompt": ""}')
    assert bad.status == 400


def test_health_ready_and_models_status(three_tiers):
    gw, _, _, _ = three_tiers
    assert HTTP.request("GET", f"{gw.url}/health").data == b"OK"
    health = HTTP.request("GET", f"{gw.url}/health", headers={"Accept": "application/json"})
    assert orjson.loads(health.data) == {
        "status": "ok",
        "config": {"generation": 1, "hash": gw.app[LIVE].digest, "needs_restart": []},
    }
    ready = HTTP.request("GET", f"{gw.url}/ready")
    assert ready.status == 200
    sdk(gw.base_url).chat.completions.create(model="fast", messages=HELLO)
    rows = orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"]
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"fast-1", "balanced-1", "deep-1"}
    assert by_id["fast-1"]["healthy"] is True
    assert by_id["fast-1"]["last_latency_ms"] is not None
    assert by_id["deep-1"]["last_check_age_seconds"] is None


def test_a_stream_request_answered_with_one_json_body_is_relayed_whole(upstreams, gateway):
    sim = upstreams("unstreaming")
    sim.behaviour.ignore_stream = True
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    body = orjson.dumps({"model": "fast", "messages": HELLO, "stream": True})
    response = raw_post(f"{gw.base_url}/chat/completions", body)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    validate("CreateChatCompletionResponse", orjson.loads(response.data))

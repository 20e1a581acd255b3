"""The Anthropic Messages API in front of OpenAI-compatible fixture upstreams,
driven by the official `anthropic` SDK with strict response validation."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import orjson
import pytest
import urllib3
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode

HTTP = urllib3.PoolManager()
HELLO: list[Any] = [{"role": "user", "content": "hi there"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
EVENT_ORDER = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta"]


@pytest.fixture
def client(sdk_clients):
    """`client(url)`: the anthropic SDK against the gateway at `url`."""
    return sdk_clients.anthropic


@pytest.fixture
def fleet(upstreams, gateway):
    fast, deep = upstreams("fast"), upstreams("deep")
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(fast, "fast-model", id="fast-1")], "deep": [endpoint(deep, "deep-model", id="deep-1")]},
            aliases={"claude-sonnet-*": "deep", "claude-haiku-*": "fast"},
        )
    )
    return gw, fast, deep


def test_non_streaming_message(fleet, client):
    gw, fast, _ = fleet
    raw = client(gw.url).messages.with_raw_response.create(
        model="auto", max_tokens=64, messages=HELLO, system=[{"type": "text", "text": "Be brief."}]
    )
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "auto"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "hi there" in message.content[0].text
    assert message.usage.output_tokens > 0
    assert raw.headers["X-Octoroute-Tier"] == "fast"
    sent = fast.requests[-1].body
    assert sent["model"] == "fast-model"
    assert sent["max_tokens"] == 64
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_aliases_map_hard_coded_claude_names_to_groups(fleet, client):
    gw, fast, deep = fleet
    raw = client(gw.url).messages.with_raw_response.create(model="claude-sonnet-next", max_tokens=16, messages=HELLO)
    assert raw.headers["X-Octoroute-Tier"] == "deep"
    assert raw.parse().model == "claude-sonnet-next"
    client(gw.url).messages.create(model="claude-haiku-next", max_tokens=16, messages=HELLO)
    assert (fast.count, deep.count) == (1, 1)


def test_raw_stream_events_come_in_the_order_the_sdk_expects(fleet, client):
    gw, _, _ = fleet
    with client(gw.url).messages.with_streaming_response.create(
        model="fast", max_tokens=64, messages=HELLO, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [orjson.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert len(names) == len(datas)
    assert [d["type"] for d in datas] == names
    meaningful = [n for n in names if n != "ping"]
    assert meaningful[0] == "message_start"
    assert meaningful[-2:] == ["message_delta", "message_stop"]
    assert [n for n in dict.fromkeys(meaningful)] == [*EVENT_ORDER, "message_stop"]
    starts = [d["index"] for d in datas if d["type"] == "content_block_start"]
    assert starts == list(range(len(starts)))


def test_messages_stream_accumulates_the_final_message(fleet, client):
    gw, _, _ = fleet
    with client(gw.url).messages.stream(model="fast", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"


def test_tool_use_round_trip(fleet, client):
    gw, fast, _ = fleet
    c = client(gw.url)
    first = c.messages.create(model="fast", max_tokens=64, messages=HELLO, tools=[WEATHER], tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather"
    assert isinstance(use.input, dict)
    second = c.messages.create(
        model="fast",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            *HELLO,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    sent = fast.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == use.id
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


def test_streamed_tool_use_arrives_as_a_tool_use_block(fleet, client):
    gw, _, _ = fleet
    with client(gw.url).messages.stream(
        model="fast", max_tokens=64, messages=HELLO, tools=[WEATHER], tool_choice={"type": "any"}
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content if b.type == "tool_use"] == ["tool_use"]


def test_count_tokens(fleet, client):
    gw, fast, _ = fleet
    result = client(gw.url).messages.count_tokens(model="auto", messages=HELLO, tools=[WEATHER])
    assert result.input_tokens > 0
    assert fast.count == 0


def test_thinking_is_mapped_and_cache_control_dropped_and_named(fleet, client):
    gw, fast, _ = fleet
    raw = client(gw.url).messages.with_raw_response.create(
        model="fast",
        max_tokens=64,
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "u-1"},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
    )
    assert set(raw.headers["X-Octoroute-Degraded"].split(",")) == {"cache_control"}
    sent = fast.requests[-1].body
    assert "thinking" not in sent
    assert sent["reasoning_effort"] == "low"  # a 1,024-token budget, by the default thinking_params
    assert sent["user"] == "u-1"


def _anthropic_error(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    body = orjson.loads(response.data)
    anthropic.types.ErrorResponse.model_validate(body)
    assert body["type"] == "error"
    return body["error"]


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        (b'{"model": "auto", "messages": [', 400, "invalid_request_error"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request_error"),
        (b'{"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', 404, "not_found_error"),
        (
            b'{"model": "auto", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}',
            400,
            "invalid_request_error",
        ),
    ],
)
def test_errors_use_the_anthropic_shape(fleet, body, status, error_type):
    gw, fast, deep = fleet
    response = HTTP.request("POST", f"{gw.url}/v1/messages", body=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    error = _anthropic_error(response)
    assert error["type"] == error_type
    assert error["message"]
    assert fast.count + deep.count == 0


def test_upstream_failures_use_the_anthropic_shape(upstreams, gateway, client):
    sim = upstreams("broken")
    sim.behaviour.mode = Mode.ERROR_500
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    with pytest.raises(anthropic.InternalServerError) as info:
        client(gw.url).messages.create(model="fast", max_tokens=8, messages=HELLO)
    assert info.value.status_code == 502
    _anthropic_error_body = info.value.response.json()
    anthropic.types.ErrorResponse.model_validate(_anthropic_error_body)


def test_a_stream_broken_after_the_first_byte_ends_with_an_error_event(upstreams, gateway):
    sim = upstreams("dropper")
    sim.behaviour.mode = Mode.DROP_MID_STREAM
    sim.behaviour.drop_after_chunks = 3
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    body = orjson.dumps({"model": "fast", "max_tokens": 16, "messages": HELLO, "stream": True})
    response = HTTP.request("POST", f"{gw.url}/v1/messages", body=body, headers={"Content-Type": "application/json"})
    names = [line[7:] for line in response.data.decode().splitlines() if line.startswith("event: ")]
    assert names[-1] == "error"
    assert "message_stop" not in names


def test_anthropic_model_listing(fleet):
    gw, _, _ = fleet
    response = HTTP.request("GET", f"{gw.url}/v1/models?limit=1000", headers={"anthropic-version": "2023-06-01"})
    body = orjson.loads(response.data)
    assert body["data"][0] == {
        "type": "model",
        "id": "auto",
        "display_name": "auto",
        "created_at": body["data"][0]["created_at"],
    }
    assert body["has_more"] is False


def test_twenty_five_concurrent_streams(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(fleet_config({"fast": [endpoint(a, "m"), endpoint(b, "m")]}))

    async def one(c: anthropic.AsyncAnthropic, n: int) -> tuple[int, str]:
        async with c.messages.stream(
            model="fast", max_tokens=32, messages=[{"role": "user", "content": f"token{n} please"}]
        ) as stream:
            return n, "".join([t async for t in stream.text_stream])

    async def run_all() -> list[tuple[int, str]]:
        async with anthropic.AsyncAnthropic(
            base_url=gw.url, api_key="k", max_retries=0, _strict_response_validation=True
        ) as c:
            return await asyncio.gather(*(one(c, n) for n in range(25)))

    for n, text in asyncio.run(run_all()):
        assert f"token{n}" in text
    assert a.count + b.count == 25


def test_a_stream_request_answered_with_one_json_body_still_streams_its_content(upstreams, gateway, client):
    sim = upstreams("unstreaming")
    sim.behaviour.ignore_stream = True
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    with client(gw.url).messages.stream(model="fast", max_tokens=32, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert "hi there" in final.content[0].text
    assert final.stop_reason == "end_turn"


def test_routing_hints_in_the_body_are_used_and_not_reported_as_dropped(fleet, client):
    gw, _, deep = fleet
    raw = client(gw.url).messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=HELLO, extra_body={"importance": "high", "task_type": "question_answer"}
    )
    assert raw.headers["X-Octoroute-Tier"] == "deep"
    assert "X-Octoroute-Degraded" not in raw.headers
    assert "importance" not in deep.requests[-1].body


def _degradation_counts(gw) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "octoroute_degradations")
    return {s.labels["kind"]: s.value for s in family.samples if s.name == "octoroute_degradations_total"}


def test_dropped_fields_are_counted_in_a_metric(fleet, client):
    gw, _, _ = fleet
    before = _degradation_counts(gw)
    assert before["top_k"] == 0
    client(gw.url).messages.create(
        model="fast",
        max_tokens=16,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"top_k": 5},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
    )
    after = _degradation_counts(gw)
    assert after["top_k"] == 1
    assert after["cache_control"] == 1
    assert after["thinking"] == 0  # mapped to reasoning_effort, not dropped
    assert after["service_tier"] == 0


def test_dozens_of_tools_and_a_long_stream(upstreams, gateway, client):
    sim = upstreams("talkative")
    words = [f"w{i}" for i in range(3000)]
    sim.behaviour.reply_text = " ".join(words)
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    tools = [
        {
            "name": f"tool_{i}",
            "description": f"Tool number {i}",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "additionalProperties": False,
            },
        }
        for i in range(48)
    ]
    with client(gw.url).messages.stream(model="fast", max_tokens=8000, messages=HELLO, tools=tools) as stream:
        final = stream.get_final_message()
    assert final.content[0].text.split() == words
    assert len(sim.requests[-1].body["tools"]) == 48

"""Endpoints of kind `anthropic`: Anthropic clients pass through untouched but
for the model name; OpenAI clients are translated both ways; both kinds mix in
one group's fallback chain. The upstream is a fixture Anthropic-native server."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode

HELLO = [{"role": "user", "content": "hi there"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture
def native(upstreams, gateway):
    sim = upstreams("claude-like")
    gw = gateway(
        fleet_config(
            {"deep": [endpoint(sim, "native-model", id="native", kind="anthropic", api_key_env="NATIVE_KEY")]}
        ),
        env={"NATIVE_KEY": "sk-native"},
    )
    return gw, sim


@pytest.fixture
def clients(sdk_clients):
    return sdk_clients.anthropic, sdk_clients.openai


def test_anthropic_requests_pass_through_untouched_but_the_model(native, clients):
    gw, sim = native
    ant, _ = clients
    request = {
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
    }
    raw = ant(gw).messages.with_raw_response.create(
        model="deep", extra_headers={"anthropic-beta": "context-management-2025-06-27"}, **request
    )
    assert raw.parse().content[0].type == "text"
    assert raw.headers["X-Octoroute-Endpoint"] == "native"
    assert "X-Octoroute-Degraded" not in raw.headers
    sent = sim.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.body == {**request, "model": "native-model"}
    assert sent.headers["x-api-key"] == "sk-native"
    assert sent.headers["anthropic-version"]
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert "authorization" not in {k.lower() for k in sent.headers}
    metrics = urllib3.request("GET", f"{gw.url}/metrics").data.decode()
    assert 'octoroute_degradations_total{kind="thinking"} 0.0' in metrics  # nothing was dropped


def test_anthropic_streams_pass_through(native, clients):
    gw, _ = native
    ant, _ = clients
    with ant(gw).messages.stream(model="deep", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "hi there" in text
    assert final.stop_reason == "end_turn"


def test_openai_clients_reach_anthropic_native_endpoints(native, clients):
    gw, sim = native
    _, oai = clients
    raw = oai(gw).chat.completions.with_raw_response.create(
        model="deep", messages=HELLO, max_tokens=32, seed=7, response_format={"type": "text"}
    )
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))
    completion = raw.parse()
    assert "hi there" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert sim.requests[-1].body["max_tokens"] == 32
    assert raw.headers["X-Octoroute-Degraded"] == "unsupported_field"  # seed, response_format
    assert "seed" not in sim.requests[-1].body
    assert sim.requests[-1].body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]


def test_openai_streams_from_anthropic_native_endpoints(native, clients):
    gw, _ = native
    _, oai = clients
    chunks = list(
        oai(gw).chat.completions.create(
            model="deep", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert "hi there" in "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["stop"]
    assert chunks[-1].usage is not None


def test_openai_tool_calls_through_an_anthropic_native_endpoint(native, clients):
    gw, _ = native
    _, oai = clients
    choice = (
        oai(gw)
        .chat.completions.create(model="deep", messages=HELLO, tools=[WEATHER], tool_choice="required")
        .choices[0]
    )
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert isinstance(orjson.loads(choice.message.tool_calls[0].function.arguments), dict)


def test_errors_from_an_anthropic_native_endpoint_reach_each_client_in_its_shape(native, clients):
    gw, sim = native
    ant, oai = clients
    sim.behaviour.mode = Mode.ERROR_400
    with pytest.raises(anthropic.BadRequestError) as a_info:
        ant(gw).messages.create(model="deep", max_tokens=8, messages=HELLO)
    anthropic.types.ErrorResponse.model_validate(a_info.value.response.json())
    with pytest.raises(openai.BadRequestError) as o_info:
        oai(gw).chat.completions.create(model="deep", messages=HELLO)
    validate("ErrorResponse", o_info.value.response.json())


def test_fallback_crosses_endpoint_kinds(upstreams, gateway, clients):
    broken, native_sim = upstreams("openai-broken"), upstreams("native")
    broken.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {
                "fast": [endpoint(broken, "small", id="small")],
                "balanced": [endpoint(native_sim, "big", id="big", kind="anthropic")],
            }
        )
    )
    ant, oai = clients
    raw = oai(gw).chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "big"
    assert "hi there" in (raw.parse().choices[0].message.content or "")
    message = ant(gw).messages.create(model="fast", max_tokens=16, messages=HELLO)
    assert message.content[0].type == "text"

"""The gateway in front of a real llama.cpp `llama-server` (../shared/llm), talked
to with the official `openai` SDK in strict mode.

The tiny model writes gibberish, but the protocol is the real one, quirks
included (see ../shared/llm/transcripts): an opening stream chunk with
`content: null`, non-standard `timings` objects, tool-call ids without a
`call_` prefix, an integer `code` in error bodies, `Connection: close` after an
error, and generation until the context is full when no `max_tokens` is given.
Greedy decoding (temperature 0) makes the answers deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.integration.llama import LlamaServer
from tests.spec_validation import validate
from tests.support import fleet_config

if TYPE_CHECKING:
    from tests.conftest import RunningGateway

pytestmark = pytest.mark.llama

HTTP = urllib3.PoolManager()
HELLO = [{"role": "user", "content": "Say hello"}]
FINISHED = {"stop", "length"}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
# The toolcaller model needs ~60 tokens for its one call.
TOOL_MAX_TOKENS = 80
# ~6,000 words; the tiny model's vocabulary makes that ~24,000 tokens against a 2,048-token context.
TOO_LONG = [{"role": "user", "content": "hello world " * 3000}]


def llama_endpoint(server: LlamaServer, endpoint_id: str, **extra: Any) -> dict[str, Any]:
    return {"name": server.model, "base_url": server.base_url, "id": endpoint_id, **extra}


@pytest.fixture
def sdk() -> Iterator[Callable[[RunningGateway], openai.OpenAI]]:
    """Factory: a strict SDK client for a gateway; every client is closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(gw: RunningGateway) -> openai.OpenAI:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, _strict_response_validation=True)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def tiny_gw(gateway: Callable[[dict[str, Any]], RunningGateway], llama_tiny: LlamaServer) -> RunningGateway:
    return gateway(fleet_config({"fast": [llama_endpoint(llama_tiny, "llama-tiny")]}))


@pytest.fixture
def tool_gw(gateway: Callable[[dict[str, Any]], RunningGateway], llama_toolcaller: LlamaServer) -> RunningGateway:
    return gateway(fleet_config({"fast": [llama_endpoint(llama_toolcaller, "llama-toolcaller")]}))


def endpoint_rows(gw: RunningGateway) -> dict[str, dict[str, Any]]:
    """The gateway's per-endpoint status (GET /models), keyed by endpoint id."""
    response = HTTP.request("GET", f"{gw.url}/models")
    assert response.status == 200
    return {row["id"]: row for row in orjson.loads(response.data)["endpoints"]}


def stream_raw(gw: RunningGateway, body: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    return HTTP.request(
        "POST",
        f"{gw.base_url}/chat/completions",
        body=orjson.dumps({**body, "stream": True}),
        headers={"Content-Type": "application/json"},
    )


# -- plain chat -------------------------------------------------------------


def test_completion_parses_validates_and_names_the_llama_endpoint(tiny_gw, sdk):
    raw = sdk(tiny_gw).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi there"}], max_tokens=8, temperature=0
    )
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in FINISHED
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert raw.headers["X-Octoroute-Tier"] == "fast"
    assert raw.headers["X-Octoroute-Endpoint"] == "llama-tiny"
    assert raw.headers["X-Octoroute-Strategy"] == "rule"
    assert raw.headers["X-Octoroute-Reason"] == "rule_casual_short"
    assert raw.headers["X-Octoroute-Attempts"] == "1"
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))


def test_raw_stream_chunks_validate_and_end_with_done(tiny_gw):
    response = stream_raw(tiny_gw, {"model": "fast", "messages": HELLO, "max_tokens": 8, "temperature": 0})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Octoroute-Endpoint"] == "llama-tiny"
    events = [event for event in response.data.split(b"\n\n") if event.strip()]
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    with_choices = [chunk["choices"][0] for chunk in chunks if chunk["choices"]]
    assert "".join(choice["delta"].get("content") or "" for choice in with_choices)
    assert with_choices[-1]["finish_reason"] in FINISHED
    assert all(choice["finish_reason"] is None for choice in with_choices[:-1])


def test_sdk_accepts_the_opening_chunk_with_null_content(tiny_gw, sdk):
    chunks = list(
        sdk(tiny_gw).chat.completions.create(model="fast", messages=HELLO, max_tokens=8, temperature=0, stream=True)
    )
    opening = chunks[0].choices[0].delta
    # llama-server opens every stream with {"role": "assistant", "content": null}.
    assert (opening.role, opening.content) == ("assistant", None)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in FINISHED


def test_include_usage_ends_with_a_usage_only_chunk(tiny_gw, sdk):
    chunks = list(
        sdk(tiny_gw).chat.completions.create(
            model="fast",
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason in FINISHED
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))


# -- tool calls ---------------------------------------------------------------


def test_required_tool_call(tool_gw, sdk):
    raw = sdk(tool_gw).chat.completions.with_raw_response.create(
        model="fast",
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=TOOL_MAX_TOKENS,
        temperature=0,
    )
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id  # llama-server's ids have no "call_" prefix
    assert call.function.name == "get_weather"
    assert isinstance(orjson.loads(call.function.arguments), dict)
    assert raw.headers["X-Octoroute-Endpoint"] == "llama-toolcaller"
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))


def test_required_tool_call_streamed(tool_gw, sdk):
    chunks = list(
        sdk(tool_gw).chat.completions.create(
            model="fast",
            messages=WEATHER_QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice="required",
            max_tokens=TOOL_MAX_TOKENS,
            temperature=0,
            stream=True,
        )
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert isinstance(orjson.loads(calls[0]["arguments"]), dict)
    finishes = [choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.finish_reason]
    assert finishes == ["tool_calls"]


def test_tool_result_turn_goes_back_with_llama_s_call_id(tool_gw, sdk):
    client = sdk(tool_gw)
    first = client.chat.completions.create(
        model="fast",
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=TOOL_MAX_TOKENS,
        temperature=0,
    )
    assert first.choices[0].message.tool_calls
    call = first.choices[0].message.tool_calls[0]
    follow_up = [
        *WEATHER_QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'},
    ]
    answer = client.chat.completions.create(
        model="fast", messages=follow_up, tools=[WEATHER_TOOL], max_tokens=16, temperature=0
    )
    assert answer.choices[0].finish_reason in FINISHED
    assert answer.choices[0].message.tool_calls is None
    # The second turn carried the call and its result back to the model.
    assert first.usage is not None
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_context_overflow_nothing_can_hold_is_a_400_with_the_sizes(gateway, llama_tiny, sdk, stream):
    # Three ids for one server: what llama-server's overflow answer says holds for all of them.
    gw = gateway(
        fleet_config(
            {
                "fast": [llama_endpoint(llama_tiny, "llama-a"), llama_endpoint(llama_tiny, "llama-b")],
                "balanced": [llama_endpoint(llama_tiny, "llama-c")],
            },
            fallback={"fast": "balanced"},
        )
    )
    client = sdk(gw)
    with pytest.raises(openai.BadRequestError) as info:
        list(client.chat.completions.create(model="fast", messages=TOO_LONG, max_tokens=8, stream=stream))
    assert info.value.status_code == 400
    body = info.value.response.json()
    validate("ErrorResponse", body)
    assert body["error"]["code"] == "context_length_exceeded"
    assert "prompt tokens, counted by the upstream" in body["error"]["message"]
    assert "largest context window available is 2048 tokens" in body["error"]["message"]
    rows = endpoint_rows(gw)
    tried = [ep_id for ep_id, row in rows.items() if row["last_check_age_seconds"] is not None]
    assert len(tried) == 1, f"the same server was asked again: {tried}"
    assert info.value.response.headers["X-Octoroute-Attempts"] == "1"
    # A request too large says nothing about the endpoint's health.
    assert all(row["healthy"] and row["consecutive_failures"] == 0 for row in rows.values())
    # llama-server closes the connection after an error; the pooled client must still serve.
    ok = client.chat.completions.create(model="fast", messages=HELLO, max_tokens=8, temperature=0)
    assert ok.choices[0].message.content


def test_invalid_parameter_is_llama_s_400_in_openai_shape(tiny_gw, sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(tiny_gw).chat.completions.create(model="fast", messages=HELLO, max_tokens=-5)
    body = info.value.response.json()
    # llama-server sends {"code": 400, ...}; the OpenAI error object wants a string or null.
    validate("ErrorResponse", body)
    assert "max_tokens" in body["error"]["message"]
    row = endpoint_rows(tiny_gw)["llama-tiny"]
    assert row["healthy"]
    assert row["consecutive_failures"] == 0


# -- what the endpoint config adds --------------------------------------------


def test_endpoint_max_tokens_bounds_llama_s_otherwise_unbounded_generation(gateway, llama_tiny, sdk):
    # Without max_tokens llama-server generates until its context is full (seconds, 2,000 tokens).
    gw = gateway(fleet_config({"fast": [llama_endpoint(llama_tiny, "llama-tiny", max_tokens=5)]}))
    client = sdk(gw)
    defaulted = client.chat.completions.create(model="fast", messages=HELLO, temperature=0)
    assert defaulted.choices[0].finish_reason == "length"
    assert defaulted.usage is not None
    assert defaulted.usage.completion_tokens == 5
    explicit = client.chat.completions.create(model="fast", messages=HELLO, max_tokens=3, temperature=0)
    assert explicit.usage is not None
    assert explicit.usage.completion_tokens == 3


def test_health_probe_accepts_llama_s_model_listing(tiny_gw, loop_thread):
    # llama-server's GET /v1/models carries a non-standard "models" array beside "data".
    loop_thread.run(tiny_gw.gateway.probe_all())
    row = endpoint_rows(tiny_gw)["llama-tiny"]
    assert row["healthy"]
    assert row["last_error"] is None
    assert row["last_check_age_seconds"] is not None
    assert row["last_latency_ms"] is not None
    assert HTTP.request("GET", f"{tiny_gw.url}/ready").status == 200


def test_anthropic_client_gets_llama_s_streamed_tool_call_as_a_tool_use_block(tool_gw):
    weather = {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    with (
        anthropic.Anthropic(
            base_url=tool_gw.url, api_key="x", max_retries=0, _strict_response_validation=True
        ) as client,
        client.messages.stream(
            model="auto",
            max_tokens=64,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[weather],
            tool_choice={"type": "any"},
        ) as stream,
    ):
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)

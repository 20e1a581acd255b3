"""What coding agents need from translation, over real HTTP with the official SDKs:
the prompt prefix stays stable (nothing moved, late system messages in place),
Anthropic-only headers stay away from OpenAI-compatible servers, and a thinking
model's reasoning reaches `/v1/messages` clients as thinking blocks when they
asked for thinking (streamed and not), with the budget mapped to what the
endpoint understands."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest
import urllib3
from pydantic import TypeAdapter
from tests.scripted import STALL, Delta, scripted  # noqa: F401  (fixture)
from tests.support import endpoint, fleet_config

EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
LATE_SYSTEM = [
    {"role": "user", "content": "hi"},
    {"role": "system", "content": [{"type": "text", "text": "Today is Monday."}]},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What day is it?"},
]
THINKING = {"type": "enabled", "budget_tokens": 2048}

LLAMACPP_REASONING: list[Delta] = [
    {"reasoning_content": "Two plus "},
    {"reasoning_content": "two is four."},
    {"content": "4"},
]
VLLM_REASONING: list[Delta] = [{"reasoning": "Two plus two is four."}, {"content": "4"}]


@pytest.fixture
def ant(sdk_clients):
    return sdk_clients.anthropic


@pytest.fixture
def oai(sdk_clients):
    return sdk_clients.openai


def one_group(upstream_url: str, **group: Any) -> dict[str, Any]:
    config = fleet_config({"fast": [{"name": "m", "base_url": upstream_url}]})
    if group:
        config["groups"] = {"fast": group}
    return config


# ------------------------------------------------------------------ headers


def test_anthropic_headers_never_reach_openai_endpoints(upstreams, gateway, ant):
    openai_kind, native = upstreams("llama"), upstreams("native")
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(openai_kind, "m")], "deep": [endpoint(native, "n", kind="anthropic")]},
            aliases={"claude-*": "fast"},
        )
    )
    headers = {"anthropic-beta": BETA, "anthropic-version": "2023-06-01"}
    for model in ("fast", "deep"):
        ant(gw).messages.create(model=model, max_tokens=16, messages=LATE_SYSTEM[:1], extra_headers=headers)
        with ant(gw).messages.stream(
            model=model, max_tokens=16, messages=LATE_SYSTEM[:1], extra_headers=headers
        ) as stream:
            stream.get_final_message()
    assert len(openai_kind.chat_requests) == 2
    for request in openai_kind.chat_requests:
        assert not [k for k in request.headers if k.lower().startswith("anthropic-")], dict(request.headers)
    native_requests = [r for r in native.requests if r.path == "/v1/messages"]
    assert len(native_requests) == 2
    for request in native_requests:
        assert request.headers["anthropic-beta"] == BETA
        assert request.headers["anthropic-version"] == "2023-06-01"


# ------------------------------------------------------------------ late system messages


@pytest.mark.parametrize("stream", [False, True])
def test_a_late_system_message_stays_in_place_as_a_user_note_by_default(upstreams, gateway, ant, stream):
    sim = upstreams("llama")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    raw = ant(gw).messages.with_raw_response.create(
        model="fast", max_tokens=16, system="Be brief.", messages=LATE_SYSTEM, stream=stream
    )
    raw.http_response.read()
    sent = sim.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "user", "assistant", "user"]
    assert sent[0]["content"] == "Be brief."
    assert sent[2]["content"] == "<system-note>\nToday is Monday.\n</system-note>"
    assert "system_as_user" in raw.headers["X-Octoroute-Degraded"].split(",")


def test_a_late_system_message_stays_a_system_message_where_the_group_allows(upstreams, gateway, ant):
    sim = upstreams("vllm")
    gw = gateway({**fleet_config({"fast": [endpoint(sim, "m")]}), "groups": {"fast": {"late_system": "system"}}})
    raw = ant(gw).messages.with_raw_response.create(
        model="fast", max_tokens=16, system="Be brief.", messages=LATE_SYSTEM
    )
    sent = sim.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system", "assistant", "user"]
    assert sent[2]["content"] == "Today is Monday."
    assert "X-Octoroute-Degraded" not in raw.headers


def test_a_conversation_sends_the_same_prefix_every_turn(upstreams, gateway, ant):
    """Turn 2 repeats turn 1 and adds to it: what the upstream receives grows at the end only."""
    sim = upstreams("llama")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    ant(gw).messages.create(model="fast", max_tokens=16, system="S", messages=LATE_SYSTEM[:2])
    ant(gw).messages.create(model="fast", max_tokens=16, system="S", messages=LATE_SYSTEM)
    first, second = (r.body["messages"] for r in sim.chat_requests)
    assert second[: len(first)] == first


@pytest.mark.parametrize("late_system", ["system", "user"])
def test_openai_clients_late_system_messages_stay_in_place_on_anthropic_endpoints(upstreams, gateway, oai, late_system):
    native = upstreams("native")
    gw = gateway(
        {
            **fleet_config({"deep": [endpoint(native, "n", kind="anthropic")]}),
            "groups": {"deep": {"late_system": late_system}},
        }
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Today is Monday."},
        {"role": "user", "content": "What day is it?"},
    ]
    oai(gw).chat.completions.create(model="deep", messages=messages)
    sent = next(r for r in native.requests if r.path == "/v1/messages").body
    assert sent["system"] == "Be brief."
    if late_system == "system":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "system", "user"]
        assert sent["messages"][2]["content"] == "Today is Monday."
    else:  # a note at the start of the next user turn (the Messages API wants turns alternating)
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][2]["content"][0]["text"] == "<system-note>\nToday is Monday.\n</system-note>"


# ------------------------------------------------------------------ thinking


def raw_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of a streamed /v1/messages call, each checked against the SDK's union."""
    response = urllib3.request(
        "POST",
        f"{url}/v1/messages",
        body=orjson.dumps({**body, "stream": True}),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    assert response.status == 200
    events = []
    for block in response.data.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        if event["type"] != "ping":
            EVENT.validate_python(event)
        events.append(event)
    return events


@pytest.mark.parametrize("deltas", [LLAMACPP_REASONING, VLLM_REASONING], ids=["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_thinking_block_when_asked(scripted, gateway, ant, deltas):  # noqa: F811
    upstream = scripted(lambda body: deltas)
    gw = gateway(one_group(upstream.base_url))
    ask = {"model": "fast", "max_tokens": 4096, "thinking": THINKING, "messages": [{"role": "user", "content": "2+2?"}]}

    message = ant(gw).messages.create(**ask)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Two plus two is four."
    assert message.content[0].signature
    assert message.content[1].text == "4"

    with ant(gw).messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [b.model_dump() for b in message.content]

    events = raw_events(gw.url, ask)
    kinds = [(e["type"], e.get("delta", e.get("content_block", {})).get("type")) for e in events]
    assert kinds[:2] == [("message_start", None), ("ping", None)]
    thinking = [k for k in kinds if k[0] != "content_block_delta" or k[1] == "thinking_delta"]
    assert ("content_block_start", "thinking") in thinking
    block = [e for e in events if e.get("index") == 0]
    assert block[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [e["delta"]["type"] for e in block[1:-1]][-1] == "signature_delta"  # just before the stop
    assert {e["delta"]["type"] for e in block[1:-2]} == {"thinking_delta"}
    assert block[-1] == {"type": "content_block_stop", "index": 0}
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    assert upstream.requests[0].body["reasoning_effort"] == "low"  # a 2,048-token budget


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_is_dropped_cleanly_when_thinking_was_not_asked(scripted, gateway, ant, stream):  # noqa: F811
    upstream = scripted(lambda body: LLAMACPP_REASONING)
    gw = gateway(one_group(upstream.base_url))
    ask = {"model": "fast", "max_tokens": 64, "messages": [{"role": "user", "content": "2+2?"}]}
    if stream:
        with ant(gw).messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = ant(gw).messages.create(**ask)
    assert [(b.type, b.text) for b in message.content] == [("text", "4")]
    assert "reasoning_effort" not in upstream.requests[0].body


def test_omitted_display_sends_thinking_blocks_without_their_text(scripted, gateway, ant):  # noqa: F811
    upstream = scripted(lambda body: VLLM_REASONING)
    gw = gateway(one_group(upstream.base_url))
    ask = {
        "model": "fast",
        "max_tokens": 64,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"},
        "messages": [{"role": "user", "content": "2+2?"}],
    }
    message = ant(gw).messages.create(**ask)
    assert [(b.type, getattr(b, "thinking", None)) for b in message.content] == [("thinking", ""), ("text", None)]
    events = raw_events(gw.url, ask)
    assert not [e for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "thinking_delta"]
    assert upstream.requests[0].body["reasoning_effort"] == "medium"


@pytest.mark.parametrize("stream", [False, True])
def test_output_filters_still_apply_to_reasoning_and_text(scripted, gateway, ant, stream):  # noqa: F811
    upstream = scripted(lambda body: [*LLAMACPP_REASONING[:2], {"content": "<think>scratch</think>4"}])
    gw = gateway(one_group(upstream.base_url, drop_reasoning=True, strip_think=True))
    ask = {"model": "fast", "max_tokens": 64, "thinking": THINKING, "messages": [{"role": "user", "content": "2+2?"}]}
    if stream:
        with ant(gw).messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = ant(gw).messages.create(**ask)
    assert [(b.type, b.text) for b in message.content] == [("text", "4")]


@pytest.mark.parametrize(
    ("params", "thinking", "expected"),
    [
        (["chat_template_kwargs"], THINKING, {"chat_template_kwargs": {"enable_thinking": True}}),
        (["chat_template_kwargs"], {"type": "disabled"}, {"chat_template_kwargs": {"enable_thinking": False}}),
        (
            ["reasoning_effort", "chat_template_kwargs"],
            {"type": "enabled", "budget_tokens": 16384},
            {"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": True}},
        ),
        ([], THINKING, {}),
    ],
)
def test_the_thinking_budget_maps_to_what_the_group_understands(scripted, gateway, ant, params, thinking, expected):  # noqa: F811
    upstream = scripted(lambda body: [{"content": "ok"}])
    gw = gateway(one_group(upstream.base_url, thinking_params=params))
    raw = ant(gw).messages.with_raw_response.create(
        model="fast", max_tokens=20000, thinking=thinking, messages=[{"role": "user", "content": "hi"}]
    )
    sent = upstream.requests[0].body
    assert {k: sent[k] for k in ("reasoning_effort", "chat_template_kwargs") if k in sent} == expected
    degraded = raw.headers.get("X-Octoroute-Degraded", "").split(",")
    assert ("thinking" in degraded) == (not params)


# ------------------------------------------------------------------ timeouts


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_a_slow_prefill_is_waited_for_and_a_stalled_stream_ends_by_its_idle_limit(
    upstreams,
    scripted,  # noqa: F811
    gateway,
    sdk_clients,
    api,
):
    """`first_byte` covers a long prefill (here longer than the idle limit); once tokens
    flow, `idle` alone decides when a silent stream is dead."""
    slow = upstreams("cold-cpu")
    slow.behaviour.first_byte_delay = 1.5  # the prefill: longer than the idle limit
    stalled = scripted(lambda body: [{"content": "partial"}, STALL])
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(slow, "m")], "deep": [{"name": "s", "base_url": stalled.base_url}]},
            timeouts={"idle": 1.0},  # generous: gaps between chunks on a loaded machine stay well below it
        )
    )
    ask = [{"role": "user", "content": "hi"}]
    if api == "anthropic":
        client = sdk_clients.anthropic(gw)
        with client.messages.stream(model="fast", max_tokens=16, messages=ask) as stream:
            assert stream.get_final_message().content[0].text
        stalled_stream = client.messages.stream(model="deep", max_tokens=16, messages=ask)
        with pytest.raises(anthropic.APIStatusError, match=r"no data for 1s"), stalled_stream as stream:
            stream.get_final_message()
    else:
        client = sdk_clients.openai(gw)
        chunks = list(client.chat.completions.create(model="fast", messages=ask, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.APIError, match=r"no data for 1s"):
            list(client.chat.completions.create(model="deep", messages=ask, stream=True))


# ------------------------------------------------------------------ a real llama.cpp server


@pytest.mark.llama
@pytest.mark.parametrize("late_system", ["user", "system"])
def test_llama_server_reuses_its_prompt_cache_when_a_system_message_arrives_late(
    gateway, llama_tiny, sdk_clients, late_system
):
    """llama-server's prompt cache survives the turn a system message first appears
    mid-conversation (it used to be folded into the leading system prompt, which the
    template follows with the tools: nearly the whole prompt was processed again)."""
    gw = gateway(
        {
            **fleet_config({"fast": [{"name": "tiny", "base_url": llama_tiny.base_url}]}),
            "groups": {"fast": {"late_system": late_system}},
        }
    )
    client = sdk_clients.anthropic(gw)
    system = f"[{late_system}] You are a careful coding assistant. " + "Keep the code tidy. " * 20
    tools = [{"name": "Read", "description": "Read a file. " * 10, "input_schema": {"type": "object"}}]
    turns = [
        [{"role": "user", "content": "Question 1: what does file_1.py do?"}],
        [{"role": "assistant", "content": "It defines a helper."}, {"role": "user", "content": "And file_2.py?"}],
        [
            {"role": "assistant", "content": "It defines another helper."},
            {"role": "system", "content": "Environment: the date is Monday."},
            {"role": "user", "content": "And file_3.py?"},
        ],
    ]
    messages: list[dict[str, Any]] = []
    usages = []
    for turn in turns:
        messages += turn
        message = client.messages.create(model="fast", max_tokens=1, system=system, tools=tools, messages=messages)
        usages.append(message.usage)
    previous_prompt = usages[1].input_tokens + usages[1].cache_read_input_tokens
    assert usages[2].cache_read_input_tokens >= previous_prompt * 0.9
    assert usages[2].input_tokens < previous_prompt / 2

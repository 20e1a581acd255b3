"""Tool calls written as text are repaired, and a group's output filters apply,
on both APIs, streamed and not, through real fixture upstreams."""

from __future__ import annotations

import orjson
import pytest
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

TEXT_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
ANTHROPIC_TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def text_caller(upstreams, gateway):
    def make(reply: str, **groups):
        sim = upstreams("texty")
        sim.behaviour.reply_text = reply
        return gateway(fleet_config({"fast": [endpoint(sim, "m")]}, groups=groups))

    return make


@pytest.fixture
def oai(sdk_clients):
    return sdk_clients.openai


@pytest.fixture
def ant(sdk_clients):
    return sdk_clients.anthropic


def test_text_tool_call_is_repaired_for_openai_clients(text_caller, oai):
    gw = text_caller(TEXT_CALL)
    raw = oai(gw).chat.completions.with_raw_response.create(model="fast", messages=ASK, tools=[OPENAI_TOOL])
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_text_tool_call_is_repaired_in_openai_streams(text_caller, oai):
    gw = text_caller(TEXT_CALL)
    chunks = list(oai(gw).chat.completions.create(model="fast", messages=ASK, tools=[OPENAI_TOOL], stream=True))
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert [c.function.name for c in calls if c.function and c.function.name] == ["get_weather"]
    assert orjson.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {"city": "Paris"}
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
    assert not "".join(ch.delta.content or "" for c in chunks for ch in c.choices).strip()


def test_text_tool_call_becomes_a_tool_use_block_for_anthropic_clients(text_caller, ant):
    gw = text_caller(TEXT_CALL)
    message = ant(gw).messages.create(model="fast", max_tokens=64, messages=ASK, tools=[ANTHROPIC_TOOL])
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [("tool_use", {"city": "Paris"})]
    with ant(gw).messages.stream(model="fast", max_tokens=64, messages=ASK, tools=[ANTHROPIC_TOOL]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["tool_use"]


def test_repair_is_off_when_the_group_says_so_and_for_undeclared_tools(text_caller, oai):
    gw = text_caller(TEXT_CALL, fast={"tool_repair": False})
    choice = oai(gw).chat.completions.create(model="fast", messages=ASK, tools=[OPENAI_TOOL]).choices[0]
    assert choice.message.tool_calls is None
    assert "<tool_call>" in (choice.message.content or "")
    gw2 = text_caller(TEXT_CALL)
    choice = oai(gw2).chat.completions.create(model="fast", messages=ASK).choices[0]  # no tools declared
    assert choice.message.tool_calls is None


THINKY = "<think>Let me ponder this at length.</think>The answer is 4.<|im_end|>"


def test_group_filters_strip_think_blocks_and_stop_markers(text_caller, oai, ant):
    gw = text_caller(THINKY, fast={"strip_think": True, "stop_markers": ["<|im_end|>"]})
    client = oai(gw)
    assert client.chat.completions.create(model="fast", messages=ASK).choices[0].message.content == "The answer is 4."
    stream = client.chat.completions.create(model="fast", messages=ASK, stream=True)
    assert "".join(ch.delta.content or "" for c in stream for ch in c.choices) == "The answer is 4."
    with ant(gw).messages.stream(model="fast", max_tokens=64, messages=ASK) as s:
        assert "".join(s.text_stream) == "The answer is 4."


def test_without_filters_the_text_is_untouched(text_caller, oai):
    gw = text_caller(THINKY)
    assert oai(gw).chat.completions.create(model="fast", messages=ASK).choices[0].message.content == THINKY

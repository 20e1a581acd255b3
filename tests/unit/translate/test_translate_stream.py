"""Streams: event order, real Anthropic captures, and streamed == non-streamed translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from pydantic import TypeAdapter
from tests.spec_validation import validate
from tests.unit.translate.test_translate_golden import (
    CLAUDE_CODE,
    assemble_anthropic,
    assemble_openai,
    case_id,
    cases,
    parse_sse,
    run_openai_stream,
    translator_args,
)

from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.translate_response import anthropic_to_openai_response, openai_to_anthropic_response
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream

EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)
CAPTURED_SSE = sorted((CLAUDE_CODE / "sse").glob("*.sse"))


def check_order(events: list[tuple[str, dict[str, Any]]]) -> None:
    """message_start, blocks one at a time with indexes 0, 1, 2..., message_delta, message_stop."""
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    open_block, next_index = None, 0
    for name, data in events:
        assert data["type"] == name
        if name != "ping":  # keep-alive, handled by the SDK before its event union
            EVENT.validate_python(data)
        if name == "content_block_start":
            assert open_block is None
            assert data["index"] == next_index
            open_block, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_block
        elif name == "content_block_stop":
            assert data["index"] == open_block
            open_block = None
    assert open_block is None


def non_streamed(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat.completion a server would have sent for the same answer without streaming."""
    assembled = assemble_openai(chunks)
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    choice = {
        "index": 0,
        "message": assembled["message"],
        "logprobs": None,
        "finish_reason": assembled["finish_reason"],
    }
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": usage,
    }


@pytest.mark.parametrize("path", cases("stream_openai_to_anthropic", "json"), ids=case_id)
def test_openai_stream_equals_non_streamed_translation(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    raw, stream = run_openai_stream(case)
    events = parse_sse(raw)
    check_order(events)
    streamed = assemble_anthropic([data for _, data in events])
    anthropic.types.Message.model_validate(streamed)
    args = translator_args(case)
    expected, _ = openai_to_anthropic_response(
        non_streamed(case["chunks"]), model=args["model"], message_id=args["message_id"], thinking=args.get("thinking")
    )
    assert streamed["content"] == expected["content"]
    assert streamed["stop_reason"] == expected["stop_reason"]
    assert streamed["usage"]["output_tokens"] == expected["usage"]["output_tokens"]
    assert stream.degradations == []


def parsed_arguments(message: dict[str, Any]) -> dict[str, Any]:
    """The message with tool arguments decoded: streamed JSON keeps the model's spacing."""
    calls = [{**c, "function": {**c["function"], "arguments": orjson.loads(c["function"]["arguments"])}}
             for c in message.get("tool_calls", [])]  # fmt: skip
    return {**message, "tool_calls": calls}


@pytest.mark.parametrize("path", CAPTURED_SSE, ids=lambda p: p.stem)
def test_real_anthropic_stream_to_openai_equals_non_streamed(path: Path) -> None:
    events = [data for _, data in parse_sse(path.read_bytes())]
    stream = AnthropicToOpenAIStream("gpt-x", "chatcmpl-cap", 1700000000, include_usage=True)
    chunks = [chunk for event in events for chunk in stream.feed(event)] + stream.finish()
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    message = assemble_anthropic(events)
    expected, _ = anthropic_to_openai_response(message, model="gpt-x", created=1700000000)
    streamed = assemble_openai(chunks)
    assert parsed_arguments(streamed["message"]) == parsed_arguments(expected["choices"][0]["message"])
    assert streamed["finish_reason"] == expected["choices"][0]["finish_reason"]


@pytest.mark.parametrize("path", CAPTURED_SSE, ids=lambda p: p.stem)
def test_real_anthropic_stream_survives_a_round_trip(path: Path) -> None:
    """Anthropic events → OpenAI chunks → Anthropic events: the client gets the same message."""
    events = [data for _, data in parse_sse(path.read_bytes())]
    to_openai = AnthropicToOpenAIStream("gpt-x", "chatcmpl-cap", 1, include_usage=True)
    chunks = [chunk for event in events for chunk in to_openai.feed(event)] + to_openai.finish()
    original = assemble_anthropic(events)
    back = OpenAIToAnthropicStream(original["model"], original["id"])
    raw = b"".join(e for chunk in chunks for e in back.feed(chunk)) + b"".join(back.finish())
    replayed = parse_sse(raw)
    check_order(replayed)
    again = assemble_anthropic([data for _, data in replayed])
    for key in ("id", "model", "content", "stop_reason"):
        assert again[key] == original[key]


def feed_all(stream: OpenAIToAnthropicStream, chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return parse_sse(b"".join(e for c in chunks for e in stream.feed(c)))


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def test_fail_sends_one_error_event_and_nothing_after() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_1")
    started = feed_all(stream, [delta_chunk({"content": "par"})])
    assert [name for name, _ in started][:2] == ["message_start", "ping"]
    error = parse_sse(stream.fail("upstream connection lost"))
    assert error == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "upstream connection lost"}})
    ]
    assert stream.feed(delta_chunk({"content": "tial"})) == []
    assert stream.finish() == []


def test_error_object_in_the_upstream_stream_becomes_the_error_event() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_1")
    events = parse_sse(b"".join(stream.feed({"error": {"code": 500, "message": "context overflow"}})))
    assert events == [("error", {"type": "error", "error": {"type": "api_error", "message": "context overflow"}})]
    assert stream.finish() == []


def test_text_after_tool_call_closes_it_and_late_arguments_are_reported() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_1")
    call = {"index": 0, "id": "c1", "function": {"name": "Bash", "arguments": '{"cmd":'}}
    chunks = [
        delta_chunk({"tool_calls": [call]}),
        delta_chunk({"content": "\n"}),
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}}]}),
        delta_chunk({}, "tool_calls"),
    ]
    events = feed_all(stream, chunks) + parse_sse(b"".join(stream.finish()))
    check_order(events)
    assert [d["content_block"]["type"] for n, d in events if n == "content_block_start"] == ["tool_use", "text"]
    assert stream.degradations == [Degradation(DegradationKind.LATE_TOOL_DELTA, "tool_calls[0]")]


def test_tool_without_id_or_name_yet_is_buffered_then_named() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_abc")
    chunks = [
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        delta_chunk({"tool_calls": [{"index": 0, "function": {"name": "F", "arguments": ": 1}"}}]}),
        delta_chunk({}, "stop"),
    ]
    events = feed_all(stream, chunks) + parse_sse(b"".join(stream.finish()))
    check_order(events)
    message = assemble_anthropic([d for _, d in events])
    assert message["content"] == [{"type": "tool_use", "id": "toolu_abc_0", "name": "F", "input": {"a": 1}}]
    assert message["stop_reason"] == "tool_use"  # llama.cpp may say "stop" after a tool call


def test_stop_sequence_reported_when_server_names_it() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_1", stop_sequences=["</x>"])
    chunk = delta_chunk({"content": "<x>1"}, "stop")
    chunk["choices"][0]["stop_reason"] = "</x>"
    events = feed_all(stream, [chunk]) + parse_sse(b"".join(stream.finish()))
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "</x>"}


def test_refusal_delta_becomes_text_and_refusal_stop() -> None:
    stream = OpenAIToAnthropicStream("claude", "msg_1")
    events = feed_all(stream, [delta_chunk({"refusal": "No."}), delta_chunk({}, "stop")])
    events += parse_sse(b"".join(stream.finish()))
    message = assemble_anthropic([d for _, d in events])
    assert message["content"] == [{"type": "text", "text": "No."}]
    assert message["stop_reason"] == "refusal"


def test_anthropic_stream_without_message_stop_still_finishes_once() -> None:
    stream = AnthropicToOpenAIStream("gpt", "chatcmpl-1", 1)
    start = {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 0}}}
    tool = {"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "F", "input": {}}}  # fmt: skip
    chunks = stream.feed(start) + stream.feed(tool) + stream.feed({"type": "some_future_event"})
    chunks += stream.finish()
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.finish() == []
    assert stream.feed({"type": "message_stop"}) == []
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)


def test_the_captured_streams_are_there():
    assert len(CAPTURED_SSE) == 2, f"expected the captured streams in {CLAUDE_CODE / 'sse'}"

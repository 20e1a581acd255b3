"""Streamed answers translated event by event, as small state objects.

    stream = OpenAIToAnthropicStream(model="claude-x", message_id="msg_1")
    for chunk in openai_chunks:          # parsed `data:` objects, [DONE] excluded
        out.extend(stream.feed(chunk))   # whole SSE events, bytes
    out.extend(stream.finish())          # on [DONE] or end of body
    # or, when the upstream breaks after the commit point: out.append(stream.fail("upstream closed"))

The Anthropic event order clients rely on
(https://docs.anthropic.com/en/docs/build-with-claude/streaming):
message_start, then per content block content_block_start, deltas,
content_block_stop, with indexes 0, 1, 2... and one block open at a time,
then message_delta (stop_reason, usage) and message_stop.

OpenAI streams may interleave the argument fragments of parallel tool calls
(each delta names its `index`). A block cannot be reopened once stopped, so
only one tool block streams live; fragments of the others are buffered and
each is sent as one delta when its turn comes. Real servers (OpenAI,
llama.cpp, vLLM) send calls one after another, so in practice only calls
after the first arrive in one piece.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.anthropic import (
    ErrorTypeName,
    MessageDeltaUsage,
    StreamEvent,
    encode_event,
    stream_error_event,
)
from octoroute.protocols.thinking import ThinkingRequest, reasoning_text, signature_for
from octoroute.protocols.translate_response import (
    anthropic_usage,
    finish_reason_for,
    matched_stop_sequence,
    openai_usage,
    stop_reason_for,
    tool_use_id,
)


@dataclass(slots=True)
class _Tool:
    """One OpenAI tool call (by its `index`) on its way to becoming a tool_use block."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    block: int | None = None  # Anthropic index once started
    closed: bool = False


class OpenAIToAnthropicStream:
    """OpenAI chat.completion.chunk objects in, Anthropic SSE events out.

    `input_tokens` (an estimate the caller may have) goes into message_start,
    since OpenAI servers report usage only at the end; the real count follows
    in message_delta. Tolerates llama.cpp's quirks: a first chunk with
    `content: null`, a usage-only last chunk with `choices: []`, tool-call ids
    without a `call_` prefix and extra fields (`timings`).

    `thinking` is what the client asked for (`read_thinking`): `reasoning_content`
    / `reasoning` deltas then become a thinking block (`thinking_delta`s, and a
    `signature_delta` before its `content_block_stop`); without it they are dropped.
    """

    def __init__(
        self,
        model: str,
        message_id: str,
        *,
        input_tokens: int = 0,
        stop_sequences: Sequence[str] = (),
        thinking: ThinkingRequest | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id
        self.degradations: list[Degradation] = []
        self._input_tokens = input_tokens
        self._stop_sequences = tuple(stop_sequences)
        self._started = False
        self._done = False
        self._next_block = 0
        self._thinking = thinking if thinking is not None and thinking.enabled else None
        self._thinking_block: int | None = None  # index of the open thinking block
        self._reasoning: list[str] = []  # its text so far, for the signature
        self._text_block: int | None = None  # index of the open text block
        self._open_tool: int | None = None  # OpenAI index of the open tool block
        self._tools: dict[int, _Tool] = {}
        self._finish_reason: object = None
        self._stop_sequence: str | None = None
        self._refused = False
        self._usage: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------ public

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """Events for one parsed chunk; nothing after finish() or fail()."""
        if self._done:
            return []
        error = chunk.get("error")
        if error is not None:  # llama.cpp reports mid-stream failures as a data object
            message = error.get("message") if isinstance(error, Mapping) else error
            return [self.fail(str(message or "upstream error"))]
        events = self._start()
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        choice = (
            next((c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0), None)
            if isinstance(choices, list)
            else None
        )
        if choice is None:
            return [encode_event(e) for e in events]
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            events += self._on_delta(delta)
        if choice.get("finish_reason") is not None:
            self._finish_reason = choice["finish_reason"]
            self._stop_sequence = matched_stop_sequence(choice, self._stop_sequences)
        return [encode_event(e) for e in events]

    def finish(self) -> list[bytes]:
        """Close open blocks, send buffered tool calls, message_delta and message_stop."""
        if self._done:
            return []
        events = self._start() + self._close_open() + self._flush_tools()
        has_tools = bool(self._tools)
        reason = stop_reason_for(self._finish_reason, has_tool_use=has_tools, stop_sequence=self._stop_sequence)
        if self._refused and reason == "end_turn":
            reason = "refusal"
        usage = anthropic_usage(self._usage)
        delta_usage: MessageDeltaUsage = {"output_tokens": usage["output_tokens"]}
        if self._usage is not None:
            delta_usage["input_tokens"] = usage["input_tokens"]
            delta_usage["cache_read_input_tokens"] = usage["cache_read_input_tokens"]
        events.append(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": reason,
                    "stop_sequence": self._stop_sequence if reason == "stop_sequence" else None,
                },
                "usage": delta_usage,
            }
        )
        events.append({"type": "message_stop"})
        self._done = True
        return [encode_event(e) for e in events]

    def fail(self, message: str, error_type: ErrorTypeName = "api_error") -> bytes:
        """The one terminal `error` event; the stream produces nothing after it."""
        self._done = True
        return stream_error_event(message, error_type)

    # ----------------------------------------------------------------- private

    def _start(self) -> list[StreamEvent]:
        if self._started:
            return []
        self._started = True
        usage = anthropic_usage(self._usage)
        return [
            {
                "type": "message_start",
                "message": {
                    "id": self.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": usage["input_tokens"] or self._input_tokens,
                        "output_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    },
                },
            },
            {"type": "ping"},
        ]

    def _on_delta(self, delta: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._thinking is not None and (reasoning := reasoning_text(delta)) is not None:
            events += self._on_reasoning(reasoning, self._thinking.show)
        text = delta.get("content")
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            text = (text if isinstance(text, str) else "") + refusal
        if isinstance(text, str) and text:
            events += self._on_text(text)
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            if isinstance(call, Mapping):
                events += self._on_tool_delta(call, position)
        return events

    def _on_text(self, text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._text_block is None:
            events += self._close_open() + self._flush_tools()
            self._text_block = self._take_index()
            events.append(
                {
                    "type": "content_block_start",
                    "index": self._text_block,
                    "content_block": {"type": "text", "text": ""},
                }
            )
        events.append(
            {"type": "content_block_delta", "index": self._text_block, "delta": {"type": "text_delta", "text": text}}
        )
        return events

    def _on_reasoning(self, text: str, show: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._thinking_block is None:
            events += self._close_open() + self._flush_tools()
            self._thinking_block = self._take_index()
            events.append(
                {
                    "type": "content_block_start",
                    "index": self._thinking_block,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
        self._reasoning.append(text)
        if show:  # display "omitted": the block comes without its text, as Anthropic's API sends it
            events.append(
                {
                    "type": "content_block_delta",
                    "index": self._thinking_block,
                    "delta": {"type": "thinking_delta", "thinking": text},
                }
            )
        return events

    def _on_tool_delta(self, call: Mapping[str, Any], position: int) -> list[StreamEvent]:
        key = call.get("index", position)
        key = key if isinstance(key, int) else position
        tool = self._tools.setdefault(key, _Tool())
        if isinstance(call.get("id"), str) and call["id"] and not tool.id:
            tool.id = call["id"]
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        if isinstance(function.get("name"), str) and function["name"] and not tool.name:
            tool.name = function["name"]  # sent once; some servers repeat it in every delta
        fragment = function.get("arguments")
        fragment = fragment if isinstance(fragment, str) else orjson.dumps(fragment).decode() if fragment else ""
        if tool.closed:
            if fragment:
                self.degradations.append(Degradation(DegradationKind.LATE_TOOL_DELTA, f"tool_calls[{key}]"))
            return []
        tool.arguments.append(fragment)
        if self._open_tool == key:
            return [self._json_delta(tool, fragment)] if fragment else []
        if self._open_tool is None and tool.name:
            return self._close_open() + self._open(key, tool)
        return []  # another tool is streaming, or the name has not come yet: buffered

    def _open(self, key: int, tool: _Tool) -> list[StreamEvent]:
        tool.block = self._take_index()
        tool.id = tool_use_id(tool.id, self.message_id, tool.block)
        self._open_tool = key
        events: list[StreamEvent] = [
            {
                "type": "content_block_start",
                "index": tool.block,
                "content_block": {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}},
            }
        ]
        buffered = "".join(tool.arguments)
        if buffered:
            events.append(self._json_delta(tool, buffered))
        return events

    def _json_delta(self, tool: _Tool, fragment: str) -> StreamEvent:
        assert tool.block is not None
        return {
            "type": "content_block_delta",
            "index": tool.block,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        }

    def _close_open(self) -> list[StreamEvent]:
        if self._thinking_block is not None:
            index, self._thinking_block = self._thinking_block, None
            reasoning, self._reasoning = "".join(self._reasoning), []
            return [
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": signature_for(reasoning)},
                },
                {"type": "content_block_stop", "index": index},
            ]
        if self._text_block is not None:
            index, self._text_block = self._text_block, None
            return [{"type": "content_block_stop", "index": index}]
        if self._open_tool is not None:
            tool = self._tools[self._open_tool]
            tool.closed = True
            self._open_tool = None
            assert tool.block is not None
            return [{"type": "content_block_stop", "index": tool.block}]
        return []

    def _flush_tools(self) -> list[StreamEvent]:
        """Send every buffered tool call whole, in the order the calls first appeared."""
        events: list[StreamEvent] = []
        for key, tool in self._tools.items():
            if tool.block is None:
                events += self._open(key, tool) + self._close_open()
        return events

    def _take_index(self) -> int:
        index = self._next_block
        self._next_block += 1
        return index


class AnthropicToOpenAIStream:
    """Anthropic stream events (parsed `data:` objects) in, OpenAI chunk dicts out.

    A role chunk first, then content and tool_calls deltas (each tool_use block
    numbered 0, 1, ... as an OpenAI tool-call index), a finish chunk with the
    finish_reason, and, with `include_usage`, a usage chunk with `choices: []`.
    An `error` event becomes one `{"error": {...}}` object, the way OpenAI
    servers report a failure mid-stream, and ends the stream.
    """

    def __init__(self, model: str, completion_id: str, created: int, *, include_usage: bool = False) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self._done = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
        self._stop_reason: object = None
        self._usage: dict[str, Any] = {}

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self._done:
            return []
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, Mapping) and isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._on_block_start(event)
        if kind == "content_block_delta":
            return self._on_block_delta(event)
        if kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            if isinstance(event.get("usage"), Mapping):  # cumulative counts
                self._usage.update({k: v for k, v in event["usage"].items() if v is not None})
            return []
        if kind == "message_stop":
            return self.finish()
        if kind == "error":
            self._done = True
            error = event.get("error")
            error = error if isinstance(error, Mapping) else {}
            message = str(error.get("message") or "upstream error")
            return [
                {
                    "error": {
                        "message": message,
                        "type": str(error.get("type") or "api_error"),
                        "param": None,
                        "code": None,
                    }
                }
            ]
        return []  # ping, content_block_stop, event types added later

    def finish(self) -> list[dict[str, Any]]:
        """The finish chunk (and usage chunk); also for a stream that ended without message_stop."""
        if self._done:
            return []
        self._done = True
        reason = finish_reason_for(self._stop_reason)
        if self._stop_reason is None and self._tool_index:
            reason = "tool_calls"
        chunks = [self._chunk({}, reason)]
        if self.include_usage:
            chunks.append(
                {
                    "id": self.completion_id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": openai_usage(self._usage),
                }
            )
        return chunks

    def _on_block_start(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = event.get("content_block")
        index = event.get("index")
        if not isinstance(block, Mapping) or not isinstance(index, int):
            return []
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []  # thinking blocks have no chat-completions form
        position = self._tool_index[index] = len(self._tool_index)
        initial = block.get("input")
        arguments = orjson.dumps(initial).decode() if isinstance(initial, Mapping) and initial else ""
        call = {
            "index": position,
            "id": str(block.get("id", "")),
            "type": "function",
            "function": {"name": str(block.get("name", "")), "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _on_block_delta(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta")
        if not isinstance(delta, Mapping):
            return []
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        index = event.get("index")
        position = self._tool_index.get(index) if isinstance(index, int) else None
        fragment = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and position is not None and isinstance(fragment, str) and fragment:
            return [self._chunk({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})]
        return []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

"""Token usage (and, when asked, the text) read out of upstream answers, in
either API's shape, for metrics, logs and token budgets.

    watch = StreamWatch(Api.OPENAI, keep_text=False)
    for events in upstream_events:
        watch.feed(events)          # cheap when the events carry no usage
    watch.input_tokens, watch.output_tokens
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from octoroute.core.types import Api
from octoroute.protocols.sse import encode_data, iter_data


def carries_usage(events: bytes) -> bool:
    """Might these events hold a usage object? Cheap, and never wrong the other way: with
    `include_usage` every chunk has `"usage": null`, so only an object counts."""
    return b'"usage":{' in events or b'"usage": {' in events


def wants_usage(body: Mapping[str, object]) -> bool:
    """Did an OpenAI stream request ask for the final usage chunk itself?"""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def drop_usage_chunks(events: bytes) -> bytes:
    """OpenAI stream events without the usage-only chunk (`choices: []` plus `usage`), for a
    client that did not ask for it when the gateway did; other events pass unchanged, and
    so does a body that is not SSE at all (an upstream that ignored `stream: true`)."""
    if not carries_usage(events) or not events.lstrip().startswith((b"data:", b"event:", b"id:", b":", b"retry:")):
        return events
    out: list[bytes] = []
    for data in iter_data(events):
        if carries_usage(data):  # only those events are decoded
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict) and chunk.get("choices") == [] and chunk.get("usage") is not None:
                continue
        out.append(encode_data(data))
    return b"".join(out)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_of(kind: Api, payload: Mapping[str, object]) -> tuple[int | None, int | None]:
    """(input, output) tokens of a non-streaming answer; None where it does not say."""
    usage = payload.get("usage")
    if not isinstance(usage, Mapping):
        return None, None
    if kind is Api.ANTHROPIC:
        return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if "prompt_tokens" not in usage and "input_tokens" in usage:  # a Responses API answer (passed through)
        return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


class StreamWatch:
    """Usage and text of a stream, from its events as they pass (never changes them)."""

    __slots__ = ("_kind", "_parts", "input_tokens", "keep_text", "output_tokens")

    def __init__(self, kind: Api, keep_text: bool = False) -> None:
        self._kind = kind
        self.keep_text = keep_text
        self._parts: list[str] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, events: bytes) -> None:
        if not self.keep_text and not carries_usage(events):
            return
        for data in iter_data(events):
            if not self.keep_text and not carries_usage(data):
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._read(event)

    def _read(self, event: dict[str, object]) -> None:
        if self._kind is Api.ANTHROPIC:
            kind = event.get("type")
            message = event.get("message")
            if kind == "message_start" and isinstance(message, dict):
                self._take(usage_of(Api.ANTHROPIC, message))
            elif kind == "message_delta":
                self._take(usage_of(Api.ANTHROPIC, event))
            elif self.keep_text and kind == "content_block_delta":
                delta = event.get("delta")
                if isinstance(delta, dict) and isinstance(text := delta.get("text"), str):
                    self._parts.append(text)
            return
        response = event.get("response")  # a Responses API event (passed through) carries it there
        self._take(usage_of(Api.OPENAI, response if isinstance(response, dict) else event))
        if self.keep_text:
            choices = event.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                delta = choices[0].get("delta")
                if isinstance(delta, dict) and isinstance(text := delta.get("content"), str):
                    self._parts.append(text)

    def _take(self, usage: tuple[int | None, int | None]) -> None:
        if usage[0] is not None:
            self.input_tokens = usage[0]
        if usage[1] is not None:
            self.output_tokens = usage[1]

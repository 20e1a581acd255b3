"""Anthropic Messages API wire shapes (https://docs.anthropic.com/en/api/messages,
streaming: https://docs.anthropic.com/en/docs/build-with-claude/streaming,
errors: https://docs.anthropic.com/en/api/errors).

Only what the translators read or write is typed. Requests arrive as parsed
dicts and are read defensively, because clients such as Claude Code send many
fields (beta features) that are not listed here and must not break anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

import orjson

StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]

ErrorTypeName = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
]

# ---------------------------------------------------------------- request side


class Base64ImageSource(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


class URLImageSource(TypedDict):
    type: Literal["url"]
    url: str


class TextBlockParam(TypedDict):
    type: Literal["text"]
    text: str


class ImageBlockParam(TypedDict):
    type: Literal["image"]
    source: Base64ImageSource | URLImageSource


class ToolUseBlockParam(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlockParam(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str | list[TextBlockParam | ImageBlockParam]]
    is_error: NotRequired[bool]


ContentBlockParam = TextBlockParam | ImageBlockParam | ToolUseBlockParam | ToolResultBlockParam


class MessageParam(TypedDict):
    role: Literal["user", "assistant", "system"]  # "system": a system message after the first turn
    content: str | list[ContentBlockParam]


class ToolParam(TypedDict):
    name: str
    input_schema: dict[str, Any]
    description: NotRequired[str]


class ToolChoice(TypedDict):
    """`auto`, `any` and `none` carry only the type; `tool` also a `name`."""

    type: Literal["auto", "any", "tool", "none"]
    name: NotRequired[str]
    disable_parallel_tool_use: NotRequired[bool]


class RequestMetadata(TypedDict, total=False):
    user_id: str


class MessagesRequest(TypedDict):
    """POST /v1/messages body, as far as translation produces it."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: NotRequired[str]
    tools: NotRequired[list[ToolParam]]
    tool_choice: NotRequired[ToolChoice]
    stop_sequences: NotRequired[list[str]]
    temperature: NotRequired[float]
    top_p: NotRequired[float]
    metadata: NotRequired[RequestMetadata]
    stream: NotRequired[bool]


# --------------------------------------------------------------- response side


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


ContentBlock = TextBlock | ToolUseBlock | ThinkingBlock


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


# ---------------------------------------------------------------- stream events


class MessageStartEvent(TypedDict):
    type: Literal["message_start"]
    message: Message


class PingEvent(TypedDict):
    type: Literal["ping"]


class ContentBlockStartEvent(TypedDict):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class TextDelta(TypedDict):
    type: Literal["text_delta"]
    text: str


class InputJSONDelta(TypedDict):
    type: Literal["input_json_delta"]
    partial_json: str


class ThinkingDelta(TypedDict):
    type: Literal["thinking_delta"]
    thinking: str


class SignatureDelta(TypedDict):
    type: Literal["signature_delta"]
    signature: str


class ContentBlockDeltaEvent(TypedDict):
    type: Literal["content_block_delta"]
    index: int
    delta: TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta


class ContentBlockStopEvent(TypedDict):
    type: Literal["content_block_stop"]
    index: int


class MessageDelta(TypedDict):
    stop_reason: StopReason | None
    stop_sequence: str | None


class MessageDeltaUsage(TypedDict):
    """Cumulative counts; input counts are repeated here once the upstream reports them."""

    output_tokens: int
    input_tokens: NotRequired[int]
    cache_read_input_tokens: NotRequired[int]


class MessageDeltaEvent(TypedDict):
    type: Literal["message_delta"]
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(TypedDict):
    type: Literal["message_stop"]


class ErrorObject(TypedDict):
    type: str
    message: str


class ErrorBody(TypedDict):
    """Both the HTTP error body and the data of a stream's `error` event."""

    type: Literal["error"]
    error: ErrorObject


StreamEvent = (
    MessageStartEvent
    | PingEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | ErrorBody
)

# ---------------------------------------------------------------------- helpers


def error_type_for(status: int) -> ErrorTypeName:
    """The documented error type for an HTTP status (other 4xx are invalid_request_error)."""
    known: dict[int, ErrorTypeName] = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
    if status in known:
        return known[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(message: str, status: int) -> bytes:
    """An Anthropic error response body: {"type": "error", "error": {"type", "message"}}."""
    body: ErrorBody = {"type": "error", "error": {"type": error_type_for(status), "message": message}}
    return orjson.dumps(body)


def encode_event(event: StreamEvent) -> bytes:
    """One SSE event with both lines the SDKs need: `event: <type>` and `data: <json>`.

    Clients dispatch on the `event:` name; Claude Code silently retries without
    streaming when it is missing (see shared/data/claude-code/README.md).
    """
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def stream_error_event(message: str, error_type: ErrorTypeName = "api_error") -> bytes:
    """The terminal `error` event of a stream that failed after the commit point."""
    return encode_event({"type": "error", "error": {"type": error_type, "message": message}})


def read_message_text(message: Mapping[str, object]) -> str | None:
    """The text blocks of a Messages API answer, joined; None if the shape is off."""
    blocks = message.get("content")
    if not isinstance(blocks, list):
        return None
    return "".join(b["text"] for b in blocks if isinstance(b, Mapping) and isinstance(b.get("text"), str))

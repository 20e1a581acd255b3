"""The OpenAI Responses API (`POST /v1/responses`): request checks, the response
object's frame, usage, typed stream events and their encoding.

    check_responses_body(body)                       # InvalidRequest-ready (param, message) or None
    frame = response_frame(body, "resp_1", created_at=1700000000, model="auto")
    encode_event({"type": "response.created", ...})  # b"event: response.created\\ndata: {...}\\n\\n"

The translators live in `translate_responses_request.py` (request → chat body),
`translate_responses_response.py` (chat.completion → response object) and
`translate_responses_stream.py` (chat chunks → typed events).
https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import orjson

ToolKind = Literal["function", "custom"]
Status = Literal["completed", "incomplete", "failed", "in_progress"]

# The request fields echoed on the response object (the API reference's Response
# schema), with the value used when the request left them out.
_ECHOED: tuple[tuple[str, object], ...] = (
    ("instructions", None),
    ("max_output_tokens", None),
    ("max_tool_calls", None),
    ("parallel_tool_calls", True),
    ("previous_response_id", None),
    ("reasoning", None),
    ("store", True),
    ("temperature", None),
    ("text", {"format": {"type": "text"}}),
    ("tool_choice", "auto"),
    ("tools", []),
    ("top_p", None),
    ("truncation", "disabled"),
    ("metadata", {}),
    ("prompt_cache_key", None),
    ("safety_identifier", None),
    ("service_tier", None),
)


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[object]
    logprobs: NotRequired[list[object]]


class ReasoningText(TypedDict):
    type: Literal["reasoning_text"]
    text: str


@dataclass(frozen=True, slots=True)
class ToolName:
    """What a chat function name stands for on the Responses side: a function or a
    custom (freeform) tool, possibly inside a `namespace` tool."""

    kind: ToolKind
    name: str
    namespace: str | None = None


ToolNames = Mapping[str, ToolName]  # chat function name → the Responses tool it stands for


def check_responses_body(body: Mapping[str, object]) -> tuple[str, str] | None:
    """(param, message) for what the gateway relies on, or None; the rest is the upstream's to judge."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model", "'model' must be a non-empty string: 'auto', a group, an endpoint id or an alias"
    given = body.get("input")
    if given is not None and not isinstance(given, str | list):
        return "input", "'input' must be a string or an array of input items"
    if isinstance(given, list) and not all(isinstance(item, dict) for item in given):
        return "input", "every item of 'input' must be an object"
    if given is None and body.get("previous_response_id") is None:
        return "input", "'input' is required (a string or an array of input items)"
    for key in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(key) is not None and not isinstance(body.get(key), bool):
            return key, f"'{key}' must be true or false"
    if body.get("background") is True:
        return "background", "background responses are not supported by this gateway; leave 'background' out"
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        return "tools", "'tools' must be an array of tool objects"
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        return "instructions", "'instructions' must be a string"
    limit = body.get("max_output_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return "max_output_tokens", "'max_output_tokens' must be a positive integer"
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        return "previous_response_id", "'previous_response_id' must be the id of an earlier response"
    return None


def response_frame(body: Mapping[str, Any], response_id: str, *, created_at: int, model: str) -> dict[str, Any]:
    """The response object before any output: the request's settings echoed as the
    API reference's Response schema has them, status `in_progress`."""
    frame: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
    }  # no `usage` until the end: the spec's ResponseUsage is not nullable
    for key, default in _ECHOED:
        value = body.get(key)
        frame[key] = default if value is None else value
    if not isinstance(frame["instructions"], str | list):
        frame["instructions"] = None
    return frame


def obj(value: object) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one (for defensive reads)."""
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def responses_usage(usage: object) -> ResponseUsage:
    """A chat completion's `usage` in the Responses shape (zeros when the upstream gave none)."""
    if not isinstance(usage, Mapping):
        usage = {}
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else 0
    reasoning = _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, Mapping) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": _count(usage.get("total_tokens")) or prompt + completion,
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One typed stream event: an `event:` line naming its type, then its JSON."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def output_text_of(output: list[Any]) -> str:
    """The text of every `output_text` part of a response's output, joined."""
    parts = []
    for item in output:
        if isinstance(item, Mapping) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    parts.append(str(part.get("text") or ""))
    return "".join(parts)


_REQUIRED_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("error", None),
    ("incomplete_details", None),
    ("instructions", None),
    ("metadata", {}),
    ("parallel_tool_calls", True),
    ("temperature", None),
    ("tool_choice", "auto"),
    ("tools", []),
    ("top_p", None),
)


def fill_response_fields(response: dict[str, Any]) -> bool:
    """Add what the Response schema requires and a server left out (older servers omit
    `usage.input_tokens_details.cache_write_tokens`, some `temperature`/`top_p`) and drop
    a `usage: null`, so strict clients parse a passed-through answer; True when changed."""
    changed = False
    for key, default in _REQUIRED_DEFAULTS:
        if key not in response:
            response[key] = default
            changed = True
    if "usage" in response and response["usage"] is None:  # not nullable in the spec: absent until known
        del response["usage"]
        changed = True
    usage = response.get("usage")
    if isinstance(usage, dict):
        for key, required in (
            ("input_tokens_details", ("cached_tokens", "cache_write_tokens")),
            ("output_tokens_details", ("reasoning_tokens",)),
        ):
            details = usage.get(key)
            if not isinstance(details, dict):
                details = usage[key] = {}
                changed = True
            for name in required:
                if name not in details:
                    details[name] = 0
                    changed = True
    return changed

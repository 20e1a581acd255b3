"""OpenAI Chat Completions wire shapes used by the gateway
(https://platform.openai.com/docs/api-reference/chat, spec: ../shared/spec/openapi.yaml).

The gateway forwards client JSON as parsed dicts; only the fields it reads or
writes are typed here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

import orjson

from octoroute.protocols.sse import encode_data

ErrorTypeName = Literal["invalid_request_error", "not_found_error", "rate_limit_error", "server_error", "api_error"]


class ErrorObject(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorObject


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelEntry(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelEntry]


def error_type_for(status: int) -> ErrorTypeName:
    if status == 404:
        return "invalid_request_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error" if status == 500 else "api_error"
    return "invalid_request_error"


def error_body(message: str, status: int, *, code: str | None, param: str | None = None) -> bytes:
    body: ErrorBody = {"error": {"message": message, "type": error_type_for(status), "param": param, "code": code}}
    return orjson.dumps(body)


def stream_error_event(message: str, *, code: str | None, error_type: str = "server_error") -> bytes:
    """The one terminal event sent when a stream fails after the commit point."""
    body: ErrorBody = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return encode_data(orjson.dumps(body))


def model_list(ids: Sequence[str], created: int | None = None) -> ModelList:
    stamp = int(time.time()) if created is None else created
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": stamp, "owned_by": "octoroute"} for i in ids],
    }


def read_usage(response: Mapping[str, object]) -> Usage | None:
    """`usage` of a chat.completion (or a final stream chunk), if well formed."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    try:
        return {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "total_tokens": int(usage.get("total_tokens") or 0),
        }
    except (TypeError, ValueError):
        return None


def read_message_text(response: Mapping[str, object]) -> str | None:
    """choices[0].message.content of a chat.completion (text parts joined), or None if the shape is off."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


DEFAULT_MAX_JSON_DEPTH = 64


def nests_deeper(value: object, limit: int) -> bool:
    """Whether arrays and objects in `value` nest deeper than `limit` levels (the
    top level is 1). Walks containers only, without recursion: about 4 µs for a
    20-message chat, 40 µs for a 500 KB body with 40 tool schemas."""
    stack: list[tuple[object, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        for child in children:  # type: ignore[attr-defined]
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
    return False


def parse_json_object(raw: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict[str, object]:
    """Decode a request body that must be a JSON object; `ValueError` says what is wrong.

    Nesting deeper than `max_depth` is refused: deep values break re-serialisation
    (orjson stops at 255 levels) and recursive walks later on."""
    if not raw.strip():
        raise ValueError("request body is empty; send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise ValueError(f"request body nests JSON deeper than {max_depth} levels, the limit") from None
        raise ValueError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"request body must be a JSON object, not {type(value).__name__}")
    if nests_deeper(value, max_depth):
        raise ValueError(f"request body nests JSON deeper than {max_depth} levels, the limit")
    return value


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_chat_body(body: Mapping[str, object]) -> tuple[str, str] | None:
    """First problem in a chat-completions body as (param, message), or None.

    Only what the gateway must rely on is checked; everything else is the
    upstream's to judge, so new OpenAI fields keep working.
    """
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        return "model", "'model' must be a non-empty string: 'auto', a group name or an endpoint id"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty array of message objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}]", f"messages[{i}] must be an object with 'role' and 'content'"
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # a list or object role is unhashable
            return f"messages[{i}].role", f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}"
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "stream", "'stream' must be true or false"
    return None


def normalised_error(raw: bytes, status: int) -> dict[str, object]:
    """The `error` object of an upstream's error body, with all four keys.

    Servers differ: OpenAI, llama.cpp (an integer `code`) and newer vLLM send
    `{"error": {...}}`; Anthropic `{"type": "error", "error": {"type", "message"}}`;
    Ollama `{"error": "text"}`; older vLLM `{"object": "error", "message": ...}`;
    some send plain text. The message and any extra fields are kept, the shape
    is made standard.
    """
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        value = None
    inner = value.get("error") if isinstance(value, dict) else None
    if isinstance(inner, str):
        inner = {"message": inner}
    elif inner is None and isinstance(value, dict) and isinstance(value.get("message"), str):
        inner = {k: v for k, v in value.items() if k != "object"}
    if not isinstance(inner, dict):
        text = raw.decode("utf-8", "replace").strip()[:2000] or f"upstream answered HTTP {status}"
        inner = {"message": text}
    code = inner.get("code")
    fixed = dict(inner)
    fixed["message"] = str(inner.get("message") or f"upstream answered HTTP {status}")
    fixed["type"] = str(inner.get("type") or error_type_for(status))
    fixed["param"] = inner.get("param") if isinstance(inner.get("param"), str) else None
    fixed["code"] = None if code is None else str(code)
    return fixed


def reply_problem(response: Mapping[str, Any], item: str) -> str | None:
    """Why a whole chat (`item` "message") or text (`item` "text") completion cannot be
    relayed as one: its `choices` is not a non-empty list of objects holding `item`
    (an upstream's error in a 200, or something else entirely). None when it can."""
    kind = dict if item == "message" else str
    choices = response.get("choices")
    if (
        isinstance(choices, list)
        and choices
        and all(isinstance(c, dict) and isinstance(c.get(item), kind) for c in choices)
    ):
        return None
    error = response.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        return f"answered 200 with an error: {str(message)[:200]}"
    return f"answered without choices holding a {item}"


FINISH_REASONS = frozenset(("stop", "length", "tool_calls", "content_filter", "function_call"))


def fill_required_fields(response: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> bool:
    """Make a whole chat.completion (or text completion) from an OpenAI-compatible server
    spec-valid where servers are known to differ, touching nothing that already is:
    `defaults` for missing top-level keys (`id`, `object`, `created`, `model`); per choice
    its `index` (its position), `logprobs` (null) and a `finish_reason` (`tool_calls`
    when the message calls tools, else `stop`, for one missing, null or not the spec's);
    a message's `content` and `refusal` (null; llama.cpp sends neither `logprobs` nor
    `refusal`) and its tool calls' `id`, `type` and `arguments` as a JSON string (an
    entry with no `function` or `custom` object is dropped); `usage`
    counts that are missing (0, the total their sum), or `usage` itself when it is not an
    object. True when it changed anything, so a conforming upstream's bytes can be
    relayed untouched."""
    changed = False
    for key, value in (defaults or {}).items():
        if key not in response:
            response[key] = value
            changed = True
    usage = response.get("usage")
    if "usage" in response and not isinstance(usage, dict):
        del response["usage"]
        changed = True
    elif isinstance(usage, dict):
        changed = _fill_usage(usage) or changed
    choices = response.get("choices")
    if not isinstance(choices, list):
        return changed
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for key, value in (("index", position), ("logprobs", None)):
            if key not in choice:
                choice[key] = value
                changed = True
        reason = choice.get("finish_reason")
        if not isinstance(reason, str) or reason not in FINISH_REASONS:
            choice["finish_reason"] = "tool_calls" if calls else "stop"
            changed = True
        if isinstance(message, dict):
            for key in ("content", "refusal"):
                if key not in message:
                    message[key] = None
                    changed = True
            if isinstance(calls, list):
                usable = [
                    c for c in calls if isinstance(c, dict) and isinstance(c.get("function") or c.get("custom"), dict)
                ]
                if len(usable) < len(calls):  # entries that name no call carry nothing to run
                    message["tool_calls"] = usable
                    changed = True
                changed = _fill_tool_calls(usable, position) or changed
    return changed


def _fill_usage(usage: dict[str, Any]) -> bool:
    changed = False
    for key in ("prompt_tokens", "completion_tokens"):
        if not isinstance(usage.get(key), int):
            usage[key] = 0
            changed = True
    if not isinstance(usage.get("total_tokens"), int):
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        changed = True
    return changed


def _fill_tool_calls(calls: list[dict[str, Any]], position: int) -> bool:
    changed = False
    for i, call in enumerate(calls):
        if not isinstance(call.get("id"), str):
            call["id"] = f"call_{position}_{i}"
            changed = True
        if "type" not in call:
            call["type"] = "custom" if "custom" in call else "function"
            changed = True
        function = call.get("function")
        if isinstance(function, dict) and not isinstance(function.get("arguments"), str):
            arguments = function.get("arguments")
            function["arguments"] = orjson.dumps(arguments).decode() if isinstance(arguments, dict | list) else "{}"
            changed = True
    return changed

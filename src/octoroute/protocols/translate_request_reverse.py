"""Request translation from OpenAI chat completions to the Anthropic Messages API,
for OpenAI clients routed to Anthropic-native endpoints.

    body, lost = openai_to_anthropic_request(chat_request)

Unknown fields never raise; what the Messages API cannot take is reported as a
`Degradation`. Only an unreadable structure raises `TranslationError` (a 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from octoroute.core.errors import TranslationError
from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.anthropic import ContentBlockParam, MessageParam, ToolChoice, ToolParam
from octoroute.protocols.translate_request import LateSystem, system_note

# ------------------------------------------------------------- OpenAI -> Anthropic

# Fields of CreateChatCompletionRequest that the Messages API has no equivalent for.
# fmt: off
_OPENAI_UNSUPPORTED = frozenset({
    "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "seed",
    "response_format", "modalities", "audio", "prediction", "store", "metadata", "web_search_options",
    "reasoning_effort", "service_tier", "verbosity", "prompt_cache_key", "prompt_cache_retention",
    "prompt_cache_options", "moderation", "function_call", "functions",
})
# fmt: on
# fmt: off
_OPENAI_HANDLED = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
    "stop", "temperature", "top_p", "user", "safety_identifier", "stream", "stream_options",
})
# fmt: on
_TOOL_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_tool_id(call_id: object) -> str:
    """A tool-call id in the form the Messages API accepts (^[A-Za-z0-9_-]+$).

    Applied to both a call and its result, so the pair still matches.
    """
    text = _TOOL_ID_BAD.sub("_", str(call_id or ""))
    return text or "toolu_missing"


def parse_tool_arguments(arguments: object) -> dict[str, Any] | None:
    """OpenAI function arguments (a JSON string) as an object; None when they are not one.

    Empty arguments mean a call without parameters (llama.cpp sends ""). A dict
    (some servers send one) and JSON encoded twice are accepted as well.
    """
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str):
        return None
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
        if isinstance(value, str):
            value = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _anthropic_parts(content: object, path: str, lost: list[Degradation]) -> list[ContentBlockParam]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[ContentBlockParam] = []
    if not isinstance(content, list):
        return blocks
    for i, part in enumerate(content):
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url" and isinstance(part.get("image_url"), Mapping):
            url = str(part["image_url"].get("url", ""))
            match = re.match(r"data:([^;,]+);base64,(.*)", url, re.DOTALL)
            if match:
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": match[1], "data": match[2]}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, f"{path}[{i}]"))
    return blocks


def _plain_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def tool_use_blocks(
    calls: object, path: str, lost: list[Degradation], make_id: Callable[[object, int], str]
) -> list[ContentBlockParam]:
    """OpenAI `tool_calls` as Anthropic `tool_use` blocks (arguments parsed to objects);
    `make_id(call_id, index)` gives each block its id."""
    blocks: list[ContentBlockParam] = []
    for i, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        arguments = parse_tool_arguments(function.get("arguments"))
        if arguments is None:
            lost.append(Degradation(DegradationKind.INVALID_TOOL_ARGUMENTS, f"{path}[{i}].function.arguments"))
        blocks.append(
            {
                "type": "tool_use",
                "id": make_id(call.get("id"), i),
                "name": str(function.get("name", "")),
                "input": arguments or {},
            }
        )
    return blocks


def _append_turn(
    turns: list[MessageParam], role: Literal["user", "assistant"], blocks: list[ContentBlockParam]
) -> None:
    """Consecutive same-role turns are merged: the Messages API wants them alternating."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role and isinstance(turns[-1]["content"], list):
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _anthropic_messages(
    messages: object, lost: list[Degradation], late_system: LateSystem
) -> tuple[list[str], list[MessageParam]]:
    if not isinstance(messages, list):
        raise TranslationError("'messages' must be an array of message objects", "messages")
    system: list[str] = []
    turns: list[MessageParam] = []
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise TranslationError(f"{path} must be an object with 'role' and 'content'", path)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _plain_text(content)
            if not turns:  # before every turn: the top-level system prompt
                system += [text] if text else []
            elif text and late_system == "system":  # stays where it came (the Messages API takes it there)
                turns.append({"role": "system", "content": text})
            elif text:
                lost.append(Degradation(DegradationKind.SYSTEM_AS_USER, path))
                _append_turn(turns, "user", [{"type": "text", "text": system_note(text)}])
        elif role == "user":
            _append_turn(turns, "user", _anthropic_parts(content, f"{path}.content", lost))
        elif role == "assistant":
            blocks = _anthropic_parts(content, f"{path}.content", lost)
            blocks += tool_use_blocks(
                message.get("tool_calls"), f"{path}.tool_calls", lost, lambda call_id, _: anthropic_tool_id(call_id)
            )
            _append_turn(turns, "assistant", blocks)
        elif role == "tool":
            result: ContentBlockParam = {
                "type": "tool_result",
                "tool_use_id": anthropic_tool_id(message.get("tool_call_id")),
                "content": _plain_text(content),
            }
            _append_turn(turns, "user", [result])
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, f"{path}.role"))
    return system, turns


def _anthropic_tools(tools: object, lost: list[Degradation]) -> list[ToolParam]:
    out: list[ToolParam] = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        function = tool.get("function") if isinstance(tool, Mapping) and tool.get("type") == "function" else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            lost.append(Degradation(DegradationKind.UNSUPPORTED_TOOL, f"tools[{i}]"))
            continue
        schema = function.get("parameters")
        param: ToolParam = {
            "name": function["name"],
            "input_schema": dict(schema) if isinstance(schema, Mapping) else {"type": "object", "properties": {}},
        }
        if isinstance(function.get("description"), str):
            param["description"] = function["description"]
        out.append(param)
    return out


def _anthropic_tool_choice(body: Mapping[str, Any], lost: list[Degradation]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    result: ToolChoice | None = None
    if choice in ("auto", "none"):
        result = {"type": "auto" if choice == "auto" else "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            result = {"type": "tool", "name": function["name"]}
    elif choice is not None:
        lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, "tool_choice"))
    if body.get("parallel_tool_calls") is False:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _anthropic_sampling(body: Mapping[str, Any], out: dict[str, Any], lost: list[Degradation]) -> None:
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        if temperature > 1:  # OpenAI allows 0..2, Anthropic 0..1
            lost.append(Degradation(DegradationKind.TEMPERATURE_CLAMPED, "temperature"))
        out["temperature"] = min(float(temperature), 1.0)
    if isinstance(body.get("top_p"), int | float) and not isinstance(body.get("top_p"), bool):
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    stops = (
        [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []
    )
    if stops:
        out["stop_sequences"] = stops
    user = body.get("user") if isinstance(body.get("user"), str) else body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}


def openai_to_anthropic_request(
    body: Mapping[str, Any], *, default_max_tokens: int = 4096, late_system: LateSystem = "system"
) -> tuple[dict[str, Any], list[Degradation]]:
    """An OpenAI chat-completions body as an Anthropic Messages request.

    System and developer messages before the first turn become the top-level
    `system`; later ones stay at their place, as `role: "system"` messages
    (`late_system="system"`) or as a user-side `system_note`; tool
    messages become `tool_result` blocks in a user turn; `max_tokens`, required
    by Anthropic, is `default_max_tokens` when the client set none.
    """
    lost: list[Degradation] = []
    system, turns = _anthropic_messages(body.get("messages"), lost, late_system)
    out: dict[str, Any] = {"model": body.get("model")} if isinstance(body.get("model"), str) else {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        out["max_tokens"] = limit
    else:
        out["max_tokens"] = default_max_tokens
        lost.append(Degradation(DegradationKind.MAX_TOKENS_DEFAULTED, "max_tokens"))
    out["messages"] = turns
    if system:
        out["system"] = "\n\n".join(system)
    tools = _anthropic_tools(body.get("tools"), lost)
    if tools:
        out["tools"] = tools
    if (choice := _anthropic_tool_choice(body, lost)) is not None and (tools or choice["type"] == "none"):
        out["tool_choice"] = choice
    _anthropic_sampling(body, out, lost)
    if body.get("stream") is True:
        out["stream"] = True
    for key, value in body.items():
        if key in _OPENAI_UNSUPPORTED and not (key == "n" and value in (None, 1)):
            lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, key))
        elif key not in _OPENAI_HANDLED and key not in _OPENAI_UNSUPPORTED:
            lost.append(Degradation(DegradationKind.UNKNOWN_FIELD, key))
    return out, lost

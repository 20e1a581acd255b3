"""Request translation from the Anthropic Messages API to OpenAI chat completions
(the reverse direction is `translate_request_reverse.py`).

    body, lost = anthropic_to_openai_request(messages_request)

Both directions are pure and read the client's parsed JSON defensively: unknown
fields never raise, they are dropped and reported. Everything a target cannot
take is reported as a `Degradation` (kind + JSON path), so callers can count
and log what was lost without logging any text. Only a body whose structure
cannot be read at all (no message list, a message that is not an object)
raises `TranslationError`, which the server turns into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

from octoroute.core.errors import TranslationError
from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.thinking import reasoning_of

SystemRole = Literal["system", "developer"]

# How a system message after the first turn reaches the upstream: as the system message it is
# (the prompt prefix stays what the client sent), or as a marked user note at the same
# position, for chat templates that reject a system message anywhere but first.
LateSystem = Literal["system", "user"]

_SYSTEM_ROLES = frozenset({"system", "developer"})

# The OpenAI spec allows at most 4 stop sequences (CreateChatCompletionRequest.stop).
OPENAI_MAX_STOP = 4

_DROPPED_TOP_LEVEL = {
    "top_k": DegradationKind.TOP_K,
    "output_config": DegradationKind.OUTPUT_CONFIG,
    "context_management": DegradationKind.CONTEXT_MANAGEMENT,
    "container": DegradationKind.CONTAINER,
    "mcp_servers": DegradationKind.MCP_SERVERS,
    "service_tier": DegradationKind.SERVICE_TIER,
}
# fmt: off
_HANDLED_ANTHROPIC = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "stop_sequences", "max_tokens", "temperature", "top_p",
    "metadata", "stream", "thinking",  # thinking: mapped per endpoint (protocols.egress)
})
# fmt: on


def _to_json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def _texts_to_content(texts: list[str]) -> str | list[dict[str, Any]]:
    """One text stays a string (what every chat template handles); several stay separate parts."""
    if len(texts) == 1:
        return texts[0]
    return [{"type": "text", "text": t} for t in texts]


def _system_texts(system: object, path: str, lost: list[Degradation]) -> list[str]:
    """Text of an Anthropic `system` (string or text blocks); other blocks are reported."""
    if isinstance(system, str):
        return [system] if system else []
    if not isinstance(system, list):
        return []
    texts: list[str] = []
    for i, block in enumerate(system):
        if not isinstance(block, Mapping):
            continue
        if "cache_control" in block:
            lost.append(Degradation(DegradationKind.CACHE_CONTROL, f"{path}[{i}].cache_control"))
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, f"{path}[{i}]"))
    return texts


def _image_part(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """An Anthropic image block as an OpenAI image_url part (base64 becomes a data URL)."""
    source = block.get("source")
    if not isinstance(source, Mapping):
        return None
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    return None


def _tool_result_text(block: Mapping[str, Any], path: str, lost: list[Degradation]) -> str:
    """A tool_result's content as the text an OpenAI tool message can carry.

    `is_error` has no OpenAI field, so it is stated in the text, where the model reads it.
    """
    content = block.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for i, part in enumerate(content):
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "tool_reference" and isinstance(part.get("tool_name"), str):
                # Tool search: the named deferred tool is now loaded. OpenAI targets get every
                # tool up front, so saying so in words keeps the conversation coherent.
                texts.append(f"Tool {part['tool_name']} is now available.")
            elif kind == "image":
                lost.append(Degradation(DegradationKind.TOOL_RESULT_IMAGE, f"{path}.content[{i}]"))
            else:
                lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, f"{path}.content[{i}]"))
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"[tool error] {text}" if text else "[tool error]"
    return text


def _report_block_extras(block: Mapping[str, Any], path: str, lost: list[Degradation]) -> None:
    if "cache_control" in block:
        lost.append(Degradation(DegradationKind.CACHE_CONTROL, f"{path}.cache_control"))


def _unsupported(kind: object, path: str) -> Degradation:
    if kind in ("thinking", "redacted_thinking"):
        return Degradation(DegradationKind.THINKING_BLOCK, path)
    if kind == "document":
        return Degradation(DegradationKind.DOCUMENT_BLOCK, path)
    return Degradation(DegradationKind.UNSUPPORTED_BLOCK, path)


def _user_messages(content: object, path: str, lost: list[Degradation]) -> list[dict[str, Any]]:
    """One Anthropic user turn as OpenAI messages: tool results first (each a `tool`
    message, which must directly follow the assistant's tool_calls), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{path} must be a string or an array of content blocks", path)
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{path}[{i}]"
        if not isinstance(block, Mapping):
            continue
        _report_block_extras(block, where, lost)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and (image := _image_part(block)) is not None:
            parts.append(image)
        elif kind == "tool_result":
            call_id = str(block.get("tool_use_id", ""))
            tools.append({"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block, where, lost)})
        else:
            lost.append(_unsupported(kind, where))
    out = tools
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": _texts_to_content([p["text"] for p in parts])})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_message(content: object, path: str, lost: list[Degradation]) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise TranslationError(f"{path} must be a string or an array of content blocks", path)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for i, block in enumerate(content):
        where = f"{path}[{i}]"
        if not isinstance(block, Mapping):
            continue
        _report_block_extras(block, where, lost)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif (thought := reasoning_of(block)) is not None:  # a server's reasoning, given back to it
            reasoning.append(thought)
        elif kind == "tool_use":
            arguments = _to_json_text(block.get("input") if isinstance(block.get("input"), Mapping) else {})
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {"name": str(block.get("name", "")), "arguments": arguments},
                }
            )
        else:
            lost.append(_unsupported(kind, where))
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": _texts_to_content(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_tools(tools: object, lost: list[Degradation]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not isinstance(tools, list):
        return out
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            continue
        # Client tools have no type or "custom"; typed ones (web_search_20250305, bash_...) run on Anthropic's side.
        if tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
            lost.append(Degradation(DegradationKind.UNSUPPORTED_TOOL, path))
            continue
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = dict(schema) if isinstance(schema, Mapping) else {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        for key in tool:
            if key == "cache_control":
                lost.append(Degradation(DegradationKind.CACHE_CONTROL, f"{path}.cache_control"))
            elif key not in ("name", "description", "input_schema", "type", "strict"):
                lost.append(Degradation(DegradationKind.TOOL_OPTION, f"{path}.{key}"))
        out.append({"type": "function", "function": function})
    return out


def _openai_tool_choice(choice: object, body: dict[str, Any]) -> None:
    if not isinstance(choice, Mapping):
        return
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False


def _system_message(texts: list[str], role: SystemRole) -> dict[str, Any]:
    return {"role": role, "content": "\n\n".join(texts)}


def _openai_messages(request: Mapping[str, Any], lost: list[Degradation], role: SystemRole) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("'messages' must be an array of message objects", "messages")
    leading = _system_texts(request.get("system"), "system", lost)
    body: list[dict[str, Any]] = [_system_message(leading, role)] if leading else []
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise TranslationError(f"{path} must be an object with 'role' and 'content'", path)
        kind = message.get("role")
        content = message.get("content")
        if kind == "system":  # Claude Code sends one after the first user turn; it stays where it came
            if texts := _system_texts(content, f"{path}.content", lost):
                body.append(_system_message(texts, role))
        elif kind == "user":
            body.extend(_user_messages(content, f"{path}.content", lost))
        elif kind == "assistant":
            if (reply := _assistant_message(content, f"{path}.content", lost)) is not None:
                body.append(reply)
        else:
            raise TranslationError(f"{path}.role must be 'user' or 'assistant'", f"{path}.role")
    return body


def system_note(text: str) -> str:
    """A late system message's text as a user-side note, marked so the model reads it as one."""
    return f"<system-note>\n{text}\n</system-note>"


def late_system_as_user(messages: list[Any]) -> list[Any] | None:
    """`messages` with every system/developer message after the first non-system one
    turned into a user message carrying a `system_note`, at the same position; None
    when there is none (the common case costs one pass over the roles).

    For chat templates that reject a system message anywhere but first: the note
    keeps the conversation's order, so the prompt prefix of the next turn is the
    same and a server's prompt cache still matches.
    """
    first_turn = next(
        (i for i, m in enumerate(messages) if not (isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES)),
        len(messages),
    )
    late = [
        i
        for i in range(first_turn, len(messages))
        if isinstance(messages[i], Mapping) and messages[i].get("role") in _SYSTEM_ROLES
    ]
    if not late:
        return None
    out = list(messages)
    for i in late:
        out[i] = {"role": "user", "content": system_note(_plain_text(messages[i].get("content")))}
    return out


def _plain_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _copy_sampling(request: Mapping[str, Any], body: dict[str, Any], lost: list[Degradation]) -> None:
    for key in ("max_tokens", "temperature", "top_p"):
        if isinstance(request.get(key), int | float) and not isinstance(request.get(key), bool):
            body[key] = request[key]
    stops = request.get("stop_sequences")
    if isinstance(stops, list) and stops:
        strings = [s for s in stops if isinstance(s, str)]
        if len(strings) > OPENAI_MAX_STOP:
            lost.append(Degradation(DegradationKind.STOP_SEQUENCES_TRUNCATED, "stop_sequences"))
        if strings:
            body["stop"] = strings[:OPENAI_MAX_STOP]
    metadata = request.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        body["user"] = metadata["user_id"]


def anthropic_to_openai_request(
    request: Mapping[str, Any],
    *,
    system_role: SystemRole = "system",
) -> tuple[dict[str, Any], list[Degradation]]:
    """An Anthropic Messages request as an OpenAI chat-completions body.

    Nothing is moved: the top-level `system` becomes the leading system message
    and a `role: "system"` message inside `messages[]` stays a system message at
    its place (`late_system_as_user` makes it a user note per endpoint, where
    the template needs that). `system_role="developer"` emits developer
    messages instead of system messages.

    >>> body, lost = anthropic_to_openai_request({"model": "m", "max_tokens": 5, "messages": [...]})
    """
    lost: list[Degradation] = []
    body: dict[str, Any] = {}
    if isinstance(request.get("model"), str):
        body["model"] = request["model"]
    body["messages"] = _openai_messages(request, lost, system_role)
    tools = _openai_tools(request.get("tools"), lost)
    if tools:
        body["tools"] = tools
        _openai_tool_choice(request.get("tool_choice"), body)
    elif isinstance(request.get("tool_choice"), Mapping) and request["tool_choice"].get("type") == "none":
        body["tool_choice"] = "none"
    _copy_sampling(request, body, lost)
    if request.get("stream") is True:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for key in request:
        if key in _DROPPED_TOP_LEVEL:
            lost.append(Degradation(_DROPPED_TOP_LEVEL[key], key))
        elif key not in _HANDLED_ANTHROPIC:
            lost.append(Degradation(DegradationKind.UNKNOWN_FIELD, key))
    return body, lost

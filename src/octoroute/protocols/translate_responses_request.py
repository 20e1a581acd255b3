"""Request translation from the OpenAI Responses API to chat completions.

    out = responses_to_chat_request(responses_request)
    out.body, out.lost, out.names, out.thinking

What maps (https://platform.openai.com/docs/api-reference/responses/create):
`instructions` and leading `developer`/`system` messages become one system
message (later ones stay system messages in place); `input` items become chat
messages: `message` (every role; parts `input_text`/`output_text`/`refusal` as
text, `input_image` as `image_url`), `function_call` and `custom_tool_call` as
assistant tool calls (consecutive calls form one assistant turn),
`function_call_output` / `custom_tool_call_output` as tool messages, and a
`reasoning` item's text as the next assistant message's `reasoning_content`.
`function` tools map one to one; a `namespace` tool's functions are flattened to
`<namespace>__<name>`; a `custom` (freeform) tool becomes a function with one
string argument `input`. `names` maps each chat name back, so answers can be
given in the client's terms. Hosted tools (`web_search`, `file_search`, ...)
have no chat form: dropped and reported. `text.format` becomes
`response_format`, `max_output_tokens` `max_tokens`; `reasoning.effort` is
returned as a `ThinkingRequest` for the serving group to pass on
(`protocols.egress`). Session fields (`store`, `include`, `prompt_cache_key`,
`client_metadata`, `previous_response_id`, ...) are the gateway's and are not
forwarded. Everything dropped is a `Degradation` (kind + JSON path); dropped
tools, tool options and fields also carry a `detail` naming them in the
client's terms (`tools.web_search`, `text.verbosity`), for `X-Octoroute-Dropped`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from octoroute.core.errors import TranslationError
from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.responses import ToolName
from octoroute.protocols.thinking import ThinkingRequest

NAMESPACE_SEPARATOR = "__"
CUSTOM_INPUT = "input"  # the one string argument a custom tool's function takes

# fmt: off
_GATEWAY_FIELDS = frozenset({  # read by the gateway itself, never forwarded
    "model", "input", "instructions", "stream", "store", "include", "prompt_cache_key", "client_metadata",
    "previous_response_id", "metadata", "truncation", "service_tier", "stream_options", "safety_identifier",
    "prompt_cache_retention", "background", "user",
})
_COPIED = ("temperature", "top_p")
_HANDLED = frozenset({"tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens", "reasoning"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})
# fmt: on
_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}


@dataclass(slots=True)
class ChatTranslation:
    """A Responses request as a chat completions body, and what that cost."""

    body: dict[str, Any]
    lost: list[Degradation] = field(default_factory=list)
    names: dict[str, ToolName] = field(default_factory=dict)
    thinking: ThinkingRequest | None = None


def input_items(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`input` as a list of items (a string is one user message)."""
    given = request.get("input")
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [item for item in given if isinstance(item, dict)] if isinstance(given, list) else []


def flat_name(name: str, namespace: str | None) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def _parts(content: object, path: str, lost: list[Degradation]) -> list[dict[str, Any]]:
    """A message's content as chat parts (text and image_url); other parts are reported."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            lost.append(Degradation(DegradationKind.DOCUMENT_BLOCK, f"{path}[{i}]"))
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, f"{path}[{i}]"))
    return parts


def _text_of(parts: list[dict[str, Any]], path: str, lost: list[Degradation]) -> str:
    texts = []
    for part in parts:
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, path))
    return "\n".join(texts)


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text stays a string (what every chat template handles); otherwise the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _arguments(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value if value is not None else {}).decode()


def _output_text(output: object, path: str, lost: list[Degradation]) -> str:
    """A tool output: a string, or parts of which only text reaches a chat tool message."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        return "" if output is None else orjson.dumps(output).decode()
    texts = []
    for i, part in enumerate(output):
        if isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            lost.append(Degradation(DegradationKind.TOOL_RESULT_IMAGE, f"{path}[{i}]"))
    return "\n".join(texts)


def _reasoning_text(item: Mapping[str, Any]) -> str:
    """A reasoning item's text: its `content` (reasoning_text parts), else its summary."""
    for key in ("content", "summary"):
        texts = [
            str(p["text"]) for p in item.get(key) or [] if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
        if texts:
            return "\n".join(texts)
    return ""


class _Messages:
    """Builds the chat message list item by item: consecutive tool calls join one
    assistant turn, reasoning waits for the assistant message it belongs to."""

    def __init__(self, lost: list[Degradation]) -> None:
        self.lost = lost
        self.messages: list[dict[str, Any]] = []
        self.system: list[str] = []  # the leading system text: instructions and first developer messages
        self.reasoning: str | None = None

    def _assistant(self, content: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
            self.reasoning = None
        self.messages.append(message)
        return message

    def message(self, item: Mapping[str, Any], path: str) -> None:
        role = item.get("role")
        parts = _parts(item.get("content"), f"{path}.content", self.lost)
        if role in ("system", "developer"):
            text = _text_of(parts, f"{path}.content", self.lost)
            if not self.messages:
                self.system.append(text)
            else:
                self.messages.append({"role": "system", "content": text})
        elif role == "assistant":
            text = _text_of(parts, f"{path}.content", self.lost)
            last = self.messages[-1] if self.messages else None
            if last is not None and last["role"] == "assistant" and not last.get("tool_calls") and text:
                last["content"] = (last["content"] or "") + text
            else:
                self._assistant(text)
        elif role == "user":
            self.messages.append({"role": "user", "content": _user_content(parts)})
        else:
            raise TranslationError(f"{path}.role must be user, assistant, system or developer", param=f"{path}.role")

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant" and self.reasoning is None:
            last.setdefault("tool_calls", []).append(call)
        else:
            self._assistant(None)["tool_calls"] = [call]

    def tool_output(self, call_id: str, text: str) -> None:
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})

    def result(self) -> list[dict[str, Any]]:
        head = [{"role": "system", "content": "\n\n".join(self.system)}] if self.system else []
        return head + self.messages


def _call_id(item: Mapping[str, Any], path: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{path}.call_id must be a non-empty string", param=f"{path}.call_id")
    return call_id


def _add_item(out: _Messages, item: Mapping[str, Any], path: str) -> None:
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        out.message(item, path)
    elif kind == "function_call":
        name = flat_name(str(item.get("name") or ""), item.get("namespace") or None)
        out.tool_call(_call_id(item, path), name, _arguments(item.get("arguments")))
    elif kind == "custom_tool_call":
        name = flat_name(str(item.get("name") or ""), item.get("namespace") or None)
        arguments = orjson.dumps({CUSTOM_INPUT: str(item.get("input") or "")}).decode()
        out.tool_call(_call_id(item, path), name, arguments)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        out.tool_output(_call_id(item, path), _output_text(item.get("output"), f"{path}.output", out.lost))
    elif kind == "reasoning":
        text = _reasoning_text(item)
        out.reasoning = f"{out.reasoning}\n{text}" if out.reasoning and text else (text or out.reasoning)
    else:
        out.lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, path))


def _function(tool: Mapping[str, Any], name: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    parameters = tool.get("parameters")
    function["parameters"] = parameters if isinstance(parameters, Mapping) else {"type": "object", "properties": {}}
    if tool.get("strict") is True:
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom(tool: Mapping[str, Any], name: str, path: str, lost: list[Degradation]) -> dict[str, Any]:
    """A freeform tool as a function taking its text as one string argument."""
    fmt = tool.get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
        # no grammar-constrained text
        lost.append(Degradation(DegradationKind.TOOL_OPTION, f"{path}.format", f"tools.{name}.format"))
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": "the tool's whole input, as free text"}},
        "required": [CUSTOM_INPUT],
    }
    return _function({"description": description, "parameters": parameters}, name)


def _tools(tools: object, out: ChatTranslation) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind, path = tool.get("type"), f"tools[{i}]"
        inner = [(tool, None, path)]
        if kind == "namespace" and isinstance(tool.get("name"), str):
            inner = [
                (t, tool["name"], f"{path}.tools[{j}]")
                for j, t in enumerate(tool.get("tools") or [])
                if isinstance(t, Mapping)
            ]
        for one, namespace, where in inner:
            name = one.get("name")
            if one.get("type") not in ("function", "custom") or not isinstance(name, str) or not name:
                kind_name = one.get("type") if isinstance(one.get("type"), str) else "unknown"
                lost = Degradation(DegradationKind.UNSUPPORTED_TOOL, f"{where}.{one.get('type')}", f"tools.{kind_name}")
                out.lost.append(lost)
                continue
            flat = flat_name(name, namespace)
            if one["type"] == "function":
                chat.append(_function(one, flat))
                out.names[flat] = ToolName("function", name, namespace)
            else:
                chat.append(_custom(one, flat, where, out.lost))
                out.names[flat] = ToolName("custom", name, namespace)
    return chat


def _tool_choice(choice: object, out: ChatTranslation) -> object:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, Mapping):
        out.lost.append(Degradation(DegradationKind.TOOL_OPTION, "tool_choice", "tool_choice"))
        return None
    kind = choice.get("type")
    if kind in ("function", "custom") and isinstance(choice.get("name"), str):
        name = flat_name(choice["name"], choice.get("namespace") or None)
        if name in out.names:
            return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        out.lost.append(Degradation(DegradationKind.TOOL_OPTION, "tool_choice.tools", "tool_choice.tools"))
        return choice["mode"]
    out.lost.append(Degradation(DegradationKind.TOOL_OPTION, "tool_choice", "tool_choice"))
    return None


def _response_format(text: object, lost: list[Degradation]) -> dict[str, Any] | None:
    if not isinstance(text, Mapping):
        return None
    if text.get("verbosity") is not None:
        lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, "text.verbosity", "text.verbosity"))
    fmt = text.get("format")
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema" and isinstance(fmt.get("schema"), Mapping):
        schema: dict[str, Any] = {"name": str(fmt.get("name") or "response"), "schema": fmt["schema"]}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, "text.format", "text.format"))
    return None


def read_reasoning(request: Mapping[str, Any]) -> ThinkingRequest | None:
    """`reasoning.effort` as the gateway's thinking request (None when not given)."""
    reasoning = request.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    if effort == "none":
        return ThinkingRequest(enabled=False, show=False)
    if effort in _EFFORTS:
        return ThinkingRequest(True, effort=_EFFORTS[effort])
    return None


def responses_to_chat_request(request: Mapping[str, Any]) -> ChatTranslation:
    """A Responses request (its `input` already holding any stored history) as a chat body."""
    out = ChatTranslation(body={})
    tools = _tools(request.get("tools"), out)
    messages = _Messages(out.lost)
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.system.append(instructions)
    elif isinstance(instructions, list):
        for i, item in enumerate(instructions):
            if isinstance(item, Mapping):
                _add_item(messages, item, f"instructions[{i}]")
    for i, item in enumerate(input_items(request)):
        _add_item(messages, item, f"input[{i}]")
    body = out.body
    body["messages"] = messages.result()
    if not body["messages"]:
        raise TranslationError("'input' has no message the model can read", param="input")
    if tools:
        body["tools"] = tools
        choice = _tool_choice(request.get("tool_choice"), out)
        if choice is not None:
            body["tool_choice"] = choice
        if isinstance(request.get("parallel_tool_calls"), bool):
            body["parallel_tool_calls"] = request["parallel_tool_calls"]
    fmt = _response_format(request.get("text"), out.lost)
    if fmt is not None:
        body["response_format"] = fmt
    if isinstance(request.get("max_output_tokens"), int):
        body["max_tokens"] = request["max_output_tokens"]
    for key in _COPIED:
        if request.get(key) is not None:
            body[key] = request[key]
    if request.get("stream") is True:
        body["stream"] = True
    out.thinking = read_reasoning(request)
    for key in request:
        if key not in _GATEWAY_FIELDS and key not in _HANDLED and key not in _COPIED:
            out.lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, key, key))
    return out

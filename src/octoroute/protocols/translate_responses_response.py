"""Non-streamed answer translation from chat completions to the Responses API.

    response, lost = chat_to_response(completion, frame, names, ItemIds("req1"), completed_at=1700000001)

Output items, in the order a Responses model produces them: a `reasoning` item
(from `reasoning_content` / `reasoning`, as `reasoning_text`), the assistant
`message` (`output_text`), then one item per tool call: `function_call`
(with its `namespace` when the chat name was a flattened namespace tool) or
`custom_tool_call` for a freeform tool (its `input` argument unwrapped).
`finish_reason` `length` / `content_filter` make the response `incomplete`
with the matching `incomplete_details.reason`; usage maps to
`input_tokens` / `output_tokens` / `total_tokens` with their details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.responses import ToolName, ToolNames, obj, responses_usage
from octoroute.protocols.thinking import reasoning_text
from octoroute.protocols.translate_responses_request import CUSTOM_INPUT

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ItemIds:
    """Output item ids of one response: `<prefix>_<request id>_<n>`, stable for a given request."""

    __slots__ = ("_base", "_n")

    def __init__(self, base: str) -> None:
        self._base = base
        self._n = 0

    def next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._base}_{self._n}"


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": status,
    }


def call_item(
    item_id: str, call_id: str, chat_name: str, arguments: str, names: ToolNames, status: str = "completed"
) -> dict[str, Any]:
    """A chat tool call as the Responses item of the tool the client declared."""
    tool = names.get(chat_name) or ToolName("function", chat_name)
    item: dict[str, Any]
    if tool.kind == "custom":
        item = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": tool.name}
        item["input"] = custom_input(arguments)
    else:
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": tool.name}
        item["arguments"] = arguments
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    item["status"] = status
    return item


def custom_input(arguments: str) -> str:
    """A freeform tool's text from its function arguments (`{"input": "..."}`), or the
    arguments themselves when the model wrote something else."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(parsed, Mapping) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return str(parsed[CUSTOM_INPUT])
    return arguments


def finish_status(finish_reason: object) -> tuple[str, dict[str, str] | None]:
    """The response's `status` and `incomplete_details` for a chat finish reason."""
    reason = _INCOMPLETE.get(str(finish_reason))
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def chat_to_response(
    completion: Mapping[str, Any], frame: Mapping[str, Any], names: ToolNames, ids: ItemIds, *, completed_at: int
) -> tuple[dict[str, Any], list[Degradation]]:
    """A chat.completion as the finished response object built on `frame` (`responses.response_frame`)."""
    lost: list[Degradation] = []
    choices = completion.get("choices")
    choices = choices if isinstance(choices, list) else []
    if len(choices) > 1:
        lost.append(Degradation(DegradationKind.EXTRA_CHOICES, "choices"))
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    message = choice.get("message")
    message = message if isinstance(message, Mapping) else {}
    output: list[dict[str, Any]] = []
    thought = reasoning_text(message)
    if thought:
        output.append(reasoning_item(ids.next("rs"), thought))
    text = message.get("content")
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, Mapping)]
    if (isinstance(text, str) and text) or not calls:
        output.append(message_item(ids.next("msg"), text if isinstance(text, str) else ""))
    for call in calls:
        function = obj(call.get("function"))
        arguments = function.get("arguments")
        given = call.get("id")
        call_id = given if isinstance(given, str) and given else ids.next("call")
        item_id = ids.next("fc")
        output.append(call_item(item_id, call_id, str(function.get("name") or ""), _text(arguments), names))
    status, incomplete = finish_status(choice.get("finish_reason"))
    response = dict(frame)
    response.update(
        status=status,
        completed_at=completed_at if status == "completed" else None,
        incomplete_details=incomplete,
        output=output,
        usage=responses_usage(completion.get("usage")),
    )
    return response, lost


def _text(arguments: object) -> str:
    if isinstance(arguments, str):
        return arguments
    return "{}" if arguments is None else orjson.dumps(arguments).decode()

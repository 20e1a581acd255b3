"""The internal request: `ChatCall`, one decoded request of any ingress API, and its
routing hints lifted out of the body and headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from octoroute.config.topology import GroupSpec
from octoroute.core.errors import InvalidRequest
from octoroute.core.types import Features, Importance, TaskType
from octoroute.fleet.affinity import session_of
from octoroute.fleet.operations import CHAT, Ask
from octoroute.protocols.openai import check_chat_body
from octoroute.protocols.thinking import ThinkingRequest
from octoroute.protocols.usage import wants_usage
from octoroute.routing.features import extract_features

AUTO = "auto"
HINT_FIELDS = ("importance", "task_type")


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One decoded chat request in the internal form."""

    body: dict[str, Any]
    model: str
    stream: bool
    importance: Importance
    task_type: TaskType | None
    request_id: str
    anthropic_body: dict[str, Any] | None = None  # the client's own request when it spoke the Messages API
    # The client's own request when it spoke the Responses API (history included), passed as it is
    # to endpoints that speak Responses natively (`responses = true`); `body` is its chat translation.
    responses_body: dict[str, Any] | None = None
    # thinking asked for in another API's terms (a Responses client's `reasoning.effort`, Ollama's
    # `think`), shaped per group by `protocols.egress`
    thinking: ThinkingRequest | None = None
    session: str | None = None  # an explicit conversation key from a header (fleet.affinity.session_of)
    ask: Ask = CHAT  # the operation (chat, embeddings, completions) and what narrows its endpoints


def _hint(value: object, enum: type[Importance] | type[TaskType], param: str) -> Any:
    if value is None:
        return None
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidRequest(f"'{param}' must be one of {allowed}; got {value!r}", param=param) from None


def decode_chat(
    body: dict[str, Any], headers: Mapping[str, str], default_importance: Importance, request_id: str
) -> ChatCall:
    """Validate a parsed chat body and lift the routing hints out of it.

    Body fields win over headers; both are removed before forwarding.
    """
    problem = check_chat_body(body)
    if problem is not None:
        raise InvalidRequest(problem[1], param=problem[0])
    # the body's hint, else the header's; most requests give neither, and pay no call for them
    importance = given = body.pop("importance", None)
    header = headers.get("X-Octoroute-Importance")
    if given is not None or header is not None:
        importance = _hint(given, Importance, "importance") or _hint(header, Importance, "X-Octoroute-Importance")
    task_type = given = body.pop("task_type", None)
    header = headers.get("X-Octoroute-Task-Type")
    if given is not None or header is not None:
        task_type = _hint(given, TaskType, "task_type") or _hint(header, TaskType, "X-Octoroute-Task-Type")
    return ChatCall(
        body=body,
        model=str(body.get("model") or AUTO),
        stream=bool(body.get("stream", False)),
        importance=importance or default_importance,
        task_type=task_type,
        request_id=request_id,
        session=session_of(headers),
    )


def asks_usage_for(call: ChatCall, group: GroupSpec) -> bool:
    """Does the gateway ask the upstream for this stream's usage itself (`[groups.X]
    stream_usage`, and the client did not)? Then the relay drops that chunk again."""
    return call.stream and group.options.stream_usage and not wants_usage(call.body)


def features_of(call: ChatCall) -> Features:
    """What routing looks at in a request (computed over bounded text)."""
    return extract_features(
        call.body["messages"],
        tools_present=bool(call.body.get("tools")),
        importance=call.importance,
        task_type=call.task_type,
    )

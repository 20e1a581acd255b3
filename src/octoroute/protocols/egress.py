"""What a translated request becomes for the endpoints of one group.

    body, degraded = translated_body(openai_body, read_thinking(messages_request), options)

Translation at ingress knows nothing of the endpoint; a few things depend on what
the serving group's servers accept (`[groups.<name>]`): whether a system message
after the first turn may stay a system message (`late_system`) and which fields
carry the client's thinking request (`thinking_params`). Neither moves a message,
so the prompt prefix a server has cached stays the same from turn to turn.
"""

from __future__ import annotations

from typing import Any

from octoroute.config.models import GroupOptions
from octoroute.core.types import DegradationKind
from octoroute.protocols.thinking import ThinkingRequest, thinking_fields
from octoroute.protocols.translate_request import late_system_as_user


def translated_body(
    body: dict[str, Any], wanted: ThinkingRequest | None, options: GroupOptions
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """An Anthropic client's translated OpenAI body as `options`' group takes it, and the
    `DegradationKind` values of what changed (`body` itself is never modified)."""
    degraded: list[str] = []
    out = body
    if options.late_system == "user" and (notes := late_system_as_user(body.get("messages") or [])) is not None:
        out = {**out, "messages": notes}
        degraded.append(DegradationKind.SYSTEM_AS_USER.value)
    if fields := thinking_fields(wanted, options.thinking_params):
        out = {**out, **fields}
    elif wanted is not None and wanted.enabled:
        degraded.append(DegradationKind.THINKING.value)  # the group has no way to pass it on
    return out, tuple(degraded)

"""Extended thinking across translation: what an Anthropic client asked for, what an
OpenAI-compatible endpoint is told, and how its reasoning comes back.

    wanted = read_thinking(messages_request)          # None: the client did not ask
    body.update(thinking_fields(wanted, params))      # reasoning_effort / chat_template_kwargs
    text = reasoning_text(delta)                      # reasoning_content or reasoning, or None

Thinking models behind llama.cpp (`--reasoning-format`), vLLM (a reasoning parser)
and Ollama put their reasoning in a `reasoning_content` or `reasoning` field next
to `content`. An Anthropic client that asked for thinking
(`thinking: {type: "enabled", budget_tokens}` or `{type: "adaptive"}`) gets it
back as `thinking` blocks; one that did not gets none of it
(https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from octoroute.config.models import ThinkingParam
from octoroute.protocols.filters import REASONING_FIELDS

# A thinking block's signature is opaque to clients, which send it back unchanged with
# the block on the next turn (Anthropic's API checks its own). The gateway's carries the
# reasoning itself, so the next turn can give it back to the server as `reasoning_content`
# even when the client asked for the text to be omitted: chat templates that render an
# agent loop's earlier reasoning then see what the model wrote, and the prompt the server
# cached can match. Base64 only, not a secret: it is the client's own answer.
SIGNATURE_PREFIX: Final = "octoroute.reasoning."

# budget_tokens → reasoning_effort: Anthropic's minimum budget is 1,024 tokens; the
# buckets follow the effort levels OpenAI-compatible servers share (low, medium, high).
_EFFORT_BUCKETS: Final = ((4096, "low"), (16384, "medium"))
_EFFORTS: Final = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


@dataclass(frozen=True, slots=True)
class ThinkingRequest:
    """An Anthropic request's `thinking` (and, for adaptive thinking, `output_config.effort`)."""

    enabled: bool  # False: `type: "disabled"`
    show: bool = True  # False: `display: "omitted"` (blocks without their text)
    budget_tokens: int | None = None
    effort: str | None = None  # adaptive thinking's effort level


def read_thinking(request: Mapping[str, Any]) -> ThinkingRequest | None:
    """The thinking the client asked for; None when it sent no (readable) `thinking`."""
    thinking = request.get("thinking")
    if not isinstance(thinking, Mapping):
        return None
    kind = thinking.get("type")
    if kind == "disabled":
        return ThinkingRequest(enabled=False, show=False)
    if kind not in ("enabled", "adaptive"):
        return None
    show = thinking.get("display") != "omitted"
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else None
    config = request.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    return ThinkingRequest(True, show, budget, effort if isinstance(effort, str) else None)


def reasoning_effort_for(wanted: ThinkingRequest) -> str | None:
    """The `reasoning_effort` bucket of a thinking budget or an adaptive effort level."""
    if not wanted.enabled:
        return None
    if wanted.budget_tokens is not None:
        return next((name for limit, name in _EFFORT_BUCKETS if wanted.budget_tokens < limit), "high")
    return _EFFORTS.get(wanted.effort or "")


def thinking_fields(wanted: ThinkingRequest | None, params: Iterable[ThinkingParam]) -> dict[str, Any]:
    """The OpenAI body fields that carry the client's thinking request, for the
    parameters the endpoint's group understands; empty when there is nothing to say."""
    if wanted is None:
        return {}
    fields: dict[str, Any] = {}
    for param in params:
        if param is ThinkingParam.REASONING_EFFORT and (effort := reasoning_effort_for(wanted)) is not None:
            fields["reasoning_effort"] = effort
        elif param is ThinkingParam.CHAT_TEMPLATE_KWARGS:
            fields["chat_template_kwargs"] = {"enable_thinking": wanted.enabled}
    return fields


def signature_for(reasoning: str) -> str:
    """The signature of a thinking block holding `reasoning` (see SIGNATURE_PREFIX)."""
    return SIGNATURE_PREFIX + base64.urlsafe_b64encode(reasoning.encode()).decode()


def reasoning_of(block: Mapping[str, Any]) -> str | None:
    """The reasoning a thinking block from this gateway carries in its signature; None for
    any other block (Anthropic's own, redacted thinking, a damaged signature)."""
    signature = block.get("signature")
    if block.get("type") != "thinking" or not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return None
    try:
        return base64.b64decode(signature.removeprefix(SIGNATURE_PREFIX), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """The reasoning a message or delta carries (`reasoning_content`, else `reasoning`)."""
    for key in REASONING_FIELDS:
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None

"""Non-streamed response translation between OpenAI chat completions and Anthropic messages.

    message, lost = openai_to_anthropic_response(completion, model="claude-x", message_id="msg_1")
    completion, lost = anthropic_to_openai_response(message, model="gpt-x", created=1700000000)

Stop reasons (https://docs.anthropic.com/en/docs/build-with-claude/handling-stop-reasons):
`stop` -> `end_turn` (or `stop_sequence` when the upstream says which sequence
matched), `length` -> `max_tokens`, `tool_calls` -> `tool_use`,
`content_filter` -> `refusal` (Anthropic's own value for a classifier stop).
An answer that carries tool calls is `tool_use` whatever finish reason the
server gave (llama.cpp has been seen to say `stop`), since that is what
makes an agent run the tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.anthropic import ContentBlock, Message, StopReason, Usage
from octoroute.protocols.thinking import ThinkingRequest, reasoning_text, signature_for
from octoroute.protocols.translate_request_reverse import tool_use_blocks

_FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def matched_stop_sequence(choice: Mapping[str, Any], stop_sequences: Sequence[str]) -> str | None:
    """Which of the request's stop sequences ended the answer, when the server says.

    OpenAI does not report it; vLLM puts it in `choice.stop_reason`, SGLang in
    `choice.matched_stop`. Only a value that is one of the request's sequences
    counts (vLLM also reports stop token ids there).
    """
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, str) and value in stop_sequences:
            return value
    return None


def stop_reason_for(finish_reason: object, *, has_tool_use: bool, stop_sequence: str | None) -> StopReason:
    """The Anthropic stop_reason for an OpenAI finish_reason (unknown or missing -> end_turn)."""
    if stop_sequence is not None and finish_reason in ("stop", None):
        return "stop_sequence"
    reason = _FINISH_TO_STOP.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    if has_tool_use and reason in ("end_turn", "tool_use"):
        return "tool_use"
    return reason


def finish_reason_for(stop_reason: object) -> str:
    """The OpenAI finish_reason for an Anthropic stop_reason (unknown -> stop)."""
    return _STOP_TO_FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def anthropic_usage(usage: object) -> Usage:
    """OpenAI usage as Anthropic usage. OpenAI's prompt_tokens include cached
    tokens; Anthropic counts cache reads apart from input_tokens."""
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    prompt = _int(usage.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": min(cached, prompt),
    }


def default_message_id(openai_id: object) -> str:
    """A `msg_` id derived from the upstream's completion id (stable, so retries log alike)."""
    text = str(openai_id) if isinstance(openai_id, str) and openai_id else "octoroute"
    text = text.removeprefix("chatcmpl-")
    return "msg_" + "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def tool_use_id(call_id: object, message_id: str, position: int) -> str:
    """The upstream's tool-call id as given (llama.cpp's lack a `call_` prefix; that is fine),
    or a made-up one unique within the message when it sent none."""
    if isinstance(call_id, str) and call_id:
        return call_id
    return f"toolu_{message_id.removeprefix('msg_')}_{position}"


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def _content_blocks(
    message: Mapping[str, Any], message_id: str, lost: list[Degradation], thinking: ThinkingRequest | None
) -> tuple[list[ContentBlock], bool]:
    """A thinking block (when the client asked for thinking and the model reasoned),
    then text, then tool_use blocks; True when the model refused."""
    blocks: list[ContentBlock] = []
    if thinking is not None and thinking.enabled and (reasoning := reasoning_text(message)) is not None:
        shown = reasoning if thinking.show else ""
        blocks.append({"type": "thinking", "thinking": shown, "signature": signature_for(reasoning)})
    text = _message_text(message)
    refusal = message.get("refusal")
    refused = isinstance(refusal, str) and bool(refusal)
    if refused:
        text = f"{text}\n{refusal}" if text else str(refusal)
    if text:
        blocks.append({"type": "text", "text": text})
    blocks += tool_use_blocks(  # type: ignore[arg-type]  # the same tool_use shape in requests and answers
        message.get("tool_calls"),
        "choices[0].message.tool_calls",
        lost,
        lambda call_id, i: tool_use_id(call_id, message_id, i),
    )
    return blocks, refused


def openai_to_anthropic_response(
    response: Mapping[str, Any],
    *,
    model: str,
    message_id: str | None = None,
    stop_sequences: Sequence[str] = (),
    thinking: ThinkingRequest | None = None,
) -> tuple[Message, list[Degradation]]:
    """An OpenAI chat.completion as an Anthropic Message.

    `model` is the name the client asked for (not the upstream's). Tool-call
    arguments that are not a JSON object become `{}` and an
    INVALID_TOOL_ARGUMENTS degradation: the agent then reports a schema error
    for the missing parameters, which the model can correct, and no invented
    key ever reaches a tool. `stop_sequences` are the request's, used to
    report `stop_sequence` when the server names the one that matched.
    `thinking` is what the client asked for (`read_thinking`): the upstream's
    reasoning becomes a leading thinking block only then, and is dropped otherwise.
    """
    lost: list[Degradation] = []
    msg_id = message_id or default_message_id(response.get("id"))
    choices = response.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    if isinstance(choices, list) and len(choices) > 1:
        lost.append(Degradation(DegradationKind.EXTRA_CHOICES, "choices"))
    message = choice.get("message")
    blocks, refused = _content_blocks(message if isinstance(message, Mapping) else {}, msg_id, lost, thinking)
    matched = matched_stop_sequence(choice, stop_sequences)
    has_tools = any(b["type"] == "tool_use" for b in blocks)
    reason = stop_reason_for(choice.get("finish_reason"), has_tool_use=has_tools, stop_sequence=matched)
    if refused and reason == "end_turn":
        reason = "refusal"
    result: Message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": matched if reason == "stop_sequence" else None,
        "usage": anthropic_usage(response.get("usage")),
    }
    return result, lost


# ------------------------------------------------------------- Anthropic -> OpenAI


def openai_usage(usage: object) -> dict[str, Any]:
    """Anthropic usage as OpenAI usage: cache reads and writes are part of prompt_tokens."""
    usage = usage if isinstance(usage, Mapping) else {}
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cached + _int(usage.get("cache_creation_input_tokens"))
    completion = _int(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def openai_completion_id(message_id: object) -> str:
    text = message_id if isinstance(message_id, str) and message_id else "octoroute"
    return "chatcmpl-" + text.removeprefix("msg_")


def anthropic_to_openai_response(
    message: Mapping[str, Any], *, model: str, created: int
) -> tuple[dict[str, Any], list[Degradation]]:
    """An Anthropic Message as an OpenAI chat.completion.

    `created` is passed in (no clock here); `model` is the name the client asked
    for. Thinking blocks have no OpenAI form and are dropped and reported.
    """
    lost: list[Degradation] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    content = message.get("content")
    for i, block in enumerate(content if isinstance(content, list) else []):
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), Mapping) else {}).decode()
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {"name": str(block.get("name", "")), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            lost.append(Degradation(DegradationKind.THINKING_BLOCK, f"content[{i}]"))
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_BLOCK, f"content[{i}]"))
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    completion = {
        "id": openai_completion_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason_for(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(message.get("usage")),
    }
    return completion, lost

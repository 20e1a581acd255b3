"""Recognising an upstream's "the request does not fit my context window" error.

Each server says it its own way; the sizes are read where the body gives them:

- llama.cpp (400): `{"error": {"type": "exceed_context_size_error",
  "n_prompt_tokens": 24046, "n_ctx": 2048, ...}}`.
- vLLM (400): "This model's maximum context length is 2048 tokens. However, you
  requested 3000 tokens (2900 in the messages, 100 in the completion)...", or
  "...However, your prompt contains 36107 characters...", or
  "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's
  maximum context length is 4096 tokens and your request has 2778 input tokens",
  or "max_tokens=100000 cannot be greater than max_model_len=2048".
- OpenAI (400): code `context_length_exceeded`, the same "maximum context
  length is N tokens. However, your messages resulted in M tokens" wording.
- Anthropic (400): "prompt is too long: 208541 tokens > 200000 maximum".
- Ollama truncates an over-long prompt instead of failing; the error it does
  send ("the input length exceeds the context length") is recognised, without
  sizes.

    overflow = read_overflow(400, body)   # Overflow(prompt_tokens=24046, window=2048) or None
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

_STATUSES: Final = frozenset({400, 413, 422})
_LLAMA_TYPE: Final = "exceed_context_size_error"
_OPENAI_CODE: Final = "context_length_exceeded"

_WINDOW: Final = re.compile(r"maximum context length (?:is|of) (\d+)", re.I)
_VLLM_REQUESTED: Final = re.compile(r"you requested (\d+) tokens \((\d+) in the messages", re.I)
_VLLM_INPUT: Final = re.compile(r"(?:request has|messages resulted in|prompt contains) (\d+) (?:input )?tokens", re.I)
_VLLM_MAX_MODEL_LEN: Final = re.compile(r"greater than max_model_len=(\d+)", re.I)
_ANTHROPIC: Final = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum", re.I)
_LLAMA_TEXT: Final = re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)", re.I)
_WORDINGS: Final = (
    "maximum context length",
    "context length exceeded",
    "exceeds the context length",
    "exceeds the available context size",
    "input length exceeds",
    "prompt is too long",
    "cannot be greater than max_model_len",
)


@dataclass(frozen=True, slots=True)
class Overflow:
    """A context-overflow answer; the sizes it stated, None where it did not."""

    prompt_tokens: int | None
    window: int | None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _first(pattern: re.Pattern[str], text: str, group: int = 1) -> int | None:
    match = pattern.search(text)
    return int(match.group(group)) if match else None


def _error_object(body: bytes) -> dict[str, object]:
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {"message": body[:4096].decode("utf-8", "replace")}
    inner = value.get("error") if isinstance(value, dict) else None
    if isinstance(inner, str):
        return {"message": inner}
    if isinstance(inner, dict):
        return inner
    return {"message": value.get("message")} if isinstance(value, dict) else {}


def read_overflow(status: int, body: bytes) -> Overflow | None:
    """The overflow an upstream error answer describes, or None when it is some other error."""
    if status not in _STATUSES or not body:
        return None
    error = _error_object(body)
    message = error.get("message")
    text = message if isinstance(message, str) else ""
    if error.get("type") == _LLAMA_TYPE:
        return Overflow(_int(error.get("n_prompt_tokens")), _int(error.get("n_ctx")))
    lowered = text.lower()
    if error.get("code") != _OPENAI_CODE and not any(w in lowered for w in _WORDINGS):
        return None
    if (match := _ANTHROPIC.search(text)) is not None:
        return Overflow(int(match.group(1)), int(match.group(2)))
    if (match := _LLAMA_TEXT.search(text)) is not None:
        return Overflow(int(match.group(1)), int(match.group(2)))
    window = _first(_WINDOW, text) or _first(_VLLM_MAX_MODEL_LEN, text)
    prompt = _first(_VLLM_REQUESTED, text, 2) or _first(_VLLM_INPUT, text)
    return Overflow(prompt, window)

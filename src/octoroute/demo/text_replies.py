"""What a simulated upstream answers on its embeddings and completions APIs (pure
functions, no server): OpenAI's /v1/embeddings and /v1/completions (as vLLM,
llama.cpp and Ollama's compatibility layer answer them), Ollama's native
/api/embed and /api/embeddings, and llama.cpp's /infill.

Vectors are a deterministic function of the input and the server's label, so a
test can check every item's order and which server made it (`vector_of`).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

DIMENSIONS = 8


def vector_of(item: str | Sequence[int], label: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The embedding a simulated server labelled `label` gives `item` (text or token ids):
    values in [-1, 1) from a hash, exact in float32."""
    text = item if isinstance(item, str) else " ".join(str(t) for t in item)
    digest = hashlib.shake_256(f"{label}\x00{text}".encode()).digest(2 * dimensions)
    return [(int.from_bytes(digest[2 * i : 2 * i + 2], "big") - 32768) / 32768 for i in range(dimensions)]


def items_of(value: object) -> list[str | list[int]] | None:
    """The inputs of an embeddings request, one per vector to return; None when malformed."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [list(value)]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
            return [list(v) for v in value]
    return None


def _tokens(items: Sequence[str | Sequence[int]]) -> int:
    return sum(len(i.split()) if isinstance(i, str) else len(i) for i in items)


def openai_embeddings(body: Mapping[str, Any], label: str) -> bytes | None:
    """An OpenAI-compatible server's embeddings list, floats or base64; None: bad request."""
    items = items_of(body.get("input"))
    if items is None:
        return None
    dimensions = body.get("dimensions")
    dims = dimensions if isinstance(dimensions, int) and dimensions > 0 else DIMENSIONS
    data = []
    for i, item in enumerate(items):
        vector = vector_of(item, label, dims)
        encoded: object = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = _tokens(items)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return orjson.dumps({"object": "list", "data": data, "model": body.get("model", label), "usage": usage})


def ollama_embed(body: Mapping[str, Any], label: str) -> bytes | None:
    """Ollama's /api/embed answer (text input only, as Ollama); None: bad request."""
    value = body.get("input")
    items = items_of(value)
    if items is None or not all(isinstance(i, str) for i in items):
        return None
    dimensions = body.get("dimensions")
    dims = dimensions if isinstance(dimensions, int) and dimensions > 0 else DIMENSIONS
    return orjson.dumps(
        {
            "model": body.get("model", label),
            "embeddings": [vector_of(i, label, dims) for i in items],
            "total_duration": 14_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": _tokens(items),
        }
    )


def completion_text(prompt: str, suffix: str | None, label: str) -> str:
    """What the simulated server writes: its label, the prompt's last word, and whether
    it saw a suffix (so a test can tell a FIM request arrived with its suffix)."""
    words = prompt.split()
    last = words[-1] if words else ""
    middle = f" <fim suffix={len(suffix)}>" if suffix else ""
    return f" {label} continues {last}{middle}"


def _prompts(body: Mapping[str, Any]) -> list[str] | None:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    items = items_of(prompt)
    return None if items is None else [" ".join(map(str, i)) if not isinstance(i, str) else i for i in items]


def completions(body: Mapping[str, Any], label: str, completion_id: str, created: int) -> list[bytes] | None:
    """An OpenAI-compatible /v1/completions answer: one JSON body, or (stream) its SSE
    events ending with `[DONE]`, a usage chunk first when asked. None: bad request."""
    prompts = _prompts(body)
    if prompts is None:
        return None
    suffix = body.get("suffix") if isinstance(body.get("suffix"), str) else None
    texts = [completion_text(p, suffix, label) for p in prompts]
    head = {"id": completion_id, "object": "text_completion", "created": created, "model": body.get("model", label)}
    prompt_tokens = sum(len(p.split()) for p in prompts)
    output = sum(len(t.split()) for t in texts)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": output, "total_tokens": prompt_tokens + output}
    if body.get("stream") is not True:
        choices = [{"text": t, "index": i, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts)]
        return [orjson.dumps({**head, "choices": choices, "usage": usage})]
    events: list[bytes] = []
    for i, text in enumerate(texts):
        for word in text.split(" ")[1:]:
            choice = {"text": " " + word, "index": i, "logprobs": None, "finish_reason": None}
            events.append(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        last = {"text": "", "index": i, "logprobs": None, "finish_reason": "stop"}
        events.append(b"data: " + orjson.dumps({**head, "choices": [last]}) + b"\n\n")
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def infill(body: Mapping[str, Any], label: str) -> list[bytes] | None:
    """llama.cpp's /infill answer: {content, stop, stop_type, tokens_*}, or (stream) its
    native SSE events (no `[DONE]`; the last has `"stop": true`). None: bad request."""
    prefix, suffix = body.get("input_prefix"), body.get("input_suffix")
    if not isinstance(prefix, str) or not isinstance(suffix, str):
        return None
    text = completion_text(prefix, suffix, label)
    limit = body.get("n_predict")
    words = text.split(" ")[1:]
    stop_type = "eos"
    if isinstance(limit, int) and 0 <= limit < len(words):
        words, stop_type = words[:limit], "limit"
    content = "".join(" " + w for w in words)
    final = {
        "content": "" if body.get("stream") is True else content,
        "stop": True,
        "stop_type": stop_type,
        "tokens_evaluated": len(prefix.split()) + len(suffix.split()),
        "tokens_predicted": len(words),
        "model": label,
    }
    if body.get("stream") is not True:
        return [orjson.dumps(final)]
    events = [b"data: " + orjson.dumps({"content": " " + w, "stop": False}) + b"\n\n" for w in words]
    return [*events, b"data: " + orjson.dumps(final) + b"\n\n"]

"""Embeddings wire shapes, sans I/O: OpenAI's `POST /v1/embeddings`
(https://platform.openai.com/docs/api-reference/embeddings, `CreateEmbeddingRequest` /
`CreateEmbeddingResponse` in ../shared/spec/openapi.yaml) and Ollama's
`POST /api/embed` and legacy `POST /api/embeddings`
(https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings).

The gateway's internal form is the OpenAI request. An Ollama-native endpoint gets
it as an `/api/embed` request and its answer is turned back into OpenAI's shape
(`from_ollama_embed`); an Ollama client's request is turned into the OpenAI form at
ingress (`ollama_embed_request`) and the answer into Ollama's at egress
(`to_ollama_embed`). Order is kept everywhere: item `index` i answers input i.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

ENCODINGS = ("float", "base64")


class EmbeddingItem(TypedDict):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


def _is_token_ids(value: object) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def token_ids_input(value: object) -> bool:
    """Whether an embeddings `input` (or a completions `prompt`) is token ids: an array
    of integers, or an array of such arrays."""
    if _is_token_ids(value):
        return True
    return isinstance(value, list) and bool(value) and all(_is_token_ids(item) for item in value)


def check_embeddings_body(body: Mapping[str, object]) -> tuple[str, str] | None:
    """(param, message) for what the gateway cannot route or translate, else None.
    Only what it relies on; the upstream judges the rest."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        return "model", "'model' must be a string"
    value = body.get("input")
    text_list = isinstance(value, list) and bool(value) and all(isinstance(item, str) for item in value)
    if not (isinstance(value, str) or text_list or token_ids_input(value)):
        return (
            "input",
            "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays",
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        return "encoding_format", "'encoding_format' must be 'float' or 'base64'"
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        return "dimensions", "'dimensions' must be a positive integer"
    if body.get("stream") not in (None, False):
        return "stream", "embeddings are never streamed; leave 'stream' out"
    return None


def encode_vector(vector: Sequence[float]) -> str:
    """A vector as OpenAI's `encoding_format: "base64"` sends it: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_vector(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def to_ollama_embed(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI embeddings request (text input) as Ollama's /api/embed request."""
    out: dict[str, Any] = {"model": model, "input": body["input"]}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return out


def _vectors(payload: Mapping[str, object]) -> list[list[float]] | None:
    vectors = payload.get("embeddings")
    if not isinstance(vectors, list) or not all(
        isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v) for v in vectors
    ):
        return None
    return [[float(x) for x in v] for v in vectors]


def from_ollama_embed(payload: Mapping[str, object], model: str, encoding: str | None) -> EmbeddingList | None:
    """Ollama's /api/embed answer as OpenAI's embeddings list, or None when it is not one."""
    vectors = _vectors(payload)
    if vectors is None:
        return None
    count = payload.get("prompt_eval_count")
    tokens = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0
    data: list[EmbeddingItem] = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def openai_vectors(payload: Mapping[str, object]) -> list[list[float]] | None:
    """The vectors of an OpenAI embeddings list in input order (by `index`), floats
    whatever the encoding; None when the answer is not one."""
    data = payload.get("data")
    if not isinstance(data, list):
        return None
    found: dict[int, list[float]] = {}
    for item in data:
        if not isinstance(item, Mapping) or not isinstance(item.get("index"), int):
            return None
        vector = item.get("embedding")
        if isinstance(vector, str):
            try:
                found[item["index"]] = decode_vector(vector)
            except (ValueError, struct.error):
                return None
        elif isinstance(vector, list) and all(isinstance(x, int | float) for x in vector):
            found[item["index"]] = [float(x) for x in vector]
        else:
            return None
    if sorted(found) != list(range(len(found))):
        return None
    return [found[i] for i in range(len(found))]


# -- Ollama clients ----------------------------------------------------------


def ollama_embed_request(body: Mapping[str, object], legacy: bool) -> dict[str, Any]:
    """An Ollama client's /api/embed (or legacy /api/embeddings, `prompt`) request as the
    OpenAI embeddings request the gateway routes; raises ValueError for what it cannot read."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model is required")
    text = body.get("prompt") if legacy else body.get("input")
    if legacy:
        if not isinstance(text, str):
            raise ValueError("prompt must be a string")
    elif not (isinstance(text, str) or (isinstance(text, list) and text and all(isinstance(t, str) for t in text))):
        raise ValueError("input must be a string or a non-empty array of strings")
    out: dict[str, Any] = {"model": model, "input": text, "encoding_format": "float"}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        out["dimensions"] = dimensions
    return out


def to_ollama_embed_reply(
    vectors: list[list[float]], model: str, prompt_tokens: int | None, total_ns: int
) -> dict[str, Any]:
    """Ollama's /api/embed answer."""
    return {
        "model": model,
        "embeddings": vectors,
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_count": prompt_tokens or 0,
    }


def usage_tokens(payload: Mapping[str, object]) -> int | None:
    usage = payload.get("usage")
    if isinstance(usage, Mapping):
        tokens = usage.get("prompt_tokens")
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            return tokens
    return None

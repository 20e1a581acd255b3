"""Asking an endpoint's server how large its context window is and how many
requests it runs at once.

Three servers say so, each in its own place; they are asked in this order and
the first that answers with a size wins:

- vLLM: `GET {base_url}/models`, the entry's `max_model_len` (prompt + output).
- llama.cpp: `GET /props` at the server root, `default_generation_settings.n_ctx`
  (the context of one slot: what one request may use) and `total_slots`.
- Ollama: `POST /api/show {"model": name}`. Ollama serves with its runtime
  `num_ctx`, not the model's trained length, and silently cuts prompts longer
  than that (keeping the end). So a `num_ctx` in the model's `parameters` is
  trusted; without one the window is the smaller of
  `model_info["<arch>.context_length"]` and `OLLAMA_DEFAULT_NUM_CTX` (Ollama's
  documented default on machines under 24 GiB of VRAM). An Ollama started with
  `OLLAMA_CONTEXT_LENGTH` does not say so here: set `context_window` in config.

The parsers are pure functions of the decoded JSON; `discover` does the I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import orjson

from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import UpstreamError
from octoroute.core.facts import FactSource, ServerFacts
from octoroute.core.types import Api
from octoroute.upstream.client import UpstreamPool

OLLAMA_DEFAULT_NUM_CTX: Final = 4096


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def facts_from_props(payload: object) -> ServerFacts | None:
    """llama.cpp's `/props` answer."""
    if not isinstance(payload, dict):
        return None
    settings = payload.get("default_generation_settings")
    window = _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
    slots = _positive(payload.get("total_slots"))
    if window is None and slots is None:
        return None
    return ServerFacts(FactSource.LLAMA_PROPS, context_window=window, total_slots=slots)


def facts_from_models(payload: object, model: str) -> ServerFacts | None:
    """vLLM's `/v1/models` answer: the entry named `model` (or the only entry)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, dict)]
    named = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    window = _positive(named[0].get("max_model_len")) if named else None
    return None if window is None else ServerFacts(FactSource.VLLM_MODELS, context_window=window)


def _num_ctx(parameters: object) -> int | None:
    """`num_ctx` from Ollama's `parameters`, a text of "name value" lines."""
    if not isinstance(parameters, str):
        return None
    for line in parameters.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "num_ctx" and parts[1].isdigit():
            return _positive(int(parts[1]))
    return None


def facts_from_show(payload: object) -> ServerFacts | None:
    """Ollama's `/api/show` answer (see the module docstring for which size is trusted)."""
    if not isinstance(payload, dict):
        return None
    configured = _num_ctx(payload.get("parameters"))
    if configured is not None:
        return ServerFacts(FactSource.OLLAMA_SHOW, context_window=configured)
    info = payload.get("model_info")
    trained = (
        next((_positive(v) for k, v in info.items() if k.endswith(".context_length") and _positive(v)), None)
        if isinstance(info, dict)
        else None
    )
    if trained is None:
        return None
    return ServerFacts(FactSource.OLLAMA_SHOW, context_window=min(trained, OLLAMA_DEFAULT_NUM_CTX))


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one discovery found; `reached` is False when the server could not be
    asked at all (down, timed out), so it is worth asking again later."""

    facts: ServerFacts | None
    reached: bool


Ask = Callable[[UpstreamPool, EndpointSpec, float], Awaitable[ServerFacts | None]]


async def _ask_vllm(pool: UpstreamPool, ep: EndpointSpec, limit: float) -> ServerFacts | None:
    status, payload = await pool.fetch_json(ep, "GET", _base_path(ep, "/models"), b"", limit)
    return facts_from_models(payload, ep.name) if status == 200 else None


async def _ask_llama(pool: UpstreamPool, ep: EndpointSpec, limit: float) -> ServerFacts | None:
    status, payload = await pool.fetch_json(ep, "GET", "/props", b"", limit)
    return facts_from_props(payload) if status == 200 else None


async def _ask_ollama(pool: UpstreamPool, ep: EndpointSpec, limit: float) -> ServerFacts | None:
    status, payload = await pool.fetch_json(ep, "POST", "/api/show", orjson.dumps({"model": ep.name}), limit)
    return facts_from_show(payload) if status == 200 else None


def _base_path(ep: EndpointSpec, path: str) -> str:
    """`path` under base_url's own path, for `fetch_json` (which starts at the server root)."""
    return ("/v1" if ep.base_url.endswith("/v1") else "") + path


ASKS: Final[dict[FactSource, Ask]] = {
    FactSource.VLLM_MODELS: _ask_vllm,
    FactSource.LLAMA_PROPS: _ask_llama,
    FactSource.OLLAMA_SHOW: _ask_ollama,
}


async def discover(
    pool: UpstreamPool, ep: EndpointSpec, limit_seconds: float, known: FactSource | None = None
) -> Discovery:
    """Ask the endpoint's server for its facts within `limit_seconds` in all: only the
    `known` source when one answered before, else each in turn until one answers."""
    if ep.kind is Api.ANTHROPIC:
        return Discovery(None, True)
    sources = [known] if known is not None and known in ASKS else list(ASKS)
    try:
        async with asyncio.timeout(limit_seconds):
            for source in sources:
                facts = await ASKS[source](pool, ep, limit_seconds)
                if facts is not None:
                    return Discovery(facts, True)
    except (UpstreamError, TimeoutError):
        return Discovery(None, False)
    return Discovery(None, True)

"""Examining one endpoint live, for `octoroute doctor`: what its server answers,
not what the config says it should.

In order: the model listing at `{base_url}/models` (and, when that fails, at the
base URLs a user most likely meant: with `/v1` added, or the server root plus
`/v1`), the server's own listing (Ollama's `/api/tags`), what kind of server it
is, its context window and slots (`discovery.discover`), then three tiny
requests: a chat, the same chat streamed to its end, and a forced tool call
(one tool, `tool_choice: "required"`; Anthropic: `{"type": "any"}`).

`examine` only observes and returns a `Checkup`; judging it and saying how to
fix it is the CLI's job (`cli/doctor.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from octoroute.config.topology import EndpointSpec, ResolvedTimeouts
from octoroute.core.errors import UpstreamError, UpstreamStatusError
from octoroute.core.facts import ServerFacts
from octoroute.core.types import Api
from octoroute.upstream.client import UpstreamPool
from octoroute.upstream.discovery import discover

TOOL_NAME: Final = "octoroute_check"
PROMPT: Final = "Reply with the word OK."
_TOOL_PARAMETERS: Final = {
    "type": "object",
    "properties": {"word": {"type": "string"}},
    "required": ["word"],
}


@dataclass(frozen=True, slots=True)
class Tried:
    """The outcome of one tiny request."""

    ok: bool
    detail: str
    latency_ms: float | None = None
    status: int | None = None  # the HTTP status of a refused request


@dataclass(frozen=True, slots=True)
class Checkup:
    """Everything `examine` saw of one endpoint."""

    endpoint: EndpointSpec
    reached: bool
    error: str | None  # why the server could not be reached, or why its listing failed
    listing_status: int | None  # the status of GET {base_url}/models
    working_base_url: str | None  # a base URL whose /models answered 200 (the configured one when right)
    models: tuple[str, ...]  # what the server lists: /v1/models ids, then Ollama's tags
    server: str  # "llama.cpp", "Ollama", "vLLM", or "" when unknown
    refused: bool  # the listing or a chat answered 401/403
    facts: ServerFacts | None
    listing_ms: float | None
    chat: Tried | None
    stream: Tried | None
    tools: Tried | None


def _spec(ep: EndpointSpec, base_url: str, limit: float) -> EndpointSpec:
    timeouts = ResolvedTimeouts(connect=min(limit, 5.0), first_byte=limit, total=limit, idle=limit)
    return dataclasses.replace(ep, base_url=base_url, timeouts=timeouts)


def candidate_base_urls(base_url: str) -> list[str]:
    """The configured base URL, then the ones a user most likely meant."""
    parts = urlsplit(base_url)
    root = f"{parts.scheme}://{parts.netloc}"
    out = [base_url]
    for guess in (base_url + "/v1", root + "/v1"):
        if not base_url.endswith("/v1") and guess not in out:
            out.append(guess)
    return out


async def _listing(ep: EndpointSpec, limit: float) -> tuple[int, object, float]:
    pool = UpstreamPool([ep])
    await pool.start()
    try:
        started = time.perf_counter()
        path = ("/v1" if ep.base_url.endswith("/v1") else "") + "/models"
        status, payload = await pool.fetch_json(ep, "GET", path, b"", limit)
        return status, payload, (time.perf_counter() - started) * 1000
    finally:
        await pool.close()


def listed_ids(payload: object) -> tuple[str, ...]:
    """Model ids of an OpenAI-style listing (`data[].id`)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return ()
    return tuple(e["id"] for e in data if isinstance(e, dict) and isinstance(e.get("id"), str))


def ollama_names(payload: object) -> tuple[str, ...]:
    """Model names of Ollama's `/api/tags` (`models[].name`)."""
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list):
        return ()
    return tuple(m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str))


def _owned_by_vllm(payload: object) -> bool:
    data = payload.get("data") if isinstance(payload, dict) else None
    return isinstance(data, list) and any(isinstance(e, dict) and e.get("owned_by") == "vllm" for e in data)


async def examine(ep: EndpointSpec, limit_seconds: float) -> Checkup:
    """Look at one endpoint within `limit_seconds` per request."""
    configured = _spec(ep, ep.base_url, limit_seconds)
    if ep.kind is Api.ANTHROPIC:
        return await _examine_anthropic(configured, limit_seconds)
    working: str | None = None
    first_status: int | None = None
    payload: object = None
    listing_ms: float | None = None
    try:
        for i, base in enumerate(candidate_base_urls(ep.base_url)):
            status, answer, elapsed = await _listing(_spec(ep, base, limit_seconds), limit_seconds)
            if i == 0:
                first_status, listing_ms = status, elapsed
            if status == 200 and listed_ids(answer):
                working, payload = base, answer
                break
            if status in (401, 403):
                break
    except UpstreamError as error:
        if first_status is None:  # not even the configured URL answered
            return Checkup(ep, False, error.message, None, None, (), "", False, None, None, None, None, None)
    spec = _spec(ep, working or ep.base_url, limit_seconds)
    pool = UpstreamPool([spec])
    await pool.start()
    try:
        return await _examine_openai(ep, spec, pool, first_status, working, payload, listing_ms, limit_seconds)
    finally:
        await pool.close()


async def _examine_openai(
    ep: EndpointSpec,
    spec: EndpointSpec,
    pool: UpstreamPool,
    first_status: int | None,
    working: str | None,
    listing: object,
    listing_ms: float | None,
    limit: float,
) -> Checkup:
    models = listed_ids(listing)
    server = "vLLM" if _owned_by_vllm(listing) else ""
    try:
        status, tags = await pool.fetch_json(spec, "GET", "/api/tags", b"", limit)
        if status == 200 and ollama_names(tags):
            server = "Ollama"
            models += tuple(n for n in ollama_names(tags) if n not in models)
        if not server:
            status, props = await pool.fetch_json(spec, "GET", "/props", b"", limit)
            if status == 200 and isinstance(props, dict) and "default_generation_settings" in props:
                server = "llama.cpp"
    except UpstreamError:
        pass
    found = await discover(pool, spec, limit)
    chat = await _chat(pool, spec, _openai_body(spec, stream=False, tools=False), _openai_answered)
    stream = await _stream(pool, spec, _openai_body(spec, stream=True, tools=False))
    tools = await _chat(pool, spec, _openai_body(spec, stream=False, tools=True), _openai_tool_call)
    refused = first_status in (401, 403) or any(t.status in (401, 403) for t in (chat, stream, tools))
    error = None if first_status == 200 else f"GET {ep.base_url}/models answered HTTP {first_status}"
    return Checkup(
        ep, True, error, first_status, working, models, server, refused, found.facts, listing_ms, chat, stream, tools
    )


async def _examine_anthropic(spec: EndpointSpec, limit: float) -> Checkup:
    pool = UpstreamPool([spec])
    await pool.start()
    try:
        try:
            started = time.perf_counter()
            await pool.probe(spec, limit)
            status: int | None = 200
        except UpstreamStatusError as error:
            status = error.status
        except UpstreamError as error:
            return Checkup(spec, False, error.message, None, None, (), "", False, None, None, None, None, None)
        listing_ms = (time.perf_counter() - started) * 1000
        chat = await _chat(pool, spec, _anthropic_body(spec, stream=False, tools=False), _anthropic_answered)
        stream = await _stream(pool, spec, _anthropic_body(spec, stream=True, tools=False))
        tools = await _chat(pool, spec, _anthropic_body(spec, stream=False, tools=True), _anthropic_tool_use)
    finally:
        await pool.close()
    refused = status in (401, 403) or any(t.status in (401, 403) for t in (chat, stream, tools))
    working = spec.base_url if status == 200 else None
    return Checkup(spec, True, None, status, working, (), "Anthropic", refused, None, listing_ms, chat, stream, tools)


def _openai_body(ep: EndpointSpec, *, stream: bool, tools: bool) -> bytes:
    body: dict[str, Any] = {
        "model": ep.name,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64 if tools else 8,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    if tools:
        function = {"name": TOOL_NAME, "description": "Say a word.", "parameters": _TOOL_PARAMETERS}
        body["tools"] = [{"type": "function", "function": function}]
        body["tool_choice"] = "required"
    return orjson.dumps(body)


def _anthropic_body(ep: EndpointSpec, *, stream: bool, tools: bool) -> bytes:
    body: dict[str, Any] = {
        "model": ep.name,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64 if tools else 8,
    }
    if stream:
        body["stream"] = True
    if tools:
        body["tools"] = [{"name": TOOL_NAME, "description": "Say a word.", "input_schema": _TOOL_PARAMETERS}]
        body["tool_choice"] = {"type": "any"}
    return orjson.dumps(body)


def _openai_answered(payload: dict[str, Any]) -> str | None:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "the answer has no choices"
    if not isinstance(choices[0].get("message"), dict):
        return "the answer's choice has no message"
    return None


def _anthropic_answered(payload: dict[str, Any]) -> str | None:
    return None if isinstance(payload.get("content"), list) else "the answer has no content blocks"


def _openai_tool_call(payload: dict[str, Any]) -> str | None:
    problem = _openai_answered(payload)
    if problem is not None:
        return problem
    calls = payload["choices"][0]["message"].get("tool_calls")
    if not isinstance(calls, list) or not calls or not isinstance(calls[0], dict):
        return "answered without a tool call although one was required"
    function = calls[0].get("function")
    if not isinstance(function, dict) or function.get("name") != TOOL_NAME:
        return f"called a tool other than {TOOL_NAME}"
    return _json_object_problem(function.get("arguments"))


def _anthropic_tool_use(payload: dict[str, Any]) -> str | None:
    blocks = payload.get("content")
    uses = (
        [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"] if isinstance(blocks, list) else []
    )
    if not uses:
        return "answered without a tool_use block although one was required"
    return None if isinstance(uses[0].get("input"), dict) else "the tool_use input is not an object"


def _json_object_problem(arguments: object) -> str | None:
    try:
        decoded = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        decoded = None
    return None if isinstance(decoded, dict) else f"the tool call's arguments are not a JSON object: {arguments!r:.80}"


def _failed(error: UpstreamError) -> Tried:
    status = error.status if isinstance(error, UpstreamStatusError) else None
    return Tried(False, error.message, status=status)


async def _chat(
    pool: UpstreamPool, ep: EndpointSpec, body: bytes, judge: Callable[[dict[str, Any]], str | None]
) -> Tried:
    try:
        reply = await pool.complete(ep, body, {})
    except UpstreamError as error:
        return _failed(error)
    problem = judge(reply.payload)
    if problem is not None:
        return Tried(False, problem, reply.latency_ms)
    return Tried(True, f"answered in {reply.latency_ms:.0f} ms", reply.latency_ms)


async def _stream(pool: UpstreamPool, ep: EndpointSpec, body: bytes) -> Tried:
    started = time.perf_counter()
    try:
        stream = await pool.open_stream(ep, body, {})
        first_ms = stream.first_byte_ms
        async for _events in stream.rest():
            pass
    except UpstreamError as error:
        return _failed(error)
    if stream.whole:
        return Tried(False, "answered a stream request with one JSON body, not server-sent events")
    total = (time.perf_counter() - started) * 1000
    return Tried(True, f"first event {first_ms:.0f} ms, whole stream {total:.0f} ms", first_ms)


async def examine_all(endpoints: list[EndpointSpec], limit_seconds: float) -> list[Checkup]:
    """`examine` every endpoint at once, in the given order."""
    return list(await asyncio.gather(*(examine(ep, limit_seconds) for ep in endpoints)))

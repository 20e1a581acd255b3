"""Ollama's native API on octoroute's port, for Open WebUI, Continue, the `ollama`
Python client and scripts written against a local Ollama.

`/api/chat` and `/api/generate` translate at the edges only (`protocols.ollama`):
the body becomes an OpenAI chat body, goes through the same decide → attempt
loop → commit point as `/v1/chat/completions`, and the answer or stream comes back
as Ollama's JSON or NDJSON. `/api/tags`, `/api/show`, `/api/ps` and `/api/version`
describe octoroute's model names (`auto`, groups, endpoint ids, exact aliases) in
Ollama's terms. Errors are `{"error": "..."}` with the right status
(`server.middleware.render_error`). https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from octoroute import __version__
from octoroute.core.errors import InvalidRequest, ModelNotFound
from octoroute.core.types import Api, Degradation, Operation
from octoroute.fleet.capabilities import Capabilities
from octoroute.observe.metrics import Recorder
from octoroute.protocols import ollama
from octoroute.protocols.completions import InfillStream
from octoroute.protocols.ollama import CHAT, GENERATE, Endpoint, OllamaStream, Timings
from octoroute.protocols.postprocess import PostProcess
from octoroute.protocols.sse import UnreadableEvent, iter_data
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream
from octoroute.server.anthropic_api import as_chunk_events
from octoroute.server.completions_api import decode_completions
from octoroute.server.handlers import decision_headers, degraded_of, note_reply, read_json, relay, serve_call
from octoroute.server.state import CLIENT, LIVE, REQUEST_ID, TRACE
from octoroute.service import AUTO, INFILL_PATH, Gateway, Outcome, decode_chat, openai_payload, upstream_path

# The Ollama API level these routes follow (think, streamed tool calls, capabilities in
# /api/show); clients that gate features on the server's version read this one.
OLLAMA_API_VERSION: Final = "0.9.0"
NDJSON: Final = "application/x-ndjson"
_FOREVER: Final = "9999-12-31T23:59:59Z"  # /api/ps: octoroute never unloads a model
_NS: Final = 1_000_000_000


def _now() -> str:
    """Ollama's `created_at`: RFC 3339 in UTC with a `Z`."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _name_of(body: dict[str, Any]) -> str:
    model = body.get("model") or body.get("name")  # /api/show's older clients send `name`
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string: a name listed by GET /api/tags", param="model")
    return model


def routable_name(gw: Gateway, name: str) -> str:
    """The octoroute model name an Ollama name means: itself when it resolves (a group,
    an endpoint id, `auto`, an alias), else itself without `:latest`."""
    try:
        gw.resolve_model(name)
        return name
    except ModelNotFound:
        bare = ollama.untagged(name)
        if bare is None:
            raise
        try:
            gw.resolve_model(bare)
        except ModelNotFound:
            raise ModelNotFound(
                f"model '{name}' not found; GET /api/tags lists the names this gateway serves", param="model"
            ) from None
        return bare


def _degraded_header(lost: Iterable[Degradation], outcome: Outcome) -> dict[str, str]:
    kinds = sorted({d.kind.value for d in lost} | set(outcome.degraded))
    return {"X-Octoroute-Degraded": ",".join(kinds)} if kinds else {}


class OllamaConverter:
    """Upstream SSE (OpenAI chunks, or an Anthropic-native endpoint's events) in, NDJSON out."""

    content_type: str | None = NDJSON

    def __init__(
        self,
        translator: OllamaStream,
        post: PostProcess | None,
        native: AnthropicToOpenAIStream | None,
        timings: Callable[[], Timings],
        metrics: Recorder,
        before: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.route = f"/api/{translator.endpoint.value}"
        self._translator = translator
        self._post = post
        self._native = native
        self._timings = timings
        self._metrics = metrics
        self._before = before  # the upstream's events into OpenAI SSE first (llama.cpp's /infill)
        self._failed = False

    def _chunks(self, events: bytes) -> list[dict[str, Any]] | str:
        """The OpenAI chunks in `events`, or the error message that ends the stream;
        `UnreadableEvent` with the lines of the chunks before an event that is not JSON."""
        if self._native is None:  # an upstream that ignored `stream: true` sent one whole answer
            events = as_chunk_events(events)
        chunks: list[dict[str, Any]] = []
        for data in iter_data(events):
            if data.strip() == b"[DONE]":
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UnreadableEvent(self._lines(chunks)) from exc
            if not isinstance(event, dict):
                continue
            if self._native is not None:
                if event.get("type") == "error":
                    error = event.get("error")
                    message = error.get("message") if isinstance(error, dict) else None
                    return f"upstream stream failed: {message or 'error event'}"
                chunks += self._native.feed(event)
            elif "error" in event and "choices" not in event:
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else error
                return f"upstream stream failed: {message}"
            else:
                chunks += [event] if self._post is None else self._post.chunk(event)
        return chunks

    def _lines(self, chunks: Iterable[dict[str, Any]]) -> bytes:
        created_at = _now()
        objects = [o for c in chunks for o in self._translator.feed(c, created_at)]
        return b"".join(orjson.dumps(o) + b"\n" for o in objects)

    def convert(self, events: bytes) -> bytes:
        if self._failed:
            return b""
        chunks = self._chunks(events if self._before is None else self._before(events))
        if isinstance(chunks, str):
            return self.fail(chunks)
        return self._lines(chunks)

    def finish(self) -> bytes:
        if self._failed:
            return b""
        held = self._post.finish() if self._post is not None else []
        held += self._native.finish() if self._native is not None else []
        out = self._lines(held)
        self._translator.created_at = _now()
        last = self._translator.finish(self._timings())
        self._metrics.degradations(d.kind.value for d in self._translator.degradations)
        return out + b"".join(orjson.dumps(o) + b"\n" for o in last)

    def fail(self, message: str) -> bytes:
        self._failed = True
        return ollama.error_body(message) + b"\n"


def _stream_timings(started_ns: int, outcome: Outcome) -> Callable[[], Timings]:
    def timings() -> Timings:
        now = time.perf_counter()
        sent = outcome.sent_at
        first = sent + (outcome.stream.first_byte_ms / 1000 if outcome.stream is not None else 0.0)
        return Timings(
            total=time.perf_counter_ns() - started_ns,
            prompt_eval=max(0, int((first - sent) * _NS)),
            eval=max(0, int((now - first) * _NS)),
        )

    return timings


def _loaded(model: str, endpoint: Endpoint) -> web.Response:
    """Ollama answers an empty prompt (or no messages) by loading the model: nothing to generate."""
    body: dict[str, Any] = {"model": model, "created_at": _now()}
    if endpoint is CHAT:
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body |= {"done": True, "done_reason": "load"}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _serve(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    started = time.perf_counter_ns()
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    body = await read_json(request)
    model = _name_of(body)
    routable = routable_name(gw, model)
    empty = not body.get("messages") if endpoint is CHAT else not body.get("prompt")
    if empty and not body.get("suffix"):
        return _loaded(model, endpoint)
    if endpoint is GENERATE and body.get("suffix"):
        return await _fill_in_the_middle(request, body, model, routable, started)
    translate = ollama.chat_request if endpoint is CHAT else ollama.generate_request
    openai_body, thinking, lost = translate(body)
    openai_body["model"] = routable
    openai_body.update({h: body[h] for h in ("importance", "task_type") if h in body})
    call = decode_chat(openai_body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    call = dataclasses.replace(call, thinking=thinking)
    decision, outcome = await serve_call(gw, call, trace, Api.OLLAMA)
    if isinstance(outcome, web.Response):
        return outcome
    gw.metrics.degradations(d.kind.value for d in lost)
    headers = {**decision_headers(decision, outcome), **_degraded_header(lost, outcome)}
    native = outcome.endpoint.kind is Api.ANTHROPIC
    post = None if native else gw.post_process(outcome.group, call)
    show = thinking is None or thinking.enabled
    if outcome.reply is not None:
        payload = openai_payload(outcome.endpoint, outcome.reply.payload)
        if post is not None:
            post.completion(payload)
        note_reply(gw, trace, outcome, payload, Api.OPENAI)
        upstream_ns = int(outcome.reply.latency_ms * 1_000_000)
        timings = Timings(total=time.perf_counter_ns() - started, prompt_eval=0, eval=upstream_ns)
        answer, more = ollama.completion_response(
            payload, endpoint, model=model, created_at=_now(), timings=timings, show_thinking=show
        )
        gw.metrics.degradations(d.kind.value for d in more)
        headers.update(_degraded_header([*lost, *more], outcome))
        trace.degraded = tuple(degraded_of(headers))
        return web.Response(body=orjson.dumps(answer), headers=headers, content_type="application/json")
    translator = OllamaStream(model, endpoint, show_thinking=show)
    anthropic_events = (
        AnthropicToOpenAIStream(routable, f"chatcmpl-{call.request_id}", int(time.time()), include_usage=True)
        if native
        else None
    )
    converter = OllamaConverter(translator, post, anthropic_events, _stream_timings(started, outcome), gw.metrics)
    return await relay(request, gw, call, outcome, headers, converter)


async def _fill_in_the_middle(
    request: web.Request, body: dict[str, Any], model: str, routable: str, started: int
) -> web.StreamResponse:
    """`/api/generate` with a `suffix`: a completions request (as `POST /v1/completions`
    makes it) to the endpoints that do fill-in-the-middle, the answer in Ollama's shape."""
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    completions_body, lost = ollama.fim_request(body)
    completions_body["model"] = routable
    call = decode_completions(completions_body, request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, trace, Api.OLLAMA)
    if isinstance(outcome, web.Response):
        return outcome
    gw.metrics.degradations(d.kind.value for d in lost)
    headers = {**decision_headers(decision, outcome), **_degraded_header(lost, outcome)}
    if outcome.reply is not None:
        note_reply(gw, trace, outcome, outcome.reply.payload, Api.OPENAI)
        timings = Timings(
            total=time.perf_counter_ns() - started, prompt_eval=0, eval=int(outcome.reply.latency_ms * 1_000_000)
        )
        answer, _ = ollama.completion_response(
            outcome.reply.payload, GENERATE, model=model, created_at=_now(), timings=timings
        )
        return web.Response(body=orjson.dumps(answer), headers=headers, content_type="application/json")
    before = None
    if upstream_path(call, outcome.endpoint) is INFILL_PATH:
        infill = InfillStream(outcome.endpoint.name, f"cmpl-{call.request_id}", int(time.time()), include_usage=True)
        before = infill.convert
    translator = OllamaStream(model, GENERATE)
    converter = OllamaConverter(translator, None, None, _stream_timings(started, outcome), gw.metrics, before=before)
    return await relay(request, gw, call, outcome, headers, converter)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _serve(request, CHAT)


async def generate(request: web.Request) -> web.StreamResponse:
    return await _serve(request, GENERATE)


# -- describing models ------------------------------------------------------


def _listed(gw: Gateway, request: web.Request) -> list[str]:
    """Model names in /api/tags: what GET /v1/models lists, plus aliases that are exact names."""
    client = request.get(CLIENT)  # with [auth], only the models this key may use
    names = list(gw.model_ids)
    names += [pattern for pattern, _ in gw.topology.aliases if not any(c in pattern for c in "*?[")]
    seen: dict[str, None] = {}
    for name in names:
        if client is None or client.allows(name):
            seen.setdefault(name, None)
    return list(seen)


def _endpoints_of(gw: Gateway, name: str) -> list[Any]:
    target = gw.resolve_model(name)
    if target == AUTO:
        return list(gw.topology.endpoints.values())
    if target in gw.topology.groups:
        return list(gw.topology.groups[target].endpoints)
    return [gw.topology.endpoints[target]]


def _serving(gw: Gateway, eps: list[Any]) -> tuple[list[Any], bool]:
    """The endpoints behind a name whose group serves chat, and whether any serves embeddings."""
    groups = gw.topology.groups
    chat = [ep for ep in eps if Operation.CHAT in groups[ep.group].options.serves]
    embeds = any(Operation.EMBEDDINGS in groups[ep.group].options.serves for ep in eps)
    return chat, embeds


def _capabilities(gw: Gateway, name: str) -> tuple[Capabilities, list[str], int | None]:
    """What a name can do: `completion` when a group behind it serves chat, `embedding`
    when one serves embeddings (`[groups.X] serves`); tools, vision and thinking when any
    chat endpoint has them (requests that need tools or images go to capable endpoints
    first); and the largest context window."""
    eps = _endpoints_of(gw, name)
    chat, embeds = _serving(gw, eps)
    caps = [gw.capabilities.lookup(ep.name) for ep in chat]
    merged = Capabilities(
        tools=any(c.tools for c in caps),
        vision=any(c.vision for c in caps),
        thinking=any(c.thinking for c in caps),
        context_window=max((gw.capabilities.lookup(ep.name).context_window for ep in eps), default=0),
    )
    listed = ["completion"] if chat else []
    listed += [label for label, on in (("tools", merged.tools), ("vision", merged.vision)) if on]
    if merged.thinking:
        listed.append("thinking")
    if embeds:
        listed.append("embedding")
    windows = [w for ep in eps if isinstance(w := gw.context_info(ep.id).get("window"), int)]
    return merged, listed, max(windows, default=None)


def _details(gw: Gateway, name: str) -> dict[str, Any]:
    eps = _endpoints_of(gw, name)
    families = sorted({f.name if (f := gw.capabilities.family_of(ep.name)) is not None else "unknown" for ep in eps})
    return {
        "parent_model": "",
        "format": "",
        "family": families[0] if len(families) == 1 else "octoroute",
        "families": families,
        "parameter_size": "",
        "quantization_level": "",
    }


async def tags(request: web.Request) -> web.Response:
    gw = request.app[LIVE].gateway
    modified = _iso(gw.started_at)
    models = [
        {
            "name": ollama.tagged(name),
            "model": ollama.tagged(name),
            "modified_at": modified,
            "size": 0,
            "digest": "",
            "details": _details(gw, name),
        }
        for name in _listed(gw, request)
    ]
    return web.json_response({"models": models}, dumps=_dumps)


async def show(request: web.Request) -> web.Response:
    gw = request.app[LIVE].gateway
    body = await read_json(request)
    name = routable_name(gw, _name_of(body))
    merged, capabilities, window = _capabilities(gw, name)
    details = _details(gw, name)
    family = details["family"]
    context = window or merged.context_window
    info: dict[str, Any] = {
        "general.architecture": family,
        "general.basename": name,
        f"{family}.context_length": context,
    }
    body_out = {
        "modelfile": "",
        "parameters": f"num_ctx {context}",  # Continue reads the window here
        "template": "",
        "details": details,
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": _iso(gw.started_at),
    }
    return web.json_response(body_out, dumps=_dumps)


async def ps(request: web.Request) -> web.Response:
    """Every name with a healthy endpoint behind it counts as loaded."""
    gw = request.app[LIVE].gateway
    models = []
    for name in _listed(gw, request):
        eps = _endpoints_of(gw, name)
        if not any(gw.board.is_healthy(ep.id) for ep in eps):
            continue
        merged, _, window = _capabilities(gw, name)
        models.append(
            {
                "name": ollama.tagged(name),
                "model": ollama.tagged(name),
                "size": 0,
                "digest": "",
                "details": _details(gw, name),
                "expires_at": _FOREVER,
                "size_vram": 0,
                "context_length": window or merged.context_window,
            }
        )
    return web.json_response({"models": models}, dumps=_dumps)


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_API_VERSION, "octoroute": __version__})


async def root(request: web.Request) -> web.Response:
    """What clients probe to find an Ollama server."""
    return web.Response(text="Ollama is running")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()

"""Route handlers for the OpenAI-compatible API, octoroute 1.0's `/chat`, and
the operational endpoints."""

from __future__ import annotations

import contextlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from octoroute.config.topology import one_o_name
from octoroute.core.errors import (
    AllEndpointsFailed,
    ContextTooLarge,
    EndpointsCoolingDown,
    InvalidRequest,
    NotFound,
    RoutingExhausted,
    Unauthorised,
    UpstreamMidStream,
    UpstreamStatusError,
)
from octoroute.core.types import Api, Degradation, Operation, RoutingDecision
from octoroute.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from octoroute.observe.observer import RequestTrace
from octoroute.protocols import anthropic
from octoroute.protocols.openai import (
    fill_required_fields,
    model_list,
    parse_json_object,
    read_message_text,
    read_usage,
    stream_error_event,
)
from octoroute.protocols.postprocess import PostProcess
from octoroute.protocols.sse import UNREADABLE, UnreadableEvent, encode_data, encode_json_events, iter_data
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream
from octoroute.protocols.usage import StreamWatch, drop_usage_chunks, usage_of, wants_usage
from octoroute.routing.features import last_user_text
from octoroute.server.middleware import CLIENT_CLOSED, render_error
from octoroute.server.state import CLIENT, DASHBOARD, LIVE, REQUEST_ID, TRACE
from octoroute.service import ChatCall, Gateway, Outcome, asks_usage_for, decode_chat, openai_payload

DROPPED_HEADER = "X-Octoroute-Dropped"
MAX_DROPPED_NAMES = 32
MAX_DROPPED_NAME = 64
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_.:/\-]")
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def decision_headers(decision: RoutingDecision, outcome: Outcome) -> dict[str, str]:
    headers = {
        "X-Octoroute-Tier": outcome.group,
        "X-Octoroute-Endpoint": outcome.endpoint.id,
        "X-Octoroute-Strategy": decision.strategy.value,
        "X-Octoroute-Reason": outcome.reason_header,
        "X-Octoroute-Attempts": str(outcome.attempts),
    }
    if decision.score is not None:
        headers["X-Octoroute-Score"] = score_header(decision.score)
    if outcome.degraded:
        headers["X-Octoroute-Degraded"] = ",".join(outcome.degraded)
    if outcome.fail_open:
        headers["X-Octoroute-Fail-Open"] = "true"
    if outcome.affinity is not None:
        headers["X-Octoroute-Affinity"] = outcome.affinity.value
    return headers


def _failure_headers(
    decision: RoutingDecision, exc: RoutingExhausted | UpstreamStatusError | ContextTooLarge
) -> dict[str, str]:
    """Decision headers for a request no endpoint served; the endpoint is named when one answered."""
    headers = {
        "X-Octoroute-Tier": decision.group,
        "X-Octoroute-Strategy": decision.strategy.value,
        "X-Octoroute-Reason": decision.reason.value,
    }
    if decision.score is not None:
        headers["X-Octoroute-Score"] = score_header(decision.score)
    if isinstance(exc, UpstreamStatusError):
        headers["X-Octoroute-Endpoint"] = exc.endpoint_id
    headers["X-Octoroute-Attempts"] = str(attempts_of(exc))
    return headers


def score_header(score: float) -> str:
    """`X-Octoroute-Score`: the routing score with three decimals."""
    return f"{score:.3f}"


def attempts_of(exc: RoutingExhausted | UpstreamStatusError | ContextTooLarge) -> int:
    if isinstance(exc, ContextTooLarge):
        return exc.attempts
    if isinstance(exc, AllEndpointsFailed | EndpointsCoolingDown):
        return len(exc.attempts)
    return exc.attempt if isinstance(exc, UpstreamStatusError) else 0


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        return parse_json_object(raw, request.app[LIVE].gateway.config.limits.max_json_depth)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def degraded_of(headers: Mapping[str, str]) -> list[str]:
    value = headers.get("X-Octoroute-Degraded", "")
    return value.split(",") if value else []


def degradation_headers(lost: Iterable[Degradation], also: Iterable[str] = ()) -> dict[str, str]:
    """`X-Octoroute-Degraded`: the kinds of `lost` and `also` (kinds found while serving),
    sorted; `X-Octoroute-Dropped`: the `detail` of each degradation that has one (what
    exactly was dropped, `tools.web_search`), sorted and made header-safe. Kinds stay the
    stable, bounded vocabulary of the first header; names go in the second."""
    lost = list(lost)
    kinds = sorted({d.kind.value for d in lost} | set(also))
    headers = {"X-Octoroute-Degraded": ",".join(kinds)} if kinds else {}
    names = sorted({_header_token(d.detail) for d in lost if d.detail})
    if len(names) > MAX_DROPPED_NAMES:  # a client's own field and tool names: keep the header bounded
        names = [*names[:MAX_DROPPED_NAMES], f"+{len(names) - MAX_DROPPED_NAMES}"]
    if names:
        headers[DROPPED_HEADER] = ",".join(names)
    return headers


def _header_token(detail: str) -> str:
    """A client-chosen name as one header list item: no commas, spaces or control characters."""
    return _NOT_TOKEN.sub("_", detail[:MAX_DROPPED_NAME])


def note_degraded(trace: RequestTrace, headers: Mapping[str, str]) -> None:
    """What the response's headers say was degraded and dropped, for the log / event record."""
    trace.degraded = tuple(degraded_of(headers))
    dropped = headers.get(DROPPED_HEADER, "")
    trace.dropped = tuple(dropped.split(",")) if dropped else ()


def note_outcome(trace: RequestTrace, outcome: Outcome) -> None:
    """What serving produced, for the request's log line and decision record."""
    trace.group = outcome.group
    trace.endpoint = outcome.endpoint.id
    trace.fallback_from = outcome.fallback_from
    trace.attempts = outcome.attempts
    trace.degraded = outcome.degraded
    trace.fail_open = outcome.fail_open
    if outcome.stream is not None:
        trace.ttft_ms = outcome.stream.first_byte_ms


def note_reply(gw: Gateway, trace: RequestTrace, outcome: Outcome, payload: Mapping[str, Any], kind: Api) -> None:
    """Token usage (and, with log_content, the text) of a non-streaming answer in `kind`'s shape."""
    input_tokens, output_tokens = usage_of(kind, payload)
    trace.set_usage(input_tokens, output_tokens)
    gw.metrics.tokens(outcome.endpoint.id, input_tokens or 0, output_tokens or 0)
    if trace.log_content:
        text = read_message_text(payload) if kind is Api.OPENAI else anthropic.read_message_text(payload)
        trace.keep_text(completion=text)


async def serve_call(
    gw: Gateway,
    call: ChatCall,
    trace: RequestTrace,
    api: Api = Api.OPENAI,
    forward: Mapping[str, str] | None = None,
) -> tuple[RoutingDecision, Outcome | web.Response]:
    """Decide and run the attempt loop; an upstream/routing failure comes back as a ready response.
    `forward` are client headers to pass on to the upstream."""
    trace.model = call.model
    if trace.log_content and call.ask.op is Operation.CHAT:
        trace.keep_text(prompt=last_user_text(call.body["messages"]))
    tracing = gw.observer.tracing
    span = tracing.routing(trace.span) if tracing is not None and trace.span is not None else None
    began = time.perf_counter()
    try:
        decision = await gw.decide(call)
    except BaseException as exc:
        if span is not None:
            span.end(type(exc).__name__)
        raise
    # labelled as 1.0 labels it: under hybrid, the path taken (rule or llm)
    gw.metrics.routed(decision.group, decision.path, (time.perf_counter() - began) * 1000)
    trace.tier, trace.strategy, trace.reason = decision.group, decision.strategy.value, decision.reason.value
    trace.score = decision.score
    if span is not None:
        span.set("octoroute.tier", decision.group)
        span.set("octoroute.strategy", decision.strategy.value)
        span.set("octoroute.reason", decision.reason.value)
        span.end()
    gw.shadow_decide(call, decision, trace)
    try:
        outcome = await gw.serve(call, decision, {"X-Request-Id": call.request_id, **(forward or {})}, trace)
    except (RoutingExhausted, UpstreamStatusError, ContextTooLarge) as exc:
        response = render_error(exc, api)
        response.headers.update(_failure_headers(decision, exc))
        trace.attempts = attempts_of(exc)
        if isinstance(exc, UpstreamStatusError):
            trace.endpoint = exc.endpoint_id
        return decision, response
    gw.metrics.degradations(outcome.degraded)
    note_outcome(trace, outcome)
    return decision, outcome


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    body = await read_json(request)
    call = decode_chat(body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, trace)
    if isinstance(outcome, web.Response):
        return outcome
    headers = decision_headers(decision, outcome)
    native = outcome.endpoint.kind is Api.ANTHROPIC
    if outcome.reply is not None:
        reply = outcome.reply
        payload = openai_payload(outcome.endpoint, reply.payload)
        note_reply(gw, trace, outcome, payload, Api.OPENAI)
        post = None if native else gw.post_process(outcome.group, call)
        changed = native or (post.completion(payload) if post is not None else False)
        defaults = {
            "id": f"chatcmpl-{call.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": outcome.endpoint.name,
        }
        changed = fill_required_fields(payload, defaults) or changed
        raw = orjson.dumps(payload) if changed else reply.body
        return web.Response(status=reply.status, body=raw, headers=headers, content_type="application/json")
    if native:
        translator = AnthropicToOpenAIStream(
            call.model, f"chatcmpl-{call.request_id}", int(time.time()), include_usage=wants_usage(call.body)
        )
        converter: StreamConverter = FromAnthropic(translator)
    else:
        drop_usage = asks_usage_for(call, gw.topology.groups[outcome.group])
        converter = PassThrough(gw.post_process(outcome.group, call), drop_usage=drop_usage)
    return await relay(request, gw, call, outcome, headers, converter)


class StreamConverter(Protocol):
    """Turns upstream SSE bytes (whole events) into what the client's API expects."""

    route: str
    content_type: str | None  # None: the upstream's own

    def convert(self, events: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, message: str) -> bytes: ...


class PassThrough:
    """OpenAI to OpenAI: the upstream's bytes as they are, unless the group's
    filters or tool-call repair must see (and rewrite) each event, or the usage
    chunk the gateway asked for on the client's behalf must go (`drop_usage`)."""

    route = "/v1/chat/completions"
    content_type: str | None = None

    def __init__(self, post: PostProcess | None = None, *, drop_usage: bool = False) -> None:
        self._post = post
        self._drop_usage = drop_usage

    def convert(self, events: bytes) -> bytes:
        out = events if self._post is None else self._post.sse(events)
        return drop_usage_chunks(out) if self._drop_usage else out

    def finish(self) -> bytes:
        if self._post is None:
            return b""
        return encode_json_events(self._post.finish())

    def fail(self, message: str) -> bytes:
        return stream_error_event(message, code="upstream_stream_error")


class FromAnthropic:
    """An Anthropic-native endpoint's events as OpenAI chunks, ending with `[DONE]`."""

    route = "/v1/chat/completions"
    content_type: str | None = "text/event-stream"

    def __init__(self, translator: AnthropicToOpenAIStream) -> None:
        self._translator = translator
        self._done = False

    def convert(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for data in iter_data(events):
            if self._done:
                break
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:  # a hole in the answer: say so rather than skip it
                raise UnreadableEvent(b"".join(out)) from exc
            if isinstance(event, dict):
                out.append(encode_json_events(self._translator.feed(event)))
                if event.get("type") == "error":
                    self._done = True
        return b"".join(out)

    def finish(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        return encode_json_events(self._translator.finish()) + encode_data(b"[DONE]")

    def fail(self, message: str) -> bytes:
        self._done = True
        return stream_error_event(message, code="upstream_stream_error")


async def relay(
    request: web.Request,
    gw: Gateway,
    call: ChatCall,
    outcome: Outcome,
    headers: dict[str, str],
    converter: StreamConverter,
    before_end: Callable[[], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """Past the commit point: relay whole events; a failure ends with one error event.
    The upstream's own events are watched for token usage on the way. `before_end`
    is awaited after the converter finished and before its last events are sent
    (the Responses API stores the response there, so a client that reads the end of
    the stream can name it at once)."""
    stream = outcome.stream
    assert stream is not None
    trace = request[TRACE]
    watch = StreamWatch(outcome.endpoint.kind, trace.log_content)
    response = web.StreamResponse(status=stream.status, headers={**headers, **_SSE_HEADERS})
    response.content_type = converter.content_type or stream.content_type.split(";")[0]
    response.headers["X-Request-Id"] = call.request_id
    try:
        await response.prepare(request)
        watch.feed(stream.first)
        await response.write(converter.convert(stream.first))
        async with contextlib.aclosing(stream.rest()) as rest:
            async for events in rest:
                watch.feed(events)
                await response.write(converter.convert(events))
        tail = converter.finish()
        if before_end is not None:
            await before_end()
        await response.write(tail)
    except (UpstreamMidStream, UnreadableEvent) as exc:
        if isinstance(exc, UnreadableEvent):
            await response.write(exc.converted)
            exc = UpstreamMidStream(outcome.endpoint.id, UNREADABLE)
        gw.record_mid_stream(outcome.endpoint, exc)
        await response.write(converter.fail(f"upstream stream failed: {exc.message}"))
    except ConnectionResetError:
        trace.status = CLIENT_CLOSED
        return response
    finally:
        stream.close()
        outcome.release()
        _stream_ended(gw, trace, outcome, watch, headers)
    await response.write_eof()
    return response


def _stream_ended(
    gw: Gateway, trace: RequestTrace, outcome: Outcome, watch: StreamWatch, headers: Mapping[str, str]
) -> None:
    gw.metrics.stream_finished(outcome.endpoint.id, time.perf_counter() - outcome.sent_at)
    gw.metrics.tokens(outcome.endpoint.id, watch.input_tokens or 0, watch.output_tokens or 0)
    trace.set_usage(watch.input_tokens, watch.output_tokens)
    note_degraded(trace, headers)
    if trace.log_content:
        trace.keep_text(completion=watch.text)


async def list_models(request: web.Request) -> web.Response:
    """OpenAI's list shape, or Anthropic's when the client sends `anthropic-version`
    (Claude Code lists models that way before its first message)."""
    gw = request.app[LIVE].gateway
    client = request.get(CLIENT)  # with [auth], only the models this key may use
    ids = [m for m in gw.model_ids if client is None or client.allows(m)]
    if "anthropic-version" in request.headers:
        created = datetime.fromtimestamp(gw.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = [{"type": "model", "id": m, "display_name": m, "created_at": created} for m in ids]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        body = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        return web.json_response(body, dumps=_dumps)
    return web.json_response(model_list(ids, int(gw.started_at)), dumps=_dumps)


async def native_chat(request: web.Request) -> web.Response:
    """octoroute 1.0's API: {prompt, importance, task_type, model?, temperature?}."""
    started = time.perf_counter()
    gw = request.app[LIVE].gateway
    body = await read_json(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("'prompt' must be a non-empty string", param="prompt")
    chat: dict[str, Any] = {"model": body.get("model") or "auto", "messages": [{"role": "user", "content": prompt}]}
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise InvalidRequest("'temperature' must be a number from 0 to 2", param="temperature")
        chat["temperature"] = temperature
    for hint in ("importance", "task_type"):
        if body.get(hint) is not None:
            chat[hint] = body[hint]
    call = decode_chat(chat, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    trace = request[TRACE]
    decision, outcome = await serve_call(gw, call, trace)
    if isinstance(outcome, web.Response):
        return outcome
    reply = outcome.reply
    assert reply is not None
    payload = openai_payload(outcome.endpoint, reply.payload)
    note_reply(gw, trace, outcome, payload, Api.OPENAI)
    usage = read_usage(payload)
    result = {
        "response": read_message_text(payload) or "",
        "model_used": one_o_name(outcome.group),  # 1.0's tier name (fast_8b, ...); other groups by name
        "upstream_model": outcome.endpoint.name,
        "tier": outcome.group,
        "endpoint": outcome.endpoint.id,
        "routing_strategy": decision.path.value,  # under hybrid, the path taken, as 1.0 reports it
        "token_count": usage["total_tokens"] if usage else 0,
        "processing_time_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return web.json_response(result, headers=decision_headers(decision, outcome), dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _check_metrics_token(request: web.Request, gw: Gateway) -> None:
    """/metrics and /metrics.json are open unless a token is configured; then the
    caller must send it as `Authorization: Bearer <token>`."""
    token = gw.topology.metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # surrogateescape: the header's bytes as sent (aiohttp decodes undecodable ones to surrogates)
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, token.encode()):
        raise Unauthorised("this endpoint needs the metrics token: send 'Authorization: Bearer <token>'")


def _metrics_on(gw: Gateway) -> None:
    if not gw.metrics.enabled:
        raise NotFound("metrics are switched off ([observability] metrics = false)")


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[LIVE].gateway
    _check_metrics_token(request, gw)
    _metrics_on(gw)
    return web.Response(body=gw.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def metrics_json(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    gw = live.gateway
    _check_metrics_token(request, gw)
    _metrics_on(gw)
    await gw.refresh_usage()
    snapshot = gw.snapshot()
    snapshot["config"] = live.info()
    body = orjson.dumps(snapshot, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


async def dashboard(request: web.Request) -> web.Response:
    """The live dashboard: one self-contained page that polls metrics.json."""
    gw = request.app[LIVE].gateway
    _metrics_on(gw)
    page = request.app[DASHBOARD]
    return web.Response(body=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})


async def health(request: web.Request) -> web.Response:
    """`OK` as plain text (octoroute 1.0's answer), or {"status": "ok", "config": {...}}
    to a client that asks for JSON (`Accept: application/json`): the running config's
    generation, hash and changed keys waiting for a restart."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"status": "ok", "config": request.app[LIVE].info()})
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    """200 when every group can answer, else 503 (the rule: `Gateway.readiness`)."""
    gw = request.app[LIVE].gateway
    verdict = gw.readiness()
    body = {
        "status": verdict.status,
        "healthy_endpoints": verdict.healthy_endpoints,
        "total_endpoints": len(gw.topology.endpoints),
        "probe_rounds": gw.probe_rounds,
        "unavailable_groups": list(verdict.unavailable_groups),
    }
    return web.json_response(body, status=200 if verdict.ready else 503)


async def endpoints(request: web.Request) -> web.Response:
    gw = request.app[LIVE].gateway
    now = gw.clock()
    rows = [
        {
            "id": s.id,
            "group": s.group,
            "model": s.name,
            "base_url": s.base_url,
            "healthy": s.healthy,
            "consecutive_failures": s.consecutive_failures,
            "last_check_age_seconds": s.last_check_age_seconds,
            "last_latency_ms": s.last_latency_ms,
            "last_error": s.last_error,
            "cooldown_seconds": round(gw.rotation.cooldown_left(s.id, now), 3),
            "credentials_refused": gw.rotation.refused_since(s.id) is not None,
            "context": gw.context_info(s.id),
        }
        for s in gw.board.snapshot(now)
    ]
    # octoroute 1.0's list: its tier names, each endpoint's server address without /v1, health.
    models = [
        {"name": one_o_name(s.group), "endpoint": s.base_url.removesuffix("/v1"), "healthy": s.healthy}
        for s in gw.board.snapshot(now)
    ]
    return web.json_response({"models": models, "endpoints": rows}, dumps=_dumps)

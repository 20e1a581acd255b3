"""Route handlers for the OpenAI-compatible API, octoroute 1.0's `/chat`, and
the operational endpoints."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from octoroute.core.errors import (
    AllEndpointsFailed,
    InvalidRequest,
    RoutingExhausted,
    UpstreamMidStream,
    UpstreamStatusError,
)
from octoroute.core.types import Api, RoutingDecision
from octoroute.observe.logs import RequestRecord, access_log_enabled, log_request
from octoroute.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from octoroute.protocols.openai import (
    Usage,
    fill_required_fields,
    model_list,
    parse_json_object,
    read_message_text,
    read_usage,
    stream_error_event,
)
from octoroute.protocols.postprocess import PostProcess
from octoroute.protocols.sse import encode_data, encode_json_events, iter_data
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream
from octoroute.server.middleware import render_error
from octoroute.server.state import GATEWAY, REQUEST_ID
from octoroute.service import ChatCall, Gateway, Outcome, decode_chat, openai_payload

CLIENT_CLOSED = 499  # nginx's convention for "client closed the connection", log only
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def decision_headers(decision: RoutingDecision, outcome: Outcome) -> dict[str, str]:
    headers = {
        "X-Octoroute-Tier": outcome.group,
        "X-Octoroute-Endpoint": outcome.endpoint.id,
        "X-Octoroute-Strategy": decision.strategy.value,
        "X-Octoroute-Reason": outcome.reason_header,
        "X-Octoroute-Attempts": str(outcome.attempts),
    }
    if outcome.degraded:
        headers["X-Octoroute-Degraded"] = ",".join(outcome.degraded)
    return headers


def _failure_headers(decision: RoutingDecision, exc: RoutingExhausted | UpstreamStatusError) -> dict[str, str]:
    """Decision headers for a request no endpoint served; the endpoint is named when one answered."""
    headers = {
        "X-Octoroute-Tier": decision.group,
        "X-Octoroute-Strategy": decision.strategy.value,
        "X-Octoroute-Reason": decision.reason.value,
    }
    if isinstance(exc, UpstreamStatusError):
        headers["X-Octoroute-Endpoint"] = exc.endpoint_id
    headers["X-Octoroute-Attempts"] = str(attempts_of(exc))
    return headers


def attempts_of(exc: RoutingExhausted | UpstreamStatusError) -> int:
    if isinstance(exc, AllEndpointsFailed):
        return len(exc.attempts)
    return exc.attempt if isinstance(exc, UpstreamStatusError) else 0


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        return parse_json_object(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def degraded_of(headers: Mapping[str, str]) -> list[str]:
    value = headers.get("X-Octoroute-Degraded", "")
    return value.split(",") if value else []


def record_request(
    call: ChatCall,
    route: str,
    decision: RoutingDecision | None,
    outcome: Outcome | None,
    status: int,
    started: float,
    usage: Usage | None = None,
    attempts: int = 0,
    degraded: Sequence[str] = (),
) -> None:
    if not access_log_enabled():
        return
    log_request(
        RequestRecord(
            request_id=call.request_id,
            route=route,
            model=call.model,
            group=outcome.group if outcome else decision.group if decision else None,
            endpoint=outcome.endpoint.id if outcome else None,
            strategy=decision.strategy.value if decision else None,
            reason=outcome.reason_header if outcome else decision.reason.value if decision else None,
            status=status,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttfb_ms=outcome.stream.first_byte_ms if outcome and outcome.stream else None,
            attempts=outcome.attempts if outcome else attempts,
            prompt_tokens=usage["prompt_tokens"] if usage else None,
            completion_tokens=usage["completion_tokens"] if usage else None,
            degraded=",".join(degraded) or None,
        )
    )


async def serve_call(
    gw: Gateway,
    call: ChatCall,
    route: str,
    started: float,
    api: Api = Api.OPENAI,
    forward: Mapping[str, str] | None = None,
) -> tuple[RoutingDecision, Outcome | web.Response]:
    """Decide and run the attempt loop; an upstream/routing failure comes back as a ready response.
    `forward` are client headers to pass on to the upstream."""
    decision = await gw.decide(call)
    try:
        outcome = await gw.serve(call, decision, {"X-Request-Id": call.request_id, **(forward or {})})
    except (RoutingExhausted, UpstreamStatusError) as exc:
        response = render_error(exc, api)
        response.headers.update(_failure_headers(decision, exc))
        record_request(call, route, decision, None, response.status, started, attempts=attempts_of(exc))
        return decision, response
    gw.metrics.record_degradations(outcome.degraded)
    return decision, outcome


async def chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    gw = request.app[GATEWAY]
    body = await read_json(request)
    call = decode_chat(body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, "/v1/chat/completions", started)
    if isinstance(outcome, web.Response):
        return outcome
    headers = decision_headers(decision, outcome)
    native = outcome.endpoint.kind is Api.ANTHROPIC
    if outcome.reply is not None:
        reply = outcome.reply
        payload = openai_payload(outcome.endpoint, reply.payload)
        record_request(
            call,
            "/v1/chat/completions",
            decision,
            outcome,
            reply.status,
            started,
            read_usage(payload),
            degraded=outcome.degraded,
        )
        post = None if native else gw.post_process(outcome.group, call)
        changed = native or (post.completion(payload) if post is not None else False)
        changed = fill_required_fields(payload) or changed
        raw = orjson.dumps(payload) if changed else reply.body
        return web.Response(status=reply.status, body=raw, headers=headers, content_type="application/json")
    if native:
        include_usage = isinstance(call.body.get("stream_options"), dict) and bool(
            call.body["stream_options"].get("include_usage")
        )
        translator = AnthropicToOpenAIStream(
            call.model, f"chatcmpl-{call.request_id}", int(time.time()), include_usage=include_usage
        )
        converter: StreamConverter = FromAnthropic(translator)
    else:
        converter = PassThrough(gw.post_process(outcome.group, call))
    return await relay(request, gw, call, decision, outcome, headers, started, converter)


class StreamConverter(Protocol):
    """Turns upstream SSE bytes (whole events) into what the client's API expects."""

    route: str
    content_type: str | None  # None: the upstream's own

    def convert(self, events: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, message: str) -> bytes: ...


class PassThrough:
    """OpenAI to OpenAI: the upstream's bytes as they are, unless the group's
    filters or tool-call repair must see (and rewrite) each event."""

    route = "/v1/chat/completions"
    content_type: str | None = None

    def __init__(self, post: PostProcess | None = None) -> None:
        self._post = post

    def convert(self, events: bytes) -> bytes:
        return events if self._post is None else self._post.sse(events)

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
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and not self._done:
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
    decision: RoutingDecision,
    outcome: Outcome,
    headers: dict[str, str],
    started: float,
    converter: StreamConverter,
) -> web.StreamResponse:
    """Past the commit point: relay whole events; a failure ends with one error event."""
    stream = outcome.stream
    assert stream is not None
    response = web.StreamResponse(status=stream.status, headers={**headers, **_SSE_HEADERS})
    response.content_type = converter.content_type or stream.content_type.split(";")[0]
    response.headers["X-Request-Id"] = call.request_id
    try:
        await response.prepare(request)
        await response.write(converter.convert(stream.first))
        async with contextlib.aclosing(stream.rest()) as rest:
            async for events in rest:
                await response.write(converter.convert(events))
        await response.write(converter.finish())
    except UpstreamMidStream as exc:
        gw.record_mid_stream(outcome.endpoint, exc)
        await response.write(converter.fail(f"upstream stream failed: {exc.message}"))
    except ConnectionResetError:
        record_request(call, converter.route, decision, outcome, CLIENT_CLOSED, started, degraded=degraded_of(headers))
        return response
    finally:
        stream.close()
    await response.write_eof()
    record_request(call, converter.route, decision, outcome, stream.status, started, degraded=degraded_of(headers))
    return response


async def list_models(request: web.Request) -> web.Response:
    """OpenAI's list shape, or Anthropic's when the client sends `anthropic-version`
    (Claude Code lists models that way before its first message)."""
    gw = request.app[GATEWAY]
    if "anthropic-version" in request.headers:
        created = datetime.fromtimestamp(gw.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = [{"type": "model", "id": m, "display_name": m, "created_at": created} for m in gw.model_ids]
        body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        return web.json_response(body, dumps=_dumps)
    return web.json_response(model_list(gw.model_ids, int(gw.started_at)), dumps=_dumps)


async def native_chat(request: web.Request) -> web.Response:
    """octoroute 1.0's API: {prompt, importance, task_type, model?, temperature?}."""
    started = time.perf_counter()
    gw = request.app[GATEWAY]
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
    decision, outcome = await serve_call(gw, call, "/chat", started)
    if isinstance(outcome, web.Response):
        return outcome
    reply = outcome.reply
    assert reply is not None
    payload = openai_payload(outcome.endpoint, reply.payload)
    usage = read_usage(payload)
    record_request(call, "/chat", decision, outcome, 200, started, usage)
    result = {
        "response": read_message_text(payload) or "",
        "model_used": outcome.endpoint.name,
        "tier": outcome.group,
        "endpoint": outcome.endpoint.id,
        "routing_strategy": decision.strategy.value,
        "token_count": usage["total_tokens"] if usage else 0,
        "processing_time_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return web.json_response(result, headers=decision_headers(decision, outcome), dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return web.Response(body=gw.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    healthy = sum(1 for ep in gw.topology.endpoints if gw.board.is_healthy(ep))
    status = 200 if healthy else 503
    body = {
        "status": "ready" if healthy else "unavailable",
        "healthy_endpoints": healthy,
        "total_endpoints": len(gw.topology.endpoints),
    }
    return web.json_response(body, status=status)


async def endpoints(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
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
        }
        for s in gw.board.snapshot(gw.clock())
    ]
    return web.json_response({"endpoints": rows}, dumps=_dumps)

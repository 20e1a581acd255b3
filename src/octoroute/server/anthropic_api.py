"""The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`)
in front of OpenAI-compatible upstreams.

Translation happens at the edges only: the request becomes an OpenAI chat body,
goes through the same decide → attempt loop → commit point as
`/v1/chat/completions`, and the answer (or stream) is translated back. What a
translation had to drop is named in `X-Octoroute-Degraded`. Errors on these
routes use Anthropic's error shape (`server.middleware.render_error`).
https://docs.anthropic.com/en/api/messages
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiohttp import web

from octoroute.core.errors import InvalidRequest
from octoroute.core.types import Api, Degradation
from octoroute.observe.metrics import Recorder
from octoroute.protocols.anthropic import stream_error_event
from octoroute.protocols.postprocess import PostProcess
from octoroute.protocols.sse import UnreadableEvent, iter_data
from octoroute.protocols.thinking import read_thinking
from octoroute.protocols.translate_request import anthropic_to_openai_request
from octoroute.protocols.translate_response import openai_to_anthropic_response
from octoroute.protocols.translate_stream import OpenAIToAnthropicStream
from octoroute.routing.features import extract_features
from octoroute.server.handlers import decision_headers, degraded_of, note_reply, read_json, relay, serve_call
from octoroute.server.state import LIVE, REQUEST_ID, TRACE
from octoroute.service import ChatCall, Outcome, decode_chat

ROUTE = "/v1/messages"


def _check_messages_request(body: dict[str, Any]) -> None:
    """What the Messages API requires and translation relies on; the rest is the upstream's to judge."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest(
            "'model' must be a non-empty string: 'auto', a group, an endpoint id or an alias", param="model"
        )
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' is required and must be a positive integer", param="max_tokens")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise InvalidRequest("'messages' must be a non-empty array of messages", param="messages")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")


def _degraded_header(lost: Iterable[Degradation], outcome: Outcome) -> dict[str, str]:
    kinds = sorted({d.kind.value for d in lost} | set(outcome.degraded))
    return {"X-Octoroute-Degraded": ",".join(kinds)} if kinds else {}


async def _translate(request: web.Request) -> tuple[dict[str, Any], ChatCall, list[Degradation]]:
    body = await read_json(request)
    _check_messages_request(body)
    gw = request.app[LIVE].gateway
    hints: dict[str, Any] = {h: body.pop(h) for h in ("importance", "task_type") if h in body}  # ours
    openai_body, lost = anthropic_to_openai_request(body)
    openai_body["model"] = body["model"]
    openai_body.update(hints)
    call = decode_chat(openai_body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    return body, dataclasses.replace(call, anthropic_body=body), lost


def _stop_sequences(body: dict[str, Any]) -> Sequence[str]:
    stops = body.get("stop_sequences")
    return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []


def _input_estimate(call: ChatCall) -> int:
    features = extract_features(
        call.body["messages"], tools_present=bool(call.body.get("tools")), importance=call.importance, task_type=None
    )
    return features.token_estimate + len(orjson.dumps(call.body.get("tools", []))) // 4


def as_chunk_events(events: bytes) -> bytes:
    """SSE `events` as received; from an upstream that ignored `stream: true` and sent one
    whole chat.completion, that answer as one chunk event (`completion_as_chunk`)."""
    if events.lstrip().startswith((b"data:", b"event:", b"id:", b":", b"retry:")):
        return events
    return b"data: " + orjson.dumps(completion_as_chunk(events)) + b"\n\n"


def completion_as_chunk(raw: bytes) -> dict[str, Any]:
    """A whole chat.completion body as one chat.completion.chunk (message becomes delta)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"error": {"message": "upstream answered a stream request with an unreadable body"}}
    if not isinstance(payload, dict):
        return {"error": {"message": "upstream answered a stream request with an unreadable body"}}
    choices = []
    for choice in payload.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("message") or {})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)]
        choices.append({"index": choice.get("index", 0), "delta": delta, "finish_reason": choice.get("finish_reason")})
    return {"choices": choices, "usage": payload.get("usage")}


class NativeStream:
    """An Anthropic-native endpoint's events, relayed as they are."""

    route = ROUTE
    content_type: str | None = "text/event-stream"

    def convert(self, events: bytes) -> bytes:
        return events

    def finish(self) -> bytes:
        return b""

    def fail(self, message: str) -> bytes:
        return stream_error_event(message)


class AnthropicStream:
    """Upstream OpenAI SSE in, Anthropic events out (one `OpenAIToAnthropicStream`)."""

    route = ROUTE
    content_type: str | None = "text/event-stream"

    def __init__(self, translator: OpenAIToAnthropicStream, post: PostProcess | None, metrics: Recorder) -> None:
        self._metrics = metrics
        self._translator = translator
        self._post = post
        self._failed = False

    def convert(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for data in iter_data(as_chunk_events(events)):
            if self._failed or data.strip() == b"[DONE]":
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UnreadableEvent(b"".join(out)) from exc
            if not isinstance(chunk, dict):
                continue
            self._failed = "error" in chunk and "choices" not in chunk
            chunks = [chunk] if self._post is None or self._failed else self._post.chunk(chunk)
            for piece in chunks:
                out += self._translator.feed(piece)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._failed:
            return b""
        held = self._post.finish() if self._post is not None else []
        events = [e for c in held for e in self._translator.feed(c)] + self._translator.finish()
        self._metrics.degradations(d.kind.value for d in self._translator.degradations)
        return b"".join(events)

    def fail(self, message: str) -> bytes:
        self._failed = True
        return self._translator.fail(message)


async def messages(request: web.Request) -> web.StreamResponse:
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    body, call, lost = await _translate(request)
    beta = request.headers.get("anthropic-beta")  # features an Anthropic-native server may need
    forward = {"anthropic-beta": beta} if beta else None
    decision, outcome = await serve_call(gw, call, trace, Api.ANTHROPIC, forward)
    if isinstance(outcome, web.Response):
        return outcome
    if outcome.endpoint.kind is Api.ANTHROPIC:  # an Anthropic-native server: pass its answer through
        headers = decision_headers(decision, outcome)
        if outcome.reply is not None:
            note_reply(gw, trace, outcome, outcome.reply.payload, Api.ANTHROPIC)
            return web.Response(body=outcome.reply.body, headers=headers, content_type="application/json")
        return await relay(request, gw, call, outcome, headers, NativeStream())
    gw.metrics.degradations(d.kind.value for d in lost)  # only now: a native endpoint loses nothing
    headers = {**decision_headers(decision, outcome), **_degraded_header(lost, outcome)}
    message_id = f"msg_{call.request_id}"
    post = gw.post_process(outcome.group, call)
    if outcome.reply is not None:
        if post is not None:
            post.completion(outcome.reply.payload)
        message, more = openai_to_anthropic_response(
            outcome.reply.payload,
            model=body["model"],
            message_id=message_id,
            stop_sequences=_stop_sequences(body),
            thinking=read_thinking(body),
        )
        headers.update(_degraded_header([*lost, *more], outcome))
        gw.metrics.degradations(d.kind.value for d in more)
        note_reply(gw, trace, outcome, outcome.reply.payload, Api.OPENAI)
        trace.degraded = tuple(degraded_of(headers))
        return web.Response(body=orjson.dumps(message), headers=headers, content_type="application/json")
    translator = OpenAIToAnthropicStream(
        body["model"],
        message_id,
        input_tokens=_input_estimate(call),
        stop_sequences=_stop_sequences(body),
        thinking=read_thinking(body),
    )
    return await relay(request, gw, call, outcome, headers, AnthropicStream(translator, post, gw.metrics))


async def count_tokens(request: web.Request) -> web.Response:
    """An estimate (characters / 4 over messages, system and tools): local servers
    expose no tokenizer endpoint in common, and agents use this only for budgeting."""
    body = await read_json(request)
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("'messages' must be an array of messages", param="messages")
    body.setdefault("max_tokens", 1)
    body.setdefault("model", "auto")
    _check_messages_request(body)
    gw = request.app[LIVE].gateway
    openai_body, _ = anthropic_to_openai_request(body)
    call = decode_chat(openai_body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    gw.resolve_model(str(body["model"]))
    return web.json_response({"input_tokens": _input_estimate(call)})

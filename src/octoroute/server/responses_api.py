"""The OpenAI Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`).

A request goes through the same decide → attempt loop → commit point as
`/v1/chat/completions`. To an endpoint configured with `responses = true` it is
passed as it is but for `model` (history from `previous_response_id` spelled
out); to every other endpoint it is translated to a chat body at ingress and
the answer (or stream) back to a response at egress
(`protocols.translate_responses_*`). What a translation dropped is named in
`X-Octoroute-Degraded` (kinds) and `X-Octoroute-Dropped` (which tools and
fields). Errors are in OpenAI's shape; after the commit point a stream ends
with `response.failed`.
https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson
from aiohttp import web

from octoroute.core.errors import InvalidRequest, NotFound
from octoroute.core.types import Api, Degradation, DegradationKind
from octoroute.observe.metrics import Recorder
from octoroute.protocols.postprocess import PostProcess
from octoroute.protocols.responses import check_responses_body, encode_event, fill_response_fields, response_frame
from octoroute.protocols.sse import UnreadableEvent, iter_data
from octoroute.protocols.translate_responses_request import ChatTranslation, input_items, responses_to_chat_request
from octoroute.protocols.translate_responses_response import ItemIds, chat_to_response
from octoroute.protocols.translate_responses_stream import ChatToResponsesStream
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream
from octoroute.server.anthropic_api import as_chunk_events
from octoroute.server.handlers import (
    decision_headers,
    degradation_headers,
    note_degraded,
    note_reply,
    read_json,
    relay,
    serve_call,
)
from octoroute.server.responses_store import Responses, StoredResponse
from octoroute.server.state import LIVE, REQUEST_ID, RESPONSES, TRACE
from octoroute.service import ChatCall, Outcome, decode_chat, openai_payload

ROUTE = "/v1/responses"
_HINTS = ("importance", "task_type")  # octoroute's own routing hints, as on the other APIs


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    """One decoded Responses request: the client's body with its history spelled out,
    its chat translation, and the ids of the response being made."""

    body: dict[str, Any]  # the client's request, `input` holding the stored history too
    items: list[dict[str, Any]]  # that whole input as items
    chat: ChatTranslation
    call: ChatCall
    response_id: str


def _degraded_header(lost: Iterable[Degradation], outcome: Outcome) -> dict[str, str]:
    """The degradation headers; `reasoning.effort` is named as dropped when the serving
    group had no way to pass it on (the attempt loop reports that as `thinking`)."""
    if DegradationKind.THINKING.value in outcome.degraded:
        lost = [*lost, Degradation(DegradationKind.THINKING, "reasoning.effort", "reasoning.effort")]
    return degradation_headers(lost, outcome.degraded)


async def _history(store: Responses, body: dict[str, Any]) -> list[dict[str, Any]]:
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    stored = await store.get(str(previous))
    if stored is None:
        minutes = store.ttl_seconds / 60
        raise InvalidRequest(
            f"previous response '{previous}' is unknown or expired: this gateway keeps the last "
            f"{store.max_entries} responses for {minutes:g} minutes ([responses] store_max_entries, "
            "store_ttl_seconds); send the whole conversation as 'input' instead",
            param="previous_response_id",
        )
    return list(stored.items)


async def _decode(request: web.Request) -> _Request:
    body = await read_json(request)
    problem = check_responses_body(body)
    if problem is not None:
        raise InvalidRequest(problem[1], param=problem[0])
    gw = request.app[LIVE].gateway
    hints = {h: body.pop(h) for h in _HINTS if h in body}
    items = [*(await _history(request.app[RESPONSES], body)), *input_items(body)]
    full = {k: v for k, v in body.items() if k != "previous_response_id"}
    full["input"] = items
    chat = responses_to_chat_request(full)
    chat_body = {**chat.body, "model": body["model"], **hints}
    call = decode_chat(chat_body, request.headers, gw.config.routing.default_importance, request[REQUEST_ID])
    call = dataclasses.replace(call, responses_body=full, thinking=chat.thinking)
    return _Request(body, items, chat, call, f"resp_{secrets.token_hex(16)}")


async def _store(request: web.Request, decoded: _Request, response: dict[str, Any]) -> None:
    """Stored before the client has the answer's last byte, so a follow-up naming it,
    on any worker or replica, finds it."""
    if decoded.body.get("store") is False:
        return
    output = [item for item in response.get("output") or [] if isinstance(item, dict)]
    await request.app[RESPONSES].put(StoredResponse(response, [*decoded.items, *output]))


async def create_response(request: web.Request) -> web.StreamResponse:
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    decoded = await _decode(request)
    call = decoded.call
    decision, outcome = await serve_call(gw, call, trace, Api.OPENAI)
    if isinstance(outcome, web.Response):
        return outcome
    headers = decision_headers(decision, outcome)
    if outcome.endpoint.responses and outcome.endpoint.kind is Api.OPENAI:  # it speaks Responses itself
        if outcome.reply is not None:
            note_reply(gw, trace, outcome, outcome.reply.payload, Api.OPENAI)
            payload = outcome.reply.payload
            raw = orjson.dumps(payload) if fill_response_fields(payload) else outcome.reply.body
            if isinstance(payload.get("id"), str):
                await _store(request, decoded, payload)
            return web.Response(body=raw, headers=headers, content_type="application/json")
        native = NativeStream()
        return await relay(request, gw, call, outcome, headers, native, before_end=_storing(request, decoded, native))
    lost = decoded.chat.lost
    gw.metrics.degradations(d.kind.value for d in lost)  # only now: a native endpoint loses nothing
    headers.update(_degraded_header(lost, outcome))
    frame = response_frame(decoded.body, decoded.response_id, created_at=int(time.time()), model=call.model)
    ids = ItemIds(decoded.response_id.removeprefix("resp_"))
    post = gw.post_process(outcome.group, call)
    if outcome.reply is not None:
        payload = openai_payload(outcome.endpoint, outcome.reply.payload)
        if post is not None:
            post.completion(payload)
        response, more = chat_to_response(payload, frame, decoded.chat.names, ids, completed_at=int(time.time()))
        headers.update(_degraded_header([*lost, *more], outcome))
        gw.metrics.degradations(d.kind.value for d in more)
        note_reply(gw, trace, outcome, payload, Api.OPENAI)
        note_degraded(trace, headers)
        await _store(request, decoded, response)
        return web.Response(body=orjson.dumps(response), headers=headers, content_type="application/json")
    translator = ChatToResponsesStream(frame, decoded.chat.names, ids, completed_at=lambda: int(time.time()))
    from_anthropic = (
        AnthropicToOpenAIStream(call.model, decoded.response_id, int(time.time()), include_usage=True)
        if outcome.endpoint.kind is Api.ANTHROPIC
        else None
    )
    converter = ResponsesStream(translator, post, gw.metrics, from_anthropic)
    return await relay(request, gw, call, outcome, headers, converter, before_end=_storing(request, decoded, converter))


class _Finishing(Protocol):
    @property
    def final(self) -> dict[str, Any] | None: ...


def _storing(request: web.Request, decoded: _Request, stream: _Finishing) -> Callable[[], Awaitable[None]]:
    """`relay`'s `before_end` for a streamed response: the finished response is stored
    before the stream's last events go out."""

    async def store_final() -> None:
        if stream.final is not None:
            await _store(request, decoded, stream.final)

    return store_final


# A Responses stream's last event: the response as it ended (`response.failed` is not
# stored: OpenAI does not continue a failed response either).
_FINISHED = frozenset({"response.completed", "response.incomplete"})


class NativeStream:
    """A Responses-speaking endpoint's events, relayed as they are but for the
    spec-required fields a response object lacks (`fill_response_fields`). The event
    that ends the response is held back until `finish`, so the response is stored
    (`final`) before a client reading the stream sees it end."""

    route = ROUTE
    content_type: str | None = "text/event-stream"

    def __init__(self) -> None:
        self.final: dict[str, Any] | None = None  # the finished response, once its event came
        self._held: list[bytes] = []  # that event, and anything after it

    def convert(self, events: bytes) -> bytes:
        if b'"response"' not in events and not self._held:
            return events
        out: list[bytes] = []
        for block in events.replace(b"\r\n", b"\n").split(b"\n\n"):
            if not block.strip():
                continue
            amended = self._amended(block) + b"\n\n"
            (self._held if self._held or self.final is not None else out).append(amended)
        return b"".join(out)

    def _amended(self, block: bytes) -> bytes:
        data = b"".join(line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:"))
        try:
            event = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return block
        response = event.get("response") if isinstance(event, dict) else None
        if not isinstance(event, dict) or not isinstance(response, dict):
            return block
        filled = fill_response_fields(response)
        if event.get("type") in _FINISHED and isinstance(response.get("id"), str):
            self.final = response
        return encode_event(event) if filled else block

    def finish(self) -> bytes:
        held, self._held = self._held, []
        return b"".join(held)

    def fail(self, message: str) -> bytes:
        error = encode_event({"type": "error", "code": "server_error", "message": message, "param": None})
        return self.finish() + error


class ResponsesStream:
    """Upstream chat chunks (or Anthropic events, through `from_anthropic`) in,
    Responses events out (one `ChatToResponsesStream`)."""

    route = ROUTE
    content_type: str | None = "text/event-stream"

    def __init__(
        self,
        translator: ChatToResponsesStream,
        post: PostProcess | None,
        metrics: Recorder,
        from_anthropic: AnthropicToOpenAIStream | None,
    ) -> None:
        self._translator = translator
        self._post = post
        self._metrics = metrics
        self._from_anthropic = from_anthropic
        self._failed = False
        self.final: dict[str, Any] | None = None  # the finished response, once `finish` made it

    def _chunks(self, data: bytes) -> list[dict[str, Any]] | None:
        """The chat chunks in one upstream event; None when it cannot be read."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return []
        if self._from_anthropic is not None:
            return self._from_anthropic.feed(parsed)
        return [parsed]

    def convert(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for data in iter_data(as_chunk_events(events)):
            if self._failed or data.strip() == b"[DONE]":
                continue
            chunks = self._chunks(data)
            if chunks is None:
                raise UnreadableEvent(b"".join(out))
            for chunk in chunks:
                failed = "error" in chunk and "choices" not in chunk
                pieces = [chunk] if self._post is None or failed else self._post.chunk(chunk)
                for piece in pieces:
                    out += self._translator.feed(piece)
                self._failed = self._failed or failed
        return b"".join(out)

    def finish(self) -> bytes:
        if self._failed:
            return b""
        held = self._post.finish() if self._post is not None else []
        if self._from_anthropic is not None:
            held = [*self._from_anthropic.finish(), *held]
        events = [e for c in held for e in self._translator.feed(c)] + self._translator.finish()
        self._metrics.degradations(d.kind.value for d in self._translator.degradations)
        self.final = self._translator.response
        return b"".join(events)

    def fail(self, message: str) -> bytes:
        self._failed = True
        return self._translator.fail(message)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"no response '{response_id}': unknown, not stored (store: false) or expired")


async def get_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    stored = await request.app[RESPONSES].get(response_id)
    if stored is None:
        raise _not_found(response_id)
    return web.Response(body=orjson.dumps(stored.response), content_type="application/json")


async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[RESPONSES].delete(response_id):
        raise _not_found(response_id)
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return web.Response(body=orjson.dumps(body), content_type="application/json")

"""`POST /v1/completions`: legacy text completions, whole or streamed, with `suffix`
for fill-in-the-middle; routed by the same attempt loop to groups that serve
completions (`[groups.X] serves`). A request with a suffix only goes to endpoints
that do FIM (`fim = "suffix"`: passed on; `"infill"`: llama.cpp's /infill, translated
both ways); when a group has none, a 400 says so."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from octoroute.core.errors import InvalidRequest
from octoroute.core.types import Api, Importance, Operation
from octoroute.fleet.operations import Ask
from octoroute.protocols.completions import InfillStream, check_completions_body, is_fim, plain_prompt
from octoroute.protocols.openai import fill_required_fields, stream_error_event
from octoroute.protocols.usage import wants_usage
from octoroute.server.handlers import PassThrough, decision_headers, note_reply, read_json, relay, serve_call
from octoroute.server.state import LIVE, REQUEST_ID, TRACE
from octoroute.service import AUTO, INFILL_PATH, ChatCall, asks_usage_for, upstream_path


def decode_completions(body: dict[str, Any], request_id: str) -> ChatCall:
    """A checked completions body as the gateway's internal call."""
    problem = check_completions_body(body)
    if problem is not None:
        raise InvalidRequest(problem[1], param=problem[0])
    ask = Ask(Operation.COMPLETIONS, fim=is_fim(body), token_ids=not plain_prompt(body))
    model = str(body.get("model") or AUTO)
    return ChatCall(body, model, bool(body.get("stream", False)), Importance.NORMAL, None, request_id, ask=ask)


class FromInfill:
    """llama.cpp's streamed /infill events as OpenAI completion chunks, ending with `[DONE]`."""

    route = "/v1/completions"
    content_type: str | None = "text/event-stream"

    def __init__(self, stream: InfillStream) -> None:
        self._stream = stream

    def convert(self, events: bytes) -> bytes:
        return self._stream.convert(events)  # `UnreadableEvent` at an event that is not JSON

    def finish(self) -> bytes:
        return b""

    def fail(self, message: str) -> bytes:
        return stream_error_event(message, code="upstream_stream_error")


async def completions(request: web.Request) -> web.StreamResponse:
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    call = decode_completions(await read_json(request), request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, trace)
    if isinstance(outcome, web.Response):
        return outcome
    headers = decision_headers(decision, outcome)
    if outcome.reply is not None:
        reply = outcome.reply
        payload = dict(reply.payload)
        note_reply(gw, trace, outcome, payload, Api.OPENAI)
        defaults = {
            "id": f"cmpl-{call.request_id}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": outcome.endpoint.name,
        }
        raw = orjson.dumps(payload) if fill_required_fields(payload, defaults) else reply.body
        return web.Response(status=reply.status, body=raw, headers=headers, content_type="application/json")
    if upstream_path(call, outcome.endpoint) is INFILL_PATH:
        translated = InfillStream(
            outcome.endpoint.name, f"cmpl-{call.request_id}", int(time.time()), include_usage=wants_usage(call.body)
        )
        return await relay(request, gw, call, outcome, headers, FromInfill(translated))
    drop_usage = asks_usage_for(call, gw.topology.groups[outcome.group])
    return await relay(request, gw, call, outcome, headers, PassThrough(None, drop_usage=drop_usage))

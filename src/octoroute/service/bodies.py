"""What one attempt sends to an endpoint, in the endpoint's API (`body_for`,
`operation_request`, `headers_for`), and a whole answer back in OpenAI's shape
(`operation_reply`, `openai_payload`). No I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from octoroute.config.models import GroupOptions
from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import UpstreamProtocolError
from octoroute.core.types import Api, DegradationKind, Fim, Operation
from octoroute.protocols.completions import from_infill, to_infill
from octoroute.protocols.egress import translated_body
from octoroute.protocols.embeddings import from_ollama_embed, to_ollama_embed
from octoroute.protocols.openai import reply_problem
from octoroute.protocols.thinking import read_thinking
from octoroute.protocols.translate_request_reverse import openai_to_anthropic_request
from octoroute.protocols.translate_response import anthropic_to_openai_response
from octoroute.service.call import ChatCall
from octoroute.upstream.client import UpstreamPath, UpstreamReply

EMBEDDINGS_PATH = UpstreamPath("/embeddings")
OLLAMA_EMBED_PATH = UpstreamPath("/api/embed", root=True)
COMPLETIONS_PATH = UpstreamPath("/completions")
INFILL_PATH = UpstreamPath("/infill", root=True)
RESPONSES_PATH = UpstreamPath("/responses")  # endpoints with `responses = true`


def upstream_path(call: ChatCall, ep: EndpointSpec) -> UpstreamPath:
    """Where an embeddings or completions request goes on `ep`'s server."""
    if call.ask.op is Operation.EMBEDDINGS:
        return OLLAMA_EMBED_PATH if ep.kind is Api.OLLAMA else EMBEDDINGS_PATH
    return INFILL_PATH if call.ask.fim and ep.fim is Fim.INFILL else COMPLETIONS_PATH


def operation_request(call: ChatCall, ep: EndpointSpec, ask_usage: bool = False) -> tuple[bytes, UpstreamPath]:
    """The body and path of an embeddings or completions request for `ep` (which
    `fleet.operations.can_serve` allowed): passed on with the endpoint's model name, or
    translated for Ollama's /api/embed and llama.cpp's /infill."""
    where = upstream_path(call, ep)
    if where is OLLAMA_EMBED_PATH:
        return orjson.dumps(to_ollama_embed(call.body, ep.name)), where
    if where is EMBEDDINGS_PATH:
        return orjson.dumps({**call.body, "model": ep.name}), where
    if where is INFILL_PATH:
        return orjson.dumps(to_infill(call.body, ep)), where
    return upstream_body(call.body, ep, ask_usage), where


def operation_reply(call: ChatCall, ep: EndpointSpec, where: UpstreamPath, reply: UpstreamReply) -> UpstreamReply:
    """A whole embeddings or completions answer in OpenAI's shape: as received, or
    translated from Ollama's /api/embed or llama.cpp's /infill. An answer that is not
    what the path answers fails the attempt (`UpstreamProtocolError`: tried elsewhere)."""
    translated: Mapping[str, Any] | None
    if where is COMPLETIONS_PATH or where is EMBEDDINGS_PATH:  # passed through: it must be that API's answer
        if where is COMPLETIONS_PATH:
            problem = reply_problem(reply.payload, "text")
        else:
            problem = _list_problem(reply.payload, "data", "a data list")
        if problem is not None:
            raise UpstreamProtocolError(ep.id, problem)
        return reply
    if where is OLLAMA_EMBED_PATH:
        encoding = call.body.get("encoding_format")
        translated = from_ollama_embed(reply.payload, ep.name, encoding if isinstance(encoding, str) else None)
    elif where is INFILL_PATH:
        translated = from_infill(reply.payload, ep.name, f"cmpl-{call.request_id}", int(time.time()))
    else:
        return reply
    if translated is None:
        raise UpstreamProtocolError(ep.id, f"the answer from {where.path} is not in the shape that API answers in")
    return UpstreamReply(reply.status, orjson.dumps(translated), dict(translated), reply.latency_ms)


DEFAULT_GROUP_OPTIONS = GroupOptions()


def body_for(
    call: ChatCall, ep: EndpointSpec, ask_usage: bool = False, options: GroupOptions = DEFAULT_GROUP_OPTIONS
) -> tuple[bytes, tuple[str, ...]]:
    """The request body in the endpoint's API, and what translating it dropped:
    OpenAI bodies as `upstream_body` makes them (a translated one shaped by the group's
    `options` first); a Responses request untouched but for `model` to an endpoint that
    speaks Responses; for Anthropic-native endpoints the client's own Messages request
    untouched but for `model` (pass-through), or the OpenAI body translated."""
    if ep.kind is not Api.ANTHROPIC:
        if call.responses_body is not None:
            if ep.responses:
                return orjson.dumps({**call.responses_body, "model": ep.name}), ()
            shaped, degraded = translated_body(call.body, call.thinking, options)
            return upstream_body(shaped, ep, ask_usage), degraded
        if call.anthropic_body is None and call.thinking is None:
            return upstream_body(call.body, ep, ask_usage), ()
        wanted = read_thinking(call.anthropic_body) if call.anthropic_body is not None else call.thinking
        shaped, degraded = translated_body(call.body, wanted, options)
        return upstream_body(shaped, ep, ask_usage), degraded
    if call.anthropic_body is not None:
        return orjson.dumps({**call.anthropic_body, "model": ep.name}), ()
    body, lost = openai_to_anthropic_request(
        call.body, default_max_tokens=ep.max_tokens or 4096, late_system=options.late_system
    )
    body["model"] = ep.name
    kinds = {d.kind.value for d in lost}
    if call.thinking is not None and call.thinking.enabled:  # no budget to ask an Anthropic server for
        kinds.add(DegradationKind.THINKING.value)
    return orjson.dumps(body), tuple(sorted(kinds))


def headers_for(ep: EndpointSpec, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The client headers passed on to `ep`: `anthropic-*` ones (`anthropic-beta`,
    `anthropic-version`) only to Anthropic-native endpoints, never to OpenAI-kind ones."""
    if ep.kind is Api.ANTHROPIC or not any(k.lower().startswith("anthropic-") for k in headers):
        return headers
    return {k: v for k, v in headers.items() if not k.lower().startswith("anthropic-")}


def chat_reply(call: ChatCall, ep: EndpointSpec, reply: UpstreamReply) -> UpstreamReply:
    """A whole chat answer, if it is one: a chat.completion's `choices` with a `message`
    each, an Anthropic Message's `content` list, a Responses object's `output` list (from
    an endpoint that speaks Responses). Anything else fails the attempt
    (`UpstreamProtocolError`: tried elsewhere), rather than reaching the client as a 200."""
    if call.responses_body is not None and ep.responses and ep.kind is not Api.ANTHROPIC:
        problem = _list_problem(reply.payload, "output", "an output list")
    elif ep.kind is Api.ANTHROPIC:
        problem = _list_problem(reply.payload, "content", "a content list")
    else:
        problem = reply_problem(reply.payload, "message")
    if problem is not None:
        raise UpstreamProtocolError(ep.id, problem)
    return reply


def _list_problem(payload: Mapping[str, Any], key: str, what: str) -> str | None:
    """Why an answer whose `key` must be a list is not one (None when it is)."""
    return None if isinstance(payload.get(key), list) else f"answered without {what}"


def openai_payload(ep: EndpointSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming answer in OpenAI's shape, whatever API the endpoint speaks."""
    if ep.kind is not Api.ANTHROPIC:
        return payload
    converted, _ = anthropic_to_openai_response(payload, model=ep.name, created=int(time.time()))
    return converted


def upstream_body(body: Mapping[str, Any], ep: EndpointSpec, ask_usage: bool = False) -> bytes:
    """The client's JSON with only `model` replaced and the endpoint's defaults filled in;
    with `ask_usage` (see `asks_usage_for`), the stream also asks for its usage chunk."""
    out = dict(body)
    out["model"] = ep.name
    if ask_usage:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    if ep.max_tokens is not None and "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = ep.max_tokens
    if ep.temperature is not None and "temperature" not in out:
        out["temperature"] = ep.temperature
    return orjson.dumps(out)

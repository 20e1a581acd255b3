"""Embeddings: OpenAI's `POST /v1/embeddings` and Ollama's `POST /api/embed` and
legacy `POST /api/embeddings`, all routed by the same attempt loop to the groups
that serve embeddings (`[groups.X] serves`). Never streamed.

Errors: OpenAI's shape on /v1/embeddings, Ollama's (`{"error": "..."}`) on /api/*
(`server.middleware.api_of`)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from octoroute.core.errors import InvalidRequest, ModelNotFound
from octoroute.core.types import Api, Importance, Operation
from octoroute.fleet.operations import Ask
from octoroute.protocols.embeddings import (
    check_embeddings_body,
    ollama_embed_request,
    openai_vectors,
    to_ollama_embed_reply,
    token_ids_input,
    usage_tokens,
)
from octoroute.server.handlers import decision_headers, note_reply, read_json, serve_call
from octoroute.server.state import LIVE, REQUEST_ID, TRACE
from octoroute.service import AUTO, ChatCall, Gateway

OLLAMA_TAG = ":latest"  # Ollama clients name models `name:tag`; `name:latest` is `name`


def decode_embeddings(body: dict[str, Any], request_id: str) -> ChatCall:
    """A checked OpenAI embeddings body as the gateway's internal call."""
    problem = check_embeddings_body(body)
    if problem is not None:
        raise InvalidRequest(problem[1], param=problem[0])
    ask = Ask(Operation.EMBEDDINGS, token_ids=token_ids_input(body["input"]))
    model = str(body.get("model") or AUTO)
    return ChatCall(body, model, False, Importance.NORMAL, None, request_id, ask=ask)


async def embeddings(request: web.Request) -> web.StreamResponse:
    """`POST /v1/embeddings`: the upstream's list as it is (or translated from Ollama's
    /api/embed), with the decision headers."""
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    call = decode_embeddings(await read_json(request), request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, trace)
    if isinstance(outcome, web.Response):
        return outcome
    reply = outcome.reply
    assert reply is not None
    note_reply(gw, trace, outcome, reply.payload, Api.OPENAI)
    headers = decision_headers(decision, outcome)
    return web.Response(status=reply.status, body=reply.body, headers=headers, content_type="application/json")


def ollama_model(gw: Gateway, name: str) -> str:
    """An Ollama client's model name as the gateway knows it: as given, or without a
    `:latest` tag when only the bare name resolves."""
    try:
        gw.resolve_model(name)
    except ModelNotFound:
        if name.endswith(OLLAMA_TAG):
            return name.removesuffix(OLLAMA_TAG)
        raise
    return name


async def _ollama_embed(request: web.Request, legacy: bool) -> web.StreamResponse:
    started = time.perf_counter_ns()
    gw = request.app[LIVE].gateway
    trace = request[TRACE]
    try:
        body = ollama_embed_request(await read_json(request), legacy)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    client_model = body["model"]
    body["model"] = ollama_model(gw, client_model)
    call = decode_embeddings(body, request[REQUEST_ID])
    decision, outcome = await serve_call(gw, call, trace, Api.OLLAMA)
    if isinstance(outcome, web.Response):
        return outcome
    reply = outcome.reply
    assert reply is not None
    note_reply(gw, trace, outcome, reply.payload, Api.OPENAI)
    vectors = openai_vectors(reply.payload)
    headers = decision_headers(decision, outcome)
    if vectors is None:
        message = f"endpoint {outcome.endpoint.id} answered with something that is not an embeddings list"
        return web.Response(
            status=502, body=orjson.dumps({"error": message}), headers=headers, content_type="application/json"
        )
    if legacy:
        answer: dict[str, Any] = {"embedding": vectors[0] if vectors else []}
    else:
        total = time.perf_counter_ns() - started
        answer = to_ollama_embed_reply(vectors, client_model, usage_tokens(reply.payload), total)
    return web.Response(body=orjson.dumps(answer), headers=headers, content_type="application/json")


async def ollama_embed(request: web.Request) -> web.StreamResponse:
    """Ollama's `POST /api/embed`: {model, input} → {model, embeddings, ...}."""
    return await _ollama_embed(request, legacy=False)


async def ollama_embeddings(request: web.Request) -> web.StreamResponse:
    """Ollama's legacy `POST /api/embeddings`: {model, prompt} → {embedding}."""
    return await _ollama_embed(request, legacy=True)

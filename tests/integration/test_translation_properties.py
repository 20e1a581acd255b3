"""Whatever an upstream's answer or stream holds, within what real servers send and a
little beyond (missing fields, odd tool calls, thinking and unknown blocks, unknown stop
reasons, streams without their end), what a client gets in another API is that API's:
spec-valid OpenAI chat completions and Responses objects and events, Anthropic messages
and events the anthropic SDK's own types accept, or an error in the client's shape.
Seeded random answers from raw upstreams on loopback, translated by the real gateway."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from tests.integration.raw_upstream import SSE_HEAD_UNDELIMITED, RawUpstream, Script, json_head, sse_event
from tests.integration.test_stream_integrity import anthropic_event, post, raw, raw_endpoint  # noqa: F401 (raw: the fixture)
from tests.spec_validation import validate
from tests.support import fleet_config

SEEDS = range(12)
REQUESTS = 24
ANTHROPIC_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
HI = [{"role": "user", "content": "hi"}]


def openai_message(rnd: random.Random) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": rnd.choice(["hi", "", None, "<think>x</think>ok"])}
    if rnd.random() < 0.4:
        pool: list[Any] = [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{bad"}},
            {"id": None, "type": "function", "function": {"name": "g", "arguments": ""}},
            {"type": "function", "function": {"name": "h", "arguments": {"x": 1}}},
        ]
        message["tool_calls"] = [rnd.choice(pool) for _ in range(rnd.randint(1, 2))]
    if rnd.random() < 0.2:
        message["reasoning_content"] = "thinking"
    return message


def openai_answer(rnd: random.Random) -> bytes:
    reason = rnd.choice(["stop", "length", "tool_calls", "content_filter", None, "eos"])
    answer: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": openai_message(rnd), "finish_reason": reason}],
    }
    if rnd.random() < 0.7:
        usages: list[dict[str, Any]] = [
            {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            {"prompt_tokens": 3},
            {},
            {
                "prompt_tokens": 3,
                "completion_tokens": 2,
                "total_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 1},
            },
        ]
        answer["usage"] = rnd.choice(usages)
    return orjson.dumps(answer)


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    return sse_event(orjson.dumps(body))


def openai_stream(rnd: random.Random) -> list[bytes]:
    middle = [
        chunk({"content": "llo"}),
        chunk({"reasoning_content": "hm"}),
        chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}),
        chunk({"content": None}),
        b": keepalive\n\n",
    ]
    events = [chunk({"role": "assistant", "content": rnd.choice(["", None, "He"])})]
    events += [rnd.choice(middle) for _ in range(rnd.randint(0, 4))]
    events.append(chunk({}, rnd.choice(["stop", "length", "tool_calls", None])))
    if rnd.random() < 0.5:
        events.append(chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}))
    if rnd.random() < 0.8:
        events.append(sse_event(b"[DONE]"))
    return events


def anthropic_blocks(rnd: random.Random) -> list[Any]:
    pool: list[Any] = [
        {"type": "text", "text": "hi"},
        {"type": "text", "text": None},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": None, "name": None, "input": "x"},
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "redacted_thinking", "data": "x"},
        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
        None,
        "str",
        {},
    ]
    return [rnd.choice(pool) for _ in range(rnd.randint(0, 4))]


def anthropic_message(rnd: random.Random) -> dict[str, Any]:
    usages: list[Any] = [{"input_tokens": 3, "output_tokens": 2}, {"input_tokens": 3}, None, {}]
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": anthropic_blocks(rnd),
        "stop_reason": rnd.choice(["end_turn", "max_tokens", "tool_use", "pause_turn", "refusal", None, "weird"]),
        "stop_sequence": None,
        "usage": rnd.choice(usages),
    }
    for key in rnd.sample(["id", "model", "stop_reason", "usage"], rnd.randint(0, 2)):
        del message[key]
    return message


def anthropic_stream(rnd: random.Random) -> list[bytes]:
    events = [anthropic_event("message_start", {"message": {**anthropic_message(rnd), "content": []}})]
    starts: dict[str, dict[str, Any]] = {
        "text": {"type": "text", "text": ""},
        "tool_use": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        "thinking": {"type": "thinking", "thinking": ""},
        "unknown": {"type": "unknown"},
    }
    deltas: dict[str, dict[str, Any]] = {
        "text": {"type": "text_delta", "text": "ab"},
        "tool_use": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        "thinking": {"type": "thinking_delta", "thinking": "x"},
        "unknown": {"type": "unknown_delta"},
    }
    for i in range(rnd.randint(0, 3)):
        kind = rnd.choice(list(starts))
        events.append(anthropic_event("content_block_start", {"index": i, "content_block": starts[kind]}))
        events += [anthropic_event("content_block_delta", {"index": i, "delta": deltas[kind]})] * rnd.randint(0, 2)
        if rnd.random() < 0.8:
            events.append(anthropic_event("content_block_stop", {"index": i}))
    reason = rnd.choice(["end_turn", "tool_use", "max_tokens", None, "weird"])
    usage: Any = rnd.choice([{"output_tokens": 2}, {}, None])
    events.append(
        anthropic_event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage})
    )
    if rnd.random() < 0.85:
        events.append(anthropic_event("message_stop", {}))
    return events


def scripts(
    rnd: random.Random, answer: Callable[[random.Random], bytes], stream: Callable[[random.Random], list[bytes]]
) -> list[tuple[bool, Script]]:
    out = []
    for _ in range(REQUESTS):
        if rnd.random() < 0.5:
            out.append((True, Script(SSE_HEAD_UNDELIMITED, stream(rnd))))
        else:
            body = answer(rnd)
            out.append((False, Script(json_head(len(body)), [body])))
    return out


def data_lines(raw_body: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[6:])
        for line in raw_body.splitlines()
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]


def check_answer(path: str, streaming: bool, status: int, raw_body: bytes) -> None:
    """What the client got is its API's, or a 5xx error in its shape."""
    if status != 200:
        assert status in (502, 503, 504), (status, raw_body[:300])
        error = orjson.loads(raw_body)
        assert (error["type"] == "error") if path == "/v1/messages" else ("error" in error), error
        return
    if not streaming:
        body = orjson.loads(raw_body)
        if path == "/v1/messages":
            assert Message.model_validate(body).type == "message"
        else:
            validate("Response" if path == "/v1/responses" else "CreateChatCompletionResponse", body)
        return
    for event in data_lines(raw_body):
        if path == "/v1/messages":
            if event["type"] not in ("error", "ping"):
                ANTHROPIC_EVENT.validate_python(event)
        elif path == "/v1/responses":
            validate("ResponseStreamEvent", event)
        elif "error" not in event:
            validate("CreateChatCompletionStreamResponse", event)


def request_for(path: str, streaming: bool) -> dict[str, Any]:
    if path == "/v1/messages":
        return {"model": "fast", "max_tokens": 50, "messages": HI, "stream": streaming}
    if path == "/v1/responses":
        return {"model": "fast", "input": "hi", "stream": streaming}
    return {"model": "fast", "messages": HI, "stream": streaming}


def run(
    rnd: random.Random,
    upstream_scripts: list[tuple[bool, Script]],
    paths: list[str],
    make_raw: Callable[..., RawUpstream],
    gateway: Any,
    kind: str,
) -> None:
    upstream = make_raw(*(script for _, script in upstream_scripts))
    models = {"fast": [raw_endpoint(upstream, "m", kind=kind)]}
    gw = gateway(fleet_config(models, retry={"max_attempts": 1}, health={"failure_threshold": 100}))
    for streaming, _ in upstream_scripts:  # one request per script, in order
        path = rnd.choice(paths)
        reply = post(gw, path, request_for(path, streaming))
        check_answer(path, streaming, reply.status, reply.data)


@pytest.mark.parametrize("seed", SEEDS)
def test_openai_answers_reach_anthropic_responses_and_openai_clients_in_their_shape(
    seed: int,
    raw: Any,  # noqa: F811
    gateway: Any,
) -> None:
    rnd = random.Random(seed)
    run(
        rnd,
        scripts(rnd, openai_answer, openai_stream),
        ["/v1/messages", "/v1/responses", "/v1/chat/completions"],
        raw,
        gateway,
        "openai",
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_anthropic_answers_reach_openai_and_responses_clients_in_their_shape(
    seed: int,
    raw: Any,  # noqa: F811
    gateway: Any,
) -> None:
    rnd = random.Random(seed)
    answer = lambda r: orjson.dumps(anthropic_message(r))  # noqa: E731
    run(
        rnd,
        scripts(rnd, answer, anthropic_stream),
        ["/v1/chat/completions", "/v1/responses"],
        raw,
        gateway,
        "anthropic",
    )

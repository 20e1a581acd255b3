"""Streams never pass off a cut or a hole as complete, the commit point is the first valid
event, and upstream answers are bounded, must be answers of their API, and reach the
client spec-valid (issue: hardening), over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.integration.raw_upstream import (
    ANSWER,
    CHUNK,
    LAST_CHUNK,
    SSE_HEAD_UNDELIMITED,
    RawUpstream,
    Script,
    json_head,
    sse_event,
)
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

HI = [{"role": "user", "content": "hi"}]
HTTP = urllib3.PoolManager()


@pytest.fixture
def raw(loop_thread) -> Iterator[Callable[..., RawUpstream]]:
    def make(*scripts: Script) -> RawUpstream:
        return RawUpstream(list(scripts))

    yield from loop_thread.serving(make)


def raw_endpoint(upstream: RawUpstream, name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "base_url": upstream.base_url, **extra}


def openai_text_until(gw, sdk_clients, error: str) -> list[str]:
    """The content pieces an openai SDK stream from `gw` yielded before it raised an
    `APIError` matching `error` (the test fails if it never raises)."""
    stream = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match=error):  # noqa: PT012 (the error comes while iterating)
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    return seen


def messages_stream_lines(gw) -> list[str]:
    """The lines of a streamed `/v1/messages` answer from `gw`, read raw."""
    body = {"model": "fast", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = post(gw, "/v1/messages", body)
    return response.data.decode().splitlines()


def ended_in_error(lines: list[str]) -> dict[str, str]:
    """Checks that a `/v1/messages` stream started, then ended with an `error` event and
    without a made-up `message_delta` (stop_reason) or `message_stop`; returns the error."""
    events = [line[7:] for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start"
    assert events[-1] == "error"
    assert "message_stop" not in events
    assert "message_delta" not in events  # no invented stop_reason
    last = orjson.loads(next(line[6:] for line in reversed(lines) if line.startswith("data: ")))
    assert last["type"] == "error"
    return last["error"]


def post(gw, path: str, body: object) -> urllib3.BaseHTTPResponse:
    """`body` as JSON to `path` on the gateway, read whole."""
    return HTTP.request("POST", gw.url + path, body=orjson.dumps(body), headers={"content-type": "application/json"})


def mid_stream_failures(gw) -> int:
    """The gateway's count of streams that failed after the commit point (`/metrics.json`)."""
    snapshot = orjson.loads(HTTP.request("GET", f"{gw.url}/metrics.json").data)
    return sum(ep["mid_stream_failures"] for ep in snapshot["endpoints"])


CUT_AFTER_FIRST = Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK)])
WHOLE_UNDELIMITED = Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), sse_event(LAST_CHUNK), sse_event(b"[DONE]")])


def test_an_openai_stream_cut_after_its_first_event_ends_with_an_error_event(raw, gateway, sdk_clients):
    upstream = raw(CUT_AFTER_FIRST)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    seen = openai_text_until(gw, sdk_clients, "ended without its final event")
    assert seen == ["Hel"]  # what arrived before the cut was relayed, then the error


def test_an_anthropic_client_never_gets_a_made_up_message_stop(raw, gateway, sdk_clients):
    upstream = raw(CUT_AFTER_FIRST)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    ended_in_error(messages_stream_lines(gw))
    client = sdk_clients.anthropic(gw)
    with pytest.raises(anthropic.APIStatusError, match="ended without its final event"):  # noqa: SIM117
        with client.messages.stream(model="fast", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()


def test_a_stream_delimited_by_the_connection_that_ends_properly_is_a_success(raw, gateway, sdk_clients):
    upstream = raw(WHOLE_UNDELIMITED)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    stream = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello"


def test_an_invalid_first_event_is_a_failed_attempt_retried_elsewhere(raw, upstreams, gateway, sdk_clients):
    bad = raw(Script(SSE_HEAD_UNDELIMITED, [b"data: {not json\n\n", sse_event(LAST_CHUNK)]))
    good = upstreams("good")
    models = {"fast": [raw_endpoint(bad, "bad", id="bad", priority=2), endpoint(good, "good", id="good")]}
    gw = gateway(fleet_config(models))
    raw_response = sdk_clients.openai(gw).chat.completions.with_raw_response.create(
        model="fast", messages=HI, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw_response.parse() if c.choices)
    assert raw_response.headers["X-Octoroute-Endpoint"] == "good"
    assert raw_response.headers["X-Octoroute-Attempts"] == "2"
    assert text
    assert bad.served == 1


def test_keep_alive_comments_before_the_first_event_do_not_commit(raw, gateway, sdk_clients):
    upstream = raw(Script(SSE_HEAD_UNDELIMITED, [b": ping\n\n", sse_event(CHUNK), sse_event(LAST_CHUNK)]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    stream = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello"


def test_an_answer_over_the_size_limit_fails_the_attempt(raw, upstreams, gateway, sdk_clients):
    huge = b" " * 100_000 + ANSWER  # valid JSON, just too big
    declared = raw(Script(json_head(len(huge)), [huge]))
    undeclared = raw(Script(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n", [huge]))
    limits = {"max_response_bytes": 65_536}
    for upstream in (declared, undeclared):
        alone = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}, limits=limits, retry={"max_attempts": 1}))
        with pytest.raises(openai.APIStatusError) as caught:
            sdk_clients.openai(alone).chat.completions.create(model="fast", messages=HI)
        assert caught.value.status_code == 502
        assert "65,536-byte limit" in caught.value.message
    good = upstreams("good")
    models = {"fast": [raw_endpoint(declared, "big", priority=2), endpoint(good, "good", id="good")]}
    gw = gateway(fleet_config(models, limits=limits))
    served = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="fast", messages=HI)
    assert served.headers["X-Octoroute-Endpoint"] == "good"


def test_an_event_that_never_ends_is_bounded_before_and_after_the_commit_point(
    raw, upstreams, gateway, sdk_clients, loop_thread
):
    endless = b"data: " + b"x" * 50_000  # no end of event, then the connection closes
    limits = {"max_event_bytes": 4096}
    before = raw(Script(SSE_HEAD_UNDELIMITED, [endless]))
    good = upstreams("good")
    models = {"fast": [raw_endpoint(before, "endless", priority=2), endpoint(good, "good", id="good")]}
    gw = gateway(fleet_config(models, limits=limits))
    served = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="fast", messages=HI, stream=True)
    assert served.headers["X-Octoroute-Endpoint"] == "good"
    served.parse().close()
    committed = asyncio.Event()
    after = raw(Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), committed, endless]))
    gw_after = gateway(fleet_config({"fast": [raw_endpoint(after, "m")]}, limits=limits))
    stream = sdk_clients.openai(gw_after).chat.completions.create(model="fast", messages=HI, stream=True)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.content == "Hel"  # the client has the first event: committed
    loop_thread.loop.call_soon_threadsafe(committed.set)
    with pytest.raises(openai.APIError, match="exceeded 4,096 bytes"):
        next(chunks)


def test_limits_are_checked_by_config_validation(tmp_path):
    from octoroute.config import parse_config
    from octoroute.core.errors import ConfigError

    base = {"models": {"fast": [{"name": "m", "base_url": "http://127.0.0.1:1/v1"}]}}
    with pytest.raises(ConfigError) as caught:
        parse_config({**base, "limits": {"max_event_bytes": 10, "max_response_bytes": "big"}}, {})
    text = str(caught.value)
    assert "limits.max_event_bytes" in text
    assert "limits.max_response_bytes" in text


BAD_AFTER_FIRST = Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), b"data: {not json\n\n", sse_event(LAST_CHUNK)])


CUT_INSIDE_AN_EVENT = Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), b'data: {"id":"c1","object":"chat.comp'])


def test_a_stream_cut_inside_an_event_never_relays_the_half_event(raw, gateway, sdk_clients):
    """The connection ends in the middle of an event's JSON: what came before is relayed,
    the half event is not (the SDK would fail to parse it before seeing any error), and
    the stream ends with the gateway's error event instead."""
    upstream = raw(CUT_INSIDE_AN_EVENT)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    response = post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI, "stream": True})
    data = [line[6:] for line in response.data.decode().splitlines() if line.startswith("data: ")]
    assert len(data) == 2, data
    assert orjson.loads(data[0])["choices"][0]["delta"]["content"] == "Hel"
    assert orjson.loads(data[1])["error"]["message"].endswith("the stream was cut inside an event")
    assert openai_text_until(gw, sdk_clients, "cut inside an event") == ["Hel"]
    client = sdk_clients.anthropic(gw)
    with (
        pytest.raises(anthropic.APIStatusError, match="cut inside an event"),
        client.messages.stream(model="fast", max_tokens=50, messages=HI) as anthropic_stream,
    ):
        anthropic_stream.get_final_message()


def test_a_whole_last_event_without_its_blank_line_is_relayed(raw, gateway, sdk_clients):
    upstream = raw(Script(SSE_HEAD_UNDELIMITED, [sse_event(CHUNK), b"data: " + LAST_CHUNK]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    stream = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello"


def test_an_unreadable_event_after_the_commit_point_ends_an_anthropic_stream_with_an_error(raw, gateway, sdk_clients):
    upstream = raw(BAD_AFTER_FIRST)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    lines = messages_stream_lines(gw)
    assert ended_in_error(lines)["message"] == "upstream stream failed: it sent an event that is not JSON"
    assert mid_stream_failures(gw) == 1
    text = [orjson.loads(line[6:]) for line in lines if line.startswith("data: ") and '"text_delta"' in line]
    assert [t["delta"]["text"] for t in text] == ["Hel"]


@pytest.mark.parametrize("answer", [b"{not json", b"[1, 2]"])
def test_a_stream_request_answered_with_an_unreadable_whole_body_is_retried_elsewhere(
    answer, raw, upstreams, gateway, sdk_clients
):
    bad = raw(Script(json_head(len(answer)), [answer]))
    good = upstreams("good")
    models = {"fast": [raw_endpoint(bad, "bad", id="bad", priority=2), endpoint(good, "good", id="good")]}
    gw = gateway(fleet_config(models))
    with sdk_clients.anthropic(gw).messages.stream(model="fast", max_tokens=50, messages=HI) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert bad.served == 1


def anthropic_event(kind: str, payload: dict[str, object]) -> bytes:
    return f"event: {kind}\n".encode() + sse_event(orjson.dumps({"type": kind, **payload}))


ANTHROPIC_START = anthropic_event(
    "message_start",
    {
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        }
    },
) + anthropic_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
ANTHROPIC_TEXT = anthropic_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
ANTHROPIC_END = (
    anthropic_event("content_block_stop", {"index": 0})
    + anthropic_event(
        "message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 2}}
    )
    + anthropic_event("message_stop", {})
)


def test_an_unreadable_event_from_an_anthropic_upstream_ends_an_openai_stream_with_an_error(raw, gateway, sdk_clients):
    """Translated for an OpenAI client, an Anthropic-native stream with a hole in it ends
    with the error event instead of a completion that silently lacks the missing part."""
    upstream = raw(
        Script(SSE_HEAD_UNDELIMITED, [ANTHROPIC_START, ANTHROPIC_TEXT, b"data: {not json\n\n", ANTHROPIC_END])
    )
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m", kind="anthropic")]}))
    assert openai_text_until(gw, sdk_clients, "an event that is not JSON") == ["", "Hel"]  # role, then text
    assert mid_stream_failures(gw) == 1
    whole = raw(Script(SSE_HEAD_UNDELIMITED, [ANTHROPIC_START, ANTHROPIC_TEXT, ANTHROPIC_END]))
    gw_whole = gateway(fleet_config({"fast": [raw_endpoint(whole, "m", kind="anthropic")]}))
    stream = sdk_clients.openai(gw_whole).chat.completions.create(model="fast", messages=HI, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hel"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_an_unreadable_event_from_llama_cpp_infill_ends_a_completions_stream_with_an_error(raw, gateway):
    events = [
        b'data: {"content":"a","stop":false}\n\n',
        b"data: {not json\n\n",
        b'data: {"content":"","stop":true}\n\n',
    ]
    upstream = raw(Script(SSE_HEAD_UNDELIMITED, events))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m", fim="infill")]}))
    body = {"model": "fast", "prompt": "def f(", "suffix": "):", "stream": True}
    response = post(gw, "/v1/completions", body)
    data = [line[6:] for line in response.data.decode().splitlines() if line.startswith("data: ")]
    assert len(data) == 2, data  # the text before the hole, then the error: no [DONE]
    assert orjson.loads(data[0])["choices"][0]["text"] == "a"
    assert orjson.loads(data[1])["error"]["message"] == "upstream stream failed: it sent an event that is not JSON"
    assert mid_stream_failures(gw) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"model": "fast", "messages": HI, "stream": True}),
        ("/v1/responses", {"model": "fast", "input": "hi", "stream": True}),
    ],
)
def test_an_unreadable_event_ends_ollama_and_responses_streams_with_an_error(path, body, raw, gateway):
    upstream = raw(BAD_AFTER_FIRST)
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    response = post(gw, path, body)
    assert response.status == 200
    if path == "/api/chat":  # NDJSON lines: the text pieces, then one error line
        lines = [orjson.loads(line) for line in response.data.splitlines()]
        text = "".join(line["message"]["content"] for line in lines[:-1])
        last = lines[-1]["error"]
    else:  # SSE: the text deltas, then the failure
        events = [orjson.loads(line[6:]) for line in response.data.splitlines() if line.startswith(b"data: ")]
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        last = orjson.dumps(events[-1]).decode()
    assert text == "Hel"  # what came before the hole, nothing after it
    assert "it sent an event that is not JSON" in last
    assert mid_stream_failures(gw) == 1


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"{}", "answered without choices holding a message"),
        (b'{"choices": []}', "answered without choices holding a message"),
        (b'{"choices": [{"message": null}]}', "answered without choices holding a message"),
        (b'{"error": {"message": "model is loading"}}', "answered 200 with an error: model is loading"),
    ],
)
def test_a_200_that_is_not_a_chat_completion_fails_the_attempt(answer, why, raw, upstreams, gateway, sdk_clients):
    bad = raw(Script(json_head(len(answer)), [answer]))
    alone = gateway(fleet_config({"fast": [raw_endpoint(bad, "m")]}, retry={"max_attempts": 1}))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk_clients.openai(alone).chat.completions.create(model="fast", messages=HI)
    assert caught.value.status_code == 502
    assert why in caught.value.message
    good = upstreams("good")
    models = {"fast": [raw_endpoint(bad, "bad", id="bad", priority=2), endpoint(good, "good", id="good")]}
    served = sdk_clients.openai(gateway(fleet_config(models))).chat.completions.with_raw_response.create(
        model="fast", messages=HI
    )
    assert served.headers["X-Octoroute-Endpoint"] == "good"  # retried elsewhere, before any byte reached the client
    assert served.parse().choices[0].message.content


def test_a_completion_missing_fields_the_spec_requires_gets_them(raw, gateway, sdk_clients):
    """A server that sends only the choices (no id, object, created, model; no index or
    finish_reason; a null usage): the client still gets a spec-valid chat.completion."""
    answer = b'{"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": null}'
    upstream = raw(Script(json_head(len(answer)), [answer]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    reply = post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI})
    body = orjson.loads(reply.data)
    validate("CreateChatCompletionResponse", body)
    assert body["id"] == "chatcmpl-" + reply.headers["X-Request-Id"]
    assert (body["object"], body["model"], body["choices"][0]["finish_reason"]) == ("chat.completion", "m", "stop")
    assert "usage" not in body
    completion = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)  # strict validation
    assert completion.choices[0].message.content == "hi"


def test_a_text_completion_without_text_fails_the_attempt(raw, gateway):
    answer = b'{"choices": [{"message": {"content": "hi"}}]}'
    upstream = raw(Script(json_head(len(answer)), [answer]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}, retry={"max_attempts": 1}))
    reply = post(gw, "/v1/completions", {"model": "fast", "prompt": "hi"})
    assert reply.status == 502
    assert "answered without choices holding a text" in orjson.loads(reply.data)["error"]["message"]


def test_an_anthropic_native_200_without_content_fails_the_attempt(raw, gateway, sdk_clients):
    answer = b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}'
    upstream = raw(Script(json_head(len(answer)), [answer]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m", kind="anthropic")]}, retry={"max_attempts": 1}))
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=10, messages=HI)
    assert caught.value.status_code == 502
    assert "answered without a content list" in caught.value.message


def test_an_embeddings_200_without_a_data_list_fails_the_attempt(raw, gateway):
    answer = b'{"object": "list", "data": null}'
    upstream = raw(Script(json_head(len(answer)), [answer]))
    models = {"fast": [raw_endpoint(upstream, "chat")], "embed": [raw_endpoint(upstream, "nomic-embed")]}
    data = fleet_config(models, retry={"max_attempts": 1}, groups={"embed": {"serves": ["embeddings"]}})
    gw = gateway(data)
    reply = post(gw, "/v1/embeddings", {"model": "embed", "input": "hi"})
    assert reply.status == 502, reply.data
    assert "answered without a data list" in orjson.loads(reply.data)["error"]["message"]


def test_a_completion_with_servers_known_quirks_reaches_the_client_spec_valid(raw, gateway, sdk_clients):
    """A null finish_reason, usage without its totals, a tool call without id or type and
    with its arguments as an object (as some servers send them): normalised, so the
    strict SDK parses the answer and the arguments are the JSON string the spec asks for."""
    answer = orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": {"city": "Paris"}}}],
                    },
                    "finish_reason": None,
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    )
    upstream = raw(Script(json_head(len(answer)), [answer]))
    gw = gateway(fleet_config({"fast": [raw_endpoint(upstream, "m")]}))
    raw_reply = post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI})
    body = orjson.loads(raw_reply.data)
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0_0", "type": "function", "function": {"name": "f", "arguments": '{"city":"Paris"}'}}
    ]
    assert body["usage"]["total_tokens"] == 5
    completion = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)  # strict validation
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'


def test_a_responses_200_without_an_output_list_fails_the_attempt(raw, upstreams, gateway, sdk_clients):
    """From an endpoint that speaks the Responses API (`responses = true`), passed through."""
    answer = b'{"object": "response", "status": "completed"}'
    bad = raw(Script(json_head(len(answer)), [answer]))
    alone = gateway(fleet_config({"fast": [raw_endpoint(bad, "m", responses=True)]}, retry={"max_attempts": 1}))
    reply = post(alone, "/v1/responses", {"model": "fast", "input": "hi"})
    assert reply.status == 502
    assert "answered without an output list" in orjson.loads(reply.data)["error"]["message"]
    good = upstreams("good")
    models = {
        "fast": [raw_endpoint(bad, "bad", id="bad", priority=2, responses=True), endpoint(good, "good", id="good")]
    }
    response = sdk_clients.openai(gateway(fleet_config(models))).responses.create(model="fast", input="hi")
    assert response.output_text  # retried on the endpoint that answers, translated from chat

"""SSE framing and OpenAI body helpers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from octoroute.protocols.openai import check_chat_body, normalised_error, parse_json_object
from octoroute.protocols.sse import EventFramer, iter_data


@pytest.mark.parametrize(
    ("chunks", "released"),
    [
        ([b"data: 1\n\n"], [b"data: 1\n\n"]),
        ([b"data: 1\n", b"\ndata: 2"], [b"", b"data: 1\n\n"]),
        ([b"data: a\n\ndata: b\n\nda", b"ta: c\n\n"], [b"data: a\n\ndata: b\n\n", b"data: c\n\n"]),
        ([b"data: x\r\n\r\n"], [b"data: x\r\n\r\n"]),
        ([b"da", b"ta", b": y", b"\n\n"], [b"", b"", b"", b"data: y\n\n"]),
    ],
)
def test_framer_releases_only_whole_events(chunks, released):
    framer = EventFramer()
    assert [framer.feed(c) for c in chunks] == released


def test_framer_keeps_the_unfinished_tail():
    framer = EventFramer()
    framer.feed(b'data: 1\n\ndata: {"half')
    assert framer.pending == b'data: {"half'


def test_iter_data_joins_multiline_data():
    assert list(iter_data(b"event: x\ndata: a\ndata: b\n\ndata: [DONE]\n\n")) == [b"a\nb", b"[DONE]"]


@pytest.mark.parametrize(
    ("raw", "status", "expected"),
    [
        (
            b'{"error":{"code":400,"message":"too long","type":"exceed_context_size_error","n_ctx":2048}}',
            400,
            {"code": "400", "message": "too long", "type": "exceed_context_size_error", "param": None, "n_ctx": 2048},
        ),
        (
            b"plain text failure",
            422,
            {"code": None, "message": "plain text failure", "type": "invalid_request_error", "param": None},
        ),
        (
            b'{"error": "bad thing"}',
            400,
            {"code": None, "message": "bad thing", "type": "invalid_request_error", "param": None},
        ),
        (
            b"",
            409,
            {"code": None, "message": "upstream answered HTTP 409", "type": "invalid_request_error", "param": None},
        ),
        pytest.param(  # llama-server while it loads its model
            b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}',
            503,
            {"code": "503", "message": "Loading model", "type": "unavailable_error", "param": None},
            id="llama.cpp-loading",
        ),
        pytest.param(  # Ollama's native shape
            b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
            503,
            {
                "code": None,
                "message": "server busy, please try again.  maximum pending requests exceeded",
                "type": "api_error",
                "param": None,
            },
            id="ollama",
        ),
        pytest.param(  # older vLLM: the error object is the whole body
            b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,'
            b'"code":404}',
            404,
            {"code": "404", "message": "The model `x` does not exist.", "type": "NotFoundError", "param": None},
            id="vllm-object-error",
        ),
        pytest.param(
            b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
            401,
            {"code": None, "message": "invalid x-api-key", "type": "authentication_error", "param": None},
            id="anthropic",
        ),
    ],
)
def test_upstream_errors_are_normalised_to_the_openai_shape(raw, status, expected):
    assert normalised_error(raw, status) == expected


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b"[]", b'"x"', b"null"])
def test_request_bodies_must_be_json_objects(raw):
    with pytest.raises(ValueError, match="request body"):
        parse_json_object(raw)


def test_chat_body_checks_only_what_the_gateway_relies_on():
    ok = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "anything": {"new": True}}
    assert check_chat_body(ok) is None
    assert check_chat_body({"messages": [{"role": "user"}]}) is None
    assert check_chat_body({"model": "", "messages": [{"role": "user"}]})[0] == "model"
    assert check_chat_body({"messages": ["hi"]})[0] == "messages[0]"


def test_missing_required_completion_fields_are_filled_with_null():
    from octoroute.protocols.openai import fill_required_fields

    llama_style = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}]}
    assert fill_required_fields(llama_style) is True
    assert llama_style["choices"][0]["logprobs"] is None
    assert llama_style["choices"][0]["message"]["refusal"] is None
    assert fill_required_fields(llama_style) is False


@pytest.mark.parametrize(
    ("reason", "calls", "want"),
    [
        (None, None, "stop"),
        ({}, None, "stop"),  # unhashable: no crash
        ([1], [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}], "tool_calls"),
        ("eos", None, "stop"),
        ("length", None, "length"),
    ],
)
def test_a_finish_reason_the_spec_does_not_know_is_replaced(reason: Any, calls: Any, want: str) -> None:
    from octoroute.protocols.openai import fill_required_fields

    message = {"role": "assistant", "content": "x", "refusal": None, **({"tool_calls": calls} if calls else {})}
    answer = {"choices": [{"index": 0, "logprobs": None, "finish_reason": reason, "message": message}]}
    assert fill_required_fields(answer) is (reason != want)
    assert answer["choices"][0]["finish_reason"] == want


def test_tool_call_entries_that_name_no_call_are_dropped_and_the_rest_completed() -> None:
    from octoroute.protocols.openai import fill_required_fields

    calls = [None, 5, {"function": None}, {"function": {"name": "f", "arguments": {"a": 1}}}]
    answer = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": calls}}]}
    assert fill_required_fields(answer) is True
    choice = answer["choices"][0]
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0_0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert choice["finish_reason"] == "tool_calls"


def test_a_conforming_answer_is_left_as_it_is() -> None:
    from octoroute.protocols.openai import fill_required_fields

    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    before = orjson.dumps(answer)
    assert fill_required_fields(answer, {"id": "other", "object": "x", "created": 2, "model": "n"}) is False
    assert orjson.dumps(answer) == before


@pytest.mark.parametrize(
    ("value", "limit", "deeper"),
    [
        ({}, 1, False),
        ({"a": []}, 1, True),
        ({"a": []}, 2, False),
        ({"a": [{"b": [1, 2]}, "x"]}, 3, True),
        ({"a": [{"b": [1, 2]}, "x"]}, 4, False),
        ({"s": "[[[[[[[["}, 1, False),  # brackets inside strings are text
    ],
)
def test_nesting_depth_counts_containers_only(value, limit, deeper):
    from octoroute.protocols.openai import nests_deeper

    assert nests_deeper(value, limit) is deeper


def test_parse_refuses_deep_json_naming_the_limit():
    deep = b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"
    with pytest.raises(ValueError, match="deeper than 16 levels, the limit"):
        parse_json_object(deep, 16)
    assert parse_json_object(deep, 41) == orjson.loads(deep)
    with pytest.raises(ValueError, match="deeper than 16 levels"):
        parse_json_object(b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}", 16)  # past orjson's own 1024

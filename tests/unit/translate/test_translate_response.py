"""Non-streamed responses and the Anthropic error helpers, checked against the SDK's own types."""

from __future__ import annotations

from pathlib import Path

import anthropic
import orjson
import pytest
from tests.spec_validation import validate
from tests.unit.translate.test_translate_golden import case_id, cases, parse_sse, translator_args

from octoroute.protocols.anthropic import error_body, error_type_for, stream_error_event
from octoroute.protocols.translate_response import (
    anthropic_to_openai_response,
    finish_reason_for,
    openai_to_anthropic_response,
    stop_reason_for,
)


@pytest.mark.parametrize("path", cases("response_openai_to_anthropic", "json"), ids=case_id)
def test_translated_message_is_a_valid_sdk_message(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    message, _ = openai_to_anthropic_response(case["input"], **translator_args(case))
    parsed = anthropic.types.Message.model_validate(message)
    assert parsed.model == case["args"]["model"]
    assert parsed.id.startswith("msg_")


@pytest.mark.parametrize(
    ("finish", "has_tools", "matched", "expected"),
    [
        ("stop", False, None, "end_turn"),
        ("stop", True, None, "tool_use"),
        ("stop", False, "END", "stop_sequence"),
        ("length", False, None, "max_tokens"),
        ("length", True, None, "max_tokens"),
        ("tool_calls", True, None, "tool_use"),
        ("function_call", False, None, "tool_use"),
        ("content_filter", False, None, "refusal"),
        (None, False, None, "end_turn"),
        ("something_new", False, None, "end_turn"),
    ],
)
def test_stop_reason_mapping(finish: object, has_tools: bool, matched: str | None, expected: str) -> None:
    assert stop_reason_for(finish, has_tool_use=has_tools, stop_sequence=matched) == expected


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop: object, finish: str) -> None:
    assert finish_reason_for(stop) == finish


def test_stop_sequence_only_when_the_server_names_one_of_ours() -> None:
    response = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop", "stop_reason": 128001}],
    }
    message, _ = openai_to_anthropic_response(response, model="m", stop_sequences=["END"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    response["choices"][0]["matched_stop"] = "END"
    message, _ = openai_to_anthropic_response(response, model="m", stop_sequences=["END"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_message_id_derived_from_upstream_id_when_not_given() -> None:
    message, _ = openai_to_anthropic_response({"id": "chatcmpl-AbC.9", "choices": []}, model="m")
    assert message["id"] == "msg_AbC_9"
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"
    anthropic.types.Message.model_validate(message)


def test_round_trip_openai_response_through_anthropic() -> None:
    """OpenAI answer → Anthropic message → OpenAI answer keeps text, tool calls and finish reason."""
    original = {
        "id": "chatcmpl-rt",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Reading.",
                    "refusal": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"path":"a"}'}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    message, _ = openai_to_anthropic_response(original, model="claude")
    back, lost = anthropic_to_openai_response(message, model="m", created=1)
    validate("CreateChatCompletionResponse", back)
    assert back["choices"][0]["message"] == original["choices"][0]["message"]
    assert back["choices"][0]["finish_reason"] == "tool_calls"
    assert {k: back["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == original["usage"]
    assert lost == []


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_body_shape(status: int, kind: str) -> None:
    assert error_type_for(status) == kind
    body = orjson.loads(error_body("model 'x' is not served here", status))
    assert body == {"type": "error", "error": {"type": kind, "message": "model 'x' is not served here"}}
    if kind != "request_too_large":  # documented for 413 (sent by Anthropic's edge), absent from the SDK's union
        anthropic.types.ErrorResponse.model_validate({**body, "request_id": None})


def test_stream_error_event_is_one_named_event() -> None:
    events = parse_sse(stream_error_event("upstream closed the connection", "overloaded_error"))
    assert events == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "upstream closed the connection"}})
    ]

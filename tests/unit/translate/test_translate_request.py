"""Request translation: real Claude Code requests, round trips, and the edge cases clients hit."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest
from pydantic import TypeAdapter
from tests.spec_validation import validate
from tests.unit.translate.test_translate_golden import CLAUDE_CODE

from octoroute.core.errors import TranslationError
from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.translate_request import anthropic_to_openai_request, late_system_as_user
from octoroute.protocols.translate_request_reverse import openai_to_anthropic_request, parse_tool_arguments


def claude_code_bodies() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(CLAUDE_CODE.glob("*.jsonl")):
        for n, line in enumerate(path.read_bytes().splitlines()):
            record = orjson.loads(line)
            if isinstance(record.get("body"), dict):
                found.append((f"{path.stem}#{n}", record["body"]))
    return found


CAPTURES = claude_code_bodies()


def kinds(lost: list[Degradation]) -> set[DegradationKind]:
    return {d.kind for d in lost}


def tool_use_ids(request: dict[str, Any]) -> list[str]:
    return [
        b["id"]
        for m in request["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    ]


def tool_result_ids(request: dict[str, Any]) -> list[str]:
    return [
        b["tool_use_id"]
        for m in request["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


def test_captures_are_there() -> None:
    if not CLAUDE_CODE.is_dir():
        pytest.skip(f"{CLAUDE_CODE} not present")
    assert len(CAPTURES) >= 10


def roles_in_order(request: dict[str, Any]) -> list[str]:
    """The roles an OpenAI body must have for `request`, nothing moved: the leading system,
    then per message its role (a user turn's tool results first, as tool messages)."""
    roles = ["system"] if request.get("system") else []
    for message in request["messages"]:
        content = message["content"]
        blocks = content if isinstance(content, list) else [{"type": "text"}]
        if message["role"] == "user":
            roles += ["tool"] * sum(b.get("type") == "tool_result" for b in blocks)
            roles += ["user"] if any(b.get("type") != "tool_result" for b in blocks) else []
        else:
            roles.append(message["role"])
    return roles


@pytest.mark.parametrize(("name", "request_body"), CAPTURES, ids=[name for name, _ in CAPTURES])
def test_claude_code_request_translates(name: str, request_body: dict[str, Any]) -> None:
    body, lost = anthropic_to_openai_request(request_body)
    validate("CreateChatCompletionRequest", body)
    assert len(body["tools"]) == len(request_body["tools"])
    calls = [c["id"] for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    results = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert calls == tool_use_ids(request_body)
    assert results == tool_result_ids(request_body)
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"] == "\n\n".join(b["text"] for b in request_body["system"])
    assert [m["role"] for m in body["messages"]] == roles_in_order(request_body)  # nothing moved
    assert DegradationKind.CACHE_CONTROL in kinds(lost)
    assert DegradationKind.THINKING not in kinds(lost)  # mapped per endpoint, not dropped here
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == request_body["max_tokens"]


def test_a_conversation_keeps_its_prompt_prefix_from_turn_to_turn() -> None:
    """Claude Code's second turn repeats the first (with its late system message) and adds
    to it: the translation of turn 1, as a user note too, is a prefix of turn 2's."""
    turns = [body for name, body in CAPTURES if name.startswith("b_tool_json")]
    assert len(turns) == 2
    assert [m["role"] for m in turns[0]["messages"]] == ["user", "system"]
    first, second = (anthropic_to_openai_request(t)[0]["messages"] for t in turns)
    assert second[: len(first)] == first
    notes = [late_system_as_user(m) for m in (first, second)]
    assert notes[0] is not None
    assert notes[1] is not None
    assert notes[1][: len(notes[0])] == notes[0]
    assert notes[0][2]["role"] == "user"
    assert notes[0][2]["content"].startswith("<system-note>")


@pytest.mark.parametrize(("name", "request_body"), CAPTURES, ids=[name for name, _ in CAPTURES])
def test_claude_code_request_round_trips(name: str, request_body: dict[str, Any]) -> None:
    """Anthropic → OpenAI → Anthropic keeps the turns in order, tool ids, tools and their schemas."""
    body, _ = anthropic_to_openai_request(request_body)
    back, _ = openai_to_anthropic_request(body)
    assert tool_use_ids(back) == tool_use_ids(request_body)
    assert tool_result_ids(back) == tool_result_ids(request_body)
    assert [(t["name"], t["input_schema"]) for t in back["tools"]] == [
        (t["name"], t["input_schema"]) for t in request_body["tools"]
    ]
    assert [m["role"] for m in back["messages"]] == [m["role"] for m in request_body["messages"]]
    assert back["max_tokens"] == request_body["max_tokens"]
    assert back["metadata"] == request_body["metadata"]
    TypeAdapter(anthropic.types.MessageCreateParams).validate_python(back)


def test_round_trip_keeps_blocks_in_order() -> None:
    request = {
        "model": "m",
        "max_tokens": 100,
        "system": "sys",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a", "n": [1, 2]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "body"},
                    {"type": "text", "text": "next"},
                ],
            },
        ],
        "tools": [{"name": "Read", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stop_sequences": ["X"],
        "temperature": 0.5,
        "top_p": 0.5,
    }
    body, lost = anthropic_to_openai_request(request)
    back, lost_back = openai_to_anthropic_request(body)
    assert lost == []
    assert lost_back == []
    assert back["system"] == "sys"
    assert back["messages"] == request["messages"]
    assert back["tools"] == request["tools"]
    assert back["tool_choice"] == request["tool_choice"]
    for key in ("stop_sequences", "temperature", "top_p", "max_tokens", "model"):
        assert back[key] == request[key]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "Read"}, {"tool_choice": {"type": "function", "function": {"name": "Read"}}}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    request = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    body, _ = anthropic_to_openai_request(request)
    assert {k: body[k] for k in expected} == expected
    assert "parallel_tool_calls" in body or "parallel_tool_calls" not in expected


def test_in_place_system_message_keeps_position_and_developer_role() -> None:
    request = {
        "model": "m",
        "max_tokens": 1,
        "system": "top",
        "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "env"}],
    }
    body, lost = anthropic_to_openai_request(request, system_role="developer")
    assert body["messages"] == [
        {"role": "developer", "content": "top"},
        {"role": "user", "content": "a"},
        {"role": "developer", "content": "env"},
    ]
    assert lost == []


def test_non_streaming_request_has_no_stream_fields() -> None:
    body, _ = anthropic_to_openai_request({"model": "m", "max_tokens": 1, "messages": [], "stream": False})
    assert "stream" not in body
    assert "stream_options" not in body


def test_tool_result_with_image_and_error_flag() -> None:
    request = {
        "model": "m",
        "max_tokens": 1,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "failed"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}},
                        ],
                    }
                ],
            }
        ],
    }
    body, lost = anthropic_to_openai_request(request)
    assert body["messages"] == [{"role": "tool", "tool_call_id": "t1", "content": "[tool error] failed"}]
    assert lost == [Degradation(DegradationKind.TOOL_RESULT_IMAGE, "messages[0].content[0].content[1]")]


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_unreadable_structure_raises_with_param(request_body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        anthropic_to_openai_request(request_body)
    assert caught.value.param == param


def test_unknown_and_odd_fields_never_raise() -> None:
    request = {
        "model": "m",
        "max_tokens": "lots",
        "messages": [
            {"role": "user", "content": [None, 3, {"type": "text"}, {"type": "future_block", "x": 1}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "not a dict"}]},
        ],
        "tools": [None, {"name": "ok", "input_schema": "nope"}, {"description": "nameless"}],
        "tool_choice": "auto",
        "stop_sequences": "STOP",
        "metadata": {"user_id": 5},
        "brand_new_field": {"a": 1},
    }
    body, lost = anthropic_to_openai_request(request)
    assert body["tools"] == [
        {"type": "function", "function": {"name": "ok", "parameters": {"type": "object", "properties": {}}}}
    ]
    assert body["messages"][-1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "max_tokens" not in body
    assert "stop" not in body
    assert "user" not in body
    assert Degradation(DegradationKind.UNKNOWN_FIELD, "brand_new_field") in lost
    assert Degradation(DegradationKind.UNSUPPORTED_TOOL, "tools[2]") in lost


def test_openai_request_without_tools_drops_tool_choice_and_keeps_none() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "tool_choice": "none"}
    out, _ = openai_to_anthropic_request(body)
    assert out["tool_choice"] == {"type": "none"}
    out, _ = openai_to_anthropic_request({**body, "tool_choice": "auto"})
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("  ", {}),
        ({"a": 1}, {"a": 1}),
        ('"{\\"a\\": 1}"', {"a": 1}),
        ("{bad", None),
        ("[1]", None),
        (None, None),
    ],
)
def test_parse_tool_arguments(arguments: object, expected: object) -> None:
    assert parse_tool_arguments(arguments) == expected


def test_the_claude_code_captures_are_there():
    assert len(CAPTURES) >= 10, f"expected the captures in {CLAUDE_CODE}"

"""Per-group shaping of translated requests: late system messages and the thinking request."""

from __future__ import annotations

from typing import Any

import pytest

from octoroute.config.models import GroupOptions, ThinkingParam
from octoroute.protocols.egress import translated_body
from octoroute.protocols.thinking import (
    SIGNATURE_PREFIX,
    ThinkingRequest,
    read_thinking,
    reasoning_effort_for,
    reasoning_of,
    signature_for,
    thinking_fields,
)
from octoroute.protocols.translate_request import anthropic_to_openai_request, late_system_as_user
from octoroute.protocols.translate_response import openai_to_anthropic_response

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Today is Monday."}]},
        {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "more"},
    ],
}


def test_late_system_messages_become_marked_user_notes_in_place() -> None:
    out = late_system_as_user(BODY["messages"])
    assert out is not None
    assert [m["role"] for m in out] == ["system", "user", "user", "assistant", "user", "user"]
    assert out[0] == BODY["messages"][0]  # the leading system message is the system prompt
    assert out[2]["content"] == "<system-note>\nToday is Monday.\n</system-note>"
    assert out[4]["content"] == "<system-note>\nBe brief.\n</system-note>"
    assert BODY["messages"][2]["role"] == "system"  # the input is not modified


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "a"}, {"role": "developer", "content": "b"}, {"role": "user", "content": "c"}],
        [],
    ],
)
def test_nothing_to_do_without_a_late_system_message(messages: list[dict[str, Any]]) -> None:
    assert late_system_as_user(messages) is None


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, ThinkingRequest(True, True, 1024, "high")),
        ({"type": "adaptive", "display": "omitted"}, ThinkingRequest(True, False, None, "high")),
        ({"type": "disabled"}, ThinkingRequest(False, False)),
        ({"type": "something-new"}, None),
        ("yes", None),
    ],
)
def test_read_thinking(thinking: object, expected: ThinkingRequest | None) -> None:
    assert read_thinking({"thinking": thinking, "output_config": {"effort": "high"}}) == expected


@pytest.mark.parametrize(
    ("wanted", "effort"),
    [
        (ThinkingRequest(True, budget_tokens=1024), "low"),
        (ThinkingRequest(True, budget_tokens=4095), "low"),
        (ThinkingRequest(True, budget_tokens=4096), "medium"),
        (ThinkingRequest(True, budget_tokens=16383), "medium"),
        (ThinkingRequest(True, budget_tokens=16384), "high"),
        (ThinkingRequest(True, budget_tokens=128000), "high"),
        (ThinkingRequest(True, effort="low"), "low"),
        (ThinkingRequest(True, effort="max"), "high"),
        (ThinkingRequest(True), None),  # adaptive without an effort: the server's default
        (ThinkingRequest(False), None),
    ],
)
def test_budget_maps_to_reasoning_effort_buckets(wanted: ThinkingRequest, effort: str | None) -> None:
    assert reasoning_effort_for(wanted) == effort


def test_thinking_fields_per_group_parameters() -> None:
    wanted = ThinkingRequest(True, budget_tokens=8000)
    both = (ThinkingParam.REASONING_EFFORT, ThinkingParam.CHAT_TEMPLATE_KWARGS)
    assert thinking_fields(wanted, both) == {
        "reasoning_effort": "medium",
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert thinking_fields(ThinkingRequest(False), both) == {"chat_template_kwargs": {"enable_thinking": False}}
    assert thinking_fields(wanted, ()) == {}
    assert thinking_fields(None, both) == {}


def test_translated_body_by_group_options() -> None:
    wanted = ThinkingRequest(True, budget_tokens=20000)
    body, degraded = translated_body(BODY, wanted, GroupOptions())
    assert [m["role"] for m in body["messages"]] == ["system", "user", "user", "assistant", "user", "user"]
    assert body["reasoning_effort"] == "high"
    assert degraded == ("system_as_user",)
    kept, degraded = translated_body(BODY, wanted, GroupOptions(late_system="system", thinking_params=()))
    assert kept["messages"] is BODY["messages"]
    assert "reasoning_effort" not in kept
    assert degraded == ("thinking",)  # asked for, and this group has no way to say it
    assert translated_body(BODY, None, GroupOptions(late_system="system")) == (BODY, ())
    assert "reasoning_effort" not in BODY


def test_a_thinking_block_gives_its_reasoning_back_on_the_next_turn() -> None:
    """Reasoning → thinking block (text omitted) → the client's next request → reasoning_content."""
    completion = {
        "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "Plan: é ✓", "content": "ok"}}]
    }
    wanted = read_thinking({"thinking": {"type": "adaptive", "display": "omitted"}})
    message, _ = openai_to_anthropic_response(completion, model="c", message_id="msg_1", thinking=wanted)
    assert message["content"][0] == {"type": "thinking", "thinking": "", "signature": signature_for("Plan: é ✓")}
    follow_up = {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}, message, {"role": "user", "content": "go"}],
    }
    body, lost = anthropic_to_openai_request(follow_up)
    assert body["messages"][1] == {"role": "assistant", "content": "ok", "reasoning_content": "Plan: é ✓"}
    assert lost == []


@pytest.mark.parametrize(
    "block",
    [
        {"type": "thinking", "thinking": "x", "signature": "EqQBCgIYAhIM"},  # Anthropic's own
        {"type": "thinking", "thinking": "x", "signature": SIGNATURE_PREFIX + "%%%"},  # damaged
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "x", "signature": signature_for("x")},
    ],
)
def test_only_the_gateways_own_thinking_blocks_carry_reasoning(block: dict[str, Any]) -> None:
    assert reasoning_of(block) is None

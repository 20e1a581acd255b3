"""Request checks, reasoning effort and usage of the Responses API (protocols/responses.py)."""

from __future__ import annotations

from typing import Any

import pytest

from octoroute.protocols.responses import check_responses_body, fill_response_fields, responses_usage
from octoroute.protocols.translate_responses_request import read_reasoning


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto", "input": "hi"}, None),
        ({"model": "auto", "previous_response_id": "resp_1"}, None),
        ({"input": "hi"}, "model"),
        ({"model": "", "input": "hi"}, "model"),
        ({"model": "auto"}, "input"),
        ({"model": "auto", "input": 3}, "input"),
        ({"model": "auto", "input": ["text"]}, "input"),
        ({"model": "auto", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "auto", "input": "hi", "background": True}, "background"),
        ({"model": "auto", "input": "hi", "tools": {"type": "function"}}, "tools"),
        ({"model": "auto", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "auto", "input": "hi", "max_output_tokens": True}, "max_output_tokens"),
        ({"model": "auto", "input": "hi", "previous_response_id": ""}, "previous_response_id"),
    ],
)
def test_request_checks(body: dict[str, Any], param: str | None) -> None:
    problem = check_responses_body(body)
    assert (problem[0] if problem else None) == param


@pytest.mark.parametrize(
    ("reasoning", "enabled", "effort"),
    [
        ({"effort": "none"}, False, None),
        ({"effort": "minimal"}, True, "low"),
        ({"effort": "medium"}, True, "medium"),
        ({"effort": "xhigh"}, True, "xhigh"),
    ],
)
def test_reasoning_effort(reasoning: dict[str, str], enabled: bool, effort: str | None) -> None:
    wanted = read_reasoning({"reasoning": reasoning})
    assert wanted is not None
    assert (wanted.enabled, wanted.effort) == (enabled, effort)


def test_no_effort_is_no_thinking_request() -> None:
    assert read_reasoning({"reasoning": {"summary": "auto"}}) is None  # what Codex sends
    assert read_reasoning({}) is None


def test_usage_with_details_and_without_any() -> None:
    usage = responses_usage(
        {
            "prompt_tokens": 30,
            "completion_tokens": 9,
            "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 20},
            "completion_tokens_details": {"reasoning_tokens": 4},
        }
    )
    assert usage["input_tokens_details"] == {"cached_tokens": 20, "cache_write_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 4}
    assert responses_usage(None)["total_tokens"] == 0


def test_fill_response_fields_adds_only_what_is_missing() -> None:
    response: dict[str, Any] = {"id": "r", "temperature": 0.5, "usage": {"input_tokens": 1, "output_tokens": 2}}
    assert fill_response_fields(response) is True
    assert response["temperature"] == 0.5
    assert response["top_p"] is None
    assert response["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert fill_response_fields(response) is False

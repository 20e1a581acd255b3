"""The Ollama translators' edges: model names and refusals."""

from __future__ import annotations

import pytest

from octoroute.core.errors import TranslationError
from octoroute.protocols.ollama import chat_request, done_reason, generate_request, tagged, untagged


@pytest.mark.parametrize(
    ("name", "listed"),
    [("fast", "fast:latest"), ("llama3:8b", "llama3:8b"), ("fast/qwen", "fast/qwen:latest"), ("a:b/c", "a:b/c:latest")],
)
def test_listed_names_carry_a_tag(name, listed):
    assert tagged(name) == listed


@pytest.mark.parametrize(("name", "bare"), [("fast:latest", "fast"), ("fast", None), (":latest", None), ("x:8b", None)])
def test_untagged_strips_only_latest(name, bare):
    assert untagged(name) == bare


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x", "images": "abc"}]}, "messages[0].images"),
        ({"messages": [{"role": "user", "content": "x", "images": ["***"]}]}, "messages[0].images[0]"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}, "messages[0].tool_calls"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "x"}], "format": "yaml"}, "format"),
        ({"messages": [{"role": "user", "content": "x"}], "options": [1]}, "options"),
        ({"messages": [{"role": "user", "content": "x"}], "think": "max"}, "think"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    ],
)
def test_unreadable_chat_bodies_are_400s_naming_the_field(body, param):
    with pytest.raises(TranslationError) as info:
        chat_request(body)
    assert info.value.status == 400
    assert info.value.param == param


@pytest.mark.parametrize(
    ("body", "param"), [({"prompt": 3}, "prompt"), ({"prompt": "def f(", "suffix": "x"}, "suffix")]
)
def test_generate_refuses_what_chat_cannot_do(body, param):
    with pytest.raises(TranslationError) as info:
        generate_request(body)
    assert info.value.param == param


def test_streaming_is_the_default_and_asks_for_usage():
    body, _, _ = chat_request({"messages": [{"role": "user", "content": "x"}]})
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    body, _, _ = chat_request({"messages": [{"role": "user", "content": "x"}], "stream": None})
    assert body["stream"] is True
    body, _, _ = generate_request({"prompt": "x", "stream": False, "options": {"num_predict": -2}})
    assert body["stream"] is False
    assert "stream_options" not in body
    assert "max_tokens" not in body  # -1 / -2: the server decides


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "stop"), (None, "stop"), ("odd", "stop")],
)
def test_done_reasons(finish, reason):
    assert done_reason(finish) == reason

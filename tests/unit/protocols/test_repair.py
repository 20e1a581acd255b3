"""Tool-call repair: golden files, the call shapes, and stream = whole at every split.

Golden files: tests/golden/repair/<case>.input.json holds `declared` and either
`response` (a chat.completion) or `chunks` (parsed chat.completion.chunk
objects); <case>.expected.json holds what goes out. Regenerate after an
intended change with OCTOROUTE_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.spec_validation import validate

from octoroute.protocols.repair import (
    MAX_BUFFER_CHARS,
    StreamRepair,
    TextToolCall,
    call_id_factory,
    parse_text_tool_calls,
    repair_completion,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "repair"
DECLARED = frozenset({"get_weather", "search_docs"})
WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
PARIS = TextToolCall("get_weather", '{"city":"Paris"}')


def golden_cases() -> list[Path]:
    found = sorted(GOLDEN.glob("*.input.json"))
    assert found, f"no golden inputs in {GOLDEN}"
    return found


def run_golden(case: dict[str, Any]) -> Any:
    declared = frozenset(case["declared"])
    make_id = call_id_factory("golden")
    if "response" in case:
        response = copy.deepcopy(case["response"])
        changed = repair_completion(response, declared, make_id)
        return {"changed": changed, "response": response}
    repair = StreamRepair(declared, make_id)
    out = [c for chunk in copy.deepcopy(case["chunks"]) for c in repair.feed(chunk)]
    return {"chunks": out + repair.finish()}


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.name.removesuffix(".input.json"))
def test_golden(path: Path) -> None:
    result = run_golden(orjson.loads(path.read_bytes()))
    expected_path = path.with_name(path.name.replace(".input.", ".expected."))
    if os.environ.get("OCTOROUTE_REGEN_GOLDEN"):
        expected_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    assert result == orjson.loads(expected_path.read_bytes())
    if "response" in result:
        validate("CreateChatCompletionResponse", result["response"])
    for chunk in result.get("chunks", []):
        validate("CreateChatCompletionStreamResponse", chunk)


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    ("text", "calls", "content"),
    [
        (WEATHER, [PARIS], None),
        ('\n {"name": "get_weather", "parameters": {"city": "Paris"}}\n', [PARIS], None),
        ('{"name": "get_weather", "input": {"city": "Paris"}}', [PARIS], None),
        ('{"tool": "get_weather", "args": {"city": "Paris"}}', [PARIS], None),
        ('{"tool": "get_weather", "tool_input": "{\\"city\\": \\"Paris\\"}"}', [PARIS], None),
        ('{"type": "function", "id": "x", "name": "get_weather", "arguments": {"city": "Paris"}}', [PARIS], None),
        ('{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}', [PARIS], None),
        ('{"name": "get_weather", "arguments": null}', [TextToolCall("get_weather", "{}")], None),
        (f"```json\n{WEATHER}\n```", [PARIS], None),
        (f"```\n{WEATHER}\n```", [PARIS], None),
        (f"<tool_call>\n{WEATHER}\n</tool_call>", [PARIS], None),
        (f"<tool_call>{WEATHER}", [PARIS], None),  # last closing tag missing
        (f"<tool_call>\n```json\n{WEATHER}\n```\n</tool_call>", [PARIS], None),
        (f"<tool_call>{WEATHER}</tool_call>\n<tool_call>{WEATHER}</tool_call>", [PARIS, PARIS], None),
        (f"{WEATHER}\n{WEATHER}", [PARIS, PARIS], None),
        (f"[{WEATHER}, {WEATHER}]", [PARIS, PARIS], None),
        (f"Sure.\n<tool_call>{WEATHER}</tool_call>", [PARIS], "Sure.\n"),
        (f"{WEATHER}\n\nThen I'll answer.", [PARIS], "Then I'll answer."),
        (f"<tool_call>{WEATHER}</tool_call>\n\n", [PARIS], None),
        (
            '{"name": "get_weather", "arguments": {"q": "a}\\"{["}}',
            [TextToolCall("get_weather", '{"q":"a}\\"{["}')],
            None,
        ),
    ],
)
def test_call_shapes_are_recognised(text: str, calls: list[TextToolCall], content: str | None) -> None:
    parsed = parse_text_tool_calls(text, DECLARED)
    assert parsed is not None
    assert (list(parsed.calls), parsed.content) == (calls, content)


@pytest.mark.parametrize(
    "text",
    [
        "Hello!",
        '{"name": "rm_rf", "arguments": {}}',  # undeclared
        f'[{WEATHER}, {{"name": "rm_rf", "arguments": {{}}}}]',  # one undeclared: all text
        '{"name": "get_weather"}',  # no arguments key
        '{"name": "get_weather", "description": "Weather by city", "parameters": {}}',  # a tool definition
        '{"tool": "get_weather", "status": "deprecated"}',
        '{"name": "get_weather", "arguments": [1, 2]}',
        '{"name": "get_weather", "arguments": "not json"}',
        '{"type": "custom", "name": "get_weather", "arguments": {}}',
        f"Example:\n```json\n{WEATHER}\n```",  # a fence after prose is an example
        f"Example: {WEATHER}",
        f"```python\n{WEATHER}\n```",
        f"```json\n{WEATHER}",  # fence never closed
        '{"name": "get_weather", "arguments": {"city": "Pa',  # cut short
        "[1] first point",
        "Use the <tool_call> tag to call tools.",
        f"{WEATHER}\n<tool_call>nonsense</tool_call>",  # all or nothing
    ],
)
def test_non_calls_stay_text(text: str) -> None:
    assert parse_text_tool_calls(text, DECLARED) is None


def completion(content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
    }


def test_repair_completion_ids_and_finish_reason() -> None:
    response = completion(f"<tool_call>{WEATHER}</tool_call><tool_call>{WEATHER}</tool_call>")
    assert repair_completion(response, DECLARED, lambda n: f"call_{n * 7}")
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["id"] for c in choice["message"]["tool_calls"]] == ["call_0", "call_7"]
    assert choice["message"]["content"] is None
    validate("CreateChatCompletionResponse", response)


def test_repair_completion_leaves_real_tool_calls_and_empty_declarations() -> None:
    response = completion(WEATHER)
    assert not repair_completion(response, frozenset(), call_id_factory("x"))
    response["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ]
    before = copy.deepcopy(response)
    assert not repair_completion(response, DECLARED, call_id_factory("x"))
    assert response == before


# ------------------------------------------------------------------ streaming


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def assemble(chunks: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str, str]], str | None]:
    """(content, [(id, name, arguments)], finish_reason) as the SDK's stream accumulator builds them."""
    content: str | None = None
    calls: dict[int, list[str]] = {}
    finish = None
    for c in chunks:
        for choice in c["choices"]:
            delta = choice["delta"]
            if delta.get("content"):
                content = (content or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call["index"], ["", "", ""])
                entry[0] += call.get("id") or ""
                entry[1] += call.get("function", {}).get("name") or ""
                entry[2] += call.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return content, [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))], finish


def stream_text(pieces: list[str], *, finish_chunk: bool = True) -> list[dict[str, Any]]:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    chunks = [chunk("", role="assistant"), *(chunk(p) for p in pieces)]
    if finish_chunk:
        chunks.append(chunk(finish="stop"))
    return [c for x in chunks for c in repair.feed(x)] + repair.finish()


def whole_text(text: str) -> tuple[str | None, list[tuple[str, str, str]], str | None]:
    response = completion(text)
    repair_completion(response, DECLARED, call_id_factory("s"))
    choice = response["choices"][0]
    calls = [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls", [])
    ]
    return choice["message"]["content"] or None, calls, choice["finish_reason"]


SPLIT_TEXTS = [
    f"  {WEATHER}\n",
    f"```json\n{WEATHER}\n```",
    f"<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>{WEATHER}</tool_call>",
    f"Checking.\n<tool_call>{WEATHER}</tool_call>\nDone",
    f"[{WEATHER}] and more",
    '{"name": "nope", "arguments": {}}',
    "```python\nprint(1)\n```",
    "Plain < text with <tool_ and ``` bits",
    f"Example:\n```json\n{WEATHER}\n```",
    "[1] a list",
    "   ",
    ' \n {"answer": 42}',
    "\n```\nls -la\n```",
    " <tool_call>not json</tool_call>",
    f" [ {WEATHER} ]\n",
]


@pytest.mark.parametrize("text", SPLIT_TEXTS)
def test_stream_matches_whole_at_every_split(text: str) -> None:
    expected = whole_text(text)
    for cut in range(len(text) + 1):
        for third in (cut, (cut + len(text)) // 2):
            out = stream_text([text[:cut], text[cut:third], text[third:]])
            assert assemble(out) == expected, (text[:cut], text[cut:third])
            for c in out:
                validate("CreateChatCompletionStreamResponse", c)


@pytest.mark.parametrize("text", SPLIT_TEXTS)
def test_stream_one_character_chunks(text: str) -> None:
    assert assemble(stream_text(list(text))) == whole_text(text)


def test_plain_text_passes_through_untouched() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    chunks = [chunk("", role="assistant"), chunk("Hello"), chunk(" world"), chunk(finish="stop")]
    assert [c for x in chunks for c in repair.feed(x)] == chunks


def test_role_chunk_and_usage_keep_their_order() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    usage["usage"] = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    out = [
        c
        for x in [chunk(" {", role="assistant"), chunk(WEATHER[1:]), chunk(finish="stop"), usage]
        for c in repair.feed(x)
    ]
    assert out[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert [c["choices"][0]["finish_reason"] for c in out[1:-1]] == [None, "tool_calls"]
    assert out[-1] is usage


def test_buffer_limit_releases_text() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"), max_buffer_chars=40)
    first = repair.feed(chunk('{"name": "get_weather", "arguments": '))
    assert first == []
    released = repair.feed(chunk('{"city": "Paris"}}'))
    assert assemble(released) == (WEATHER, [], None)  # released as text, not repaired
    assert repair.feed(chunk(finish="stop"))[0]["choices"][0]["finish_reason"] == "stop"
    assert MAX_BUFFER_CHARS == 64 * 1024


def test_real_tool_calls_release_held_text_and_pass() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    assert repair.feed(chunk("  ")) == []
    real = chunk(tool_calls=[{"index": 0, "id": "call_r", "type": "function", "function": {"name": "x"}}])
    out = repair.feed(real)
    assert out[0]["choices"][0]["delta"] == {"content": "  "}
    assert out[1] is real


def test_no_declared_tools_means_untouched() -> None:
    repair = StreamRepair(frozenset(), call_id_factory("s"))
    c = chunk(WEATHER, finish="stop")
    assert repair.feed(c) == [c]
    assert repair.finish() == []


def test_ordinary_fenced_answer_streams_before_the_end() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    assert repair.feed(chunk("```py")) == []
    out = repair.feed(chunk("thon\nx = 1\n"))
    assert assemble(out)[0] == "```python\nx = 1\n"


def test_unlabelled_fence_without_json_streams_before_the_end() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    assert repair.feed(chunk("\n```\n")) == []
    assert assemble(repair.feed(chunk("ls"))) == ("\n```\nls", [], None)


def test_json_answer_with_other_keys_streams_before_the_end() -> None:
    repair = StreamRepair(DECLARED, call_id_factory("s"))
    assert repair.feed(chunk('{"ans')) == []
    assert assemble(repair.feed(chunk('wer": 42, '))) == ('{"answer": 42, ', [], None)

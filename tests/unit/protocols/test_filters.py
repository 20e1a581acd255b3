"""Output filters: golden files, table-driven texts, and stream = whole at every split.

Golden files: tests/golden/filters/<case>.input.json holds `filter` (the
OutputFilter arguments) and either `response` or `chunks`; <case>.expected.json
holds what goes out (dropped chunks are absent). Regenerate after an intended
change with OCTOROUTE_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.spec_validation import validate

from octoroute.protocols.filters import DEFAULT_STOP_MARKERS, OutputFilter

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "filters"
FULL = OutputFilter(strip_think=True, drop_reasoning=True, stop_markers=DEFAULT_STOP_MARKERS)


def golden_cases() -> list[Path]:
    found = sorted(GOLDEN.glob("*.input.json"))
    assert found, f"no golden inputs in {GOLDEN}"
    return found


def run_golden(case: dict[str, Any]) -> Any:
    args = case["filter"]
    output = OutputFilter(args["strip_think"], args["drop_reasoning"], tuple(args["stop_markers"]))
    if "response" in case:
        response = copy.deepcopy(case["response"])
        changed = output.apply_completion(response)
        return {"changed": changed, "response": response}
    stream = output.stream()
    kept = [stream.feed(chunk) for chunk in copy.deepcopy(case["chunks"])]
    return {"chunks": [c for c in kept if c is not None] + stream.finish()}


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


TEXTS = [
    ("plain answer", "plain answer"),
    ("<think>plan</think>Answer", "Answer"),
    ("<think>\nplan\n</think>\n\n  Answer\n", "Answer\n"),
    ("Before <think>x</think> after", "Before after"),
    ("<think>a</think><think>b</think>c", "c"),
    ("<think>ran out of tokens", ""),
    ("reasoning leaked</think>\nAnswer", "reasoning leakedAnswer"),
    ("Hi<|im_end|>", "Hi"),
    ("a<|eot_id|>b<|end|>c<|endoftext|>d</s>", "abcd"),
    ("<think>x<|im_end|></think>y", "y"),
    ("a < b and </div> <|x|> </s", "a < b and </div> <|x|> </s"),
    ("<", "<"),
    ("<think", "<think"),
    ("<thinking>not a tag</thinking>", "<thinking>not a tag</thinking>"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), TEXTS)
def test_filter_text(text: str, expected: str) -> None:
    assert FULL.filter_text(text) == expected


def chunk(content: str | None = None, finish: str | None = None, index: int = 0, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def stream_content(output: OutputFilter, pieces: list[str], *, finish_chunk: bool) -> str:
    stream = output.stream()
    chunks = [chunk(p) for p in pieces] + ([chunk(finish="stop")] if finish_chunk else [])
    out = [c for c in map(stream.feed, chunks) if c is not None] + stream.finish()
    for c in out:
        validate("CreateChatCompletionStreamResponse", c)
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in out)


@pytest.mark.parametrize(("text", "expected"), TEXTS)
def test_stream_matches_whole_at_every_split(text: str, expected: str) -> None:
    for cut in range(len(text) + 1):
        for third in range(cut, len(text) + 1):
            pieces = [text[:cut], text[cut:third], text[third:]]
            assert stream_content(FULL, pieces, finish_chunk=cut % 2 == 0) == expected, pieces


@pytest.mark.parametrize(("text", "expected"), TEXTS)
def test_stream_one_character_chunks(text: str, expected: str) -> None:
    assert stream_content(FULL, list(text), finish_chunk=True) == expected


def test_chunks_left_empty_are_dropped_but_structural_ones_kept() -> None:
    stream = FULL.stream()
    role = chunk("<think>", role="assistant")
    assert stream.feed(role) is role
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert stream.feed(chunk("private")) is None
    assert stream.feed(chunk(None, reasoning_content="more")) is None
    end = chunk("</think>", finish="stop")
    assert stream.feed(end) is end
    usage = chunk("<|im_end|>")
    usage["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert stream.feed(usage) is usage
    calls = chunk("<|im_end|>", tool_calls=[{"index": 0, "id": "call_1", "type": "function"}])
    assert stream.feed(calls) is calls


def test_untouched_empty_chunks_pass() -> None:
    stream = FULL.stream()
    empty = chunk(None)
    assert stream.feed(empty) is empty


def test_held_partial_tag_goes_out_with_the_finish_chunk() -> None:
    stream = FULL.stream()
    assert stream.feed(chunk("x <|")) is not None
    end = stream.feed(chunk(None, finish="stop"))
    assert end is not None
    assert end["choices"][0]["delta"] == {"content": "<|"}
    assert stream.finish() == []


def test_choices_are_filtered_separately() -> None:
    stream = FULL.stream()
    stream.feed(chunk("<think>a", index=0))
    kept = stream.feed(chunk("b</s", index=1))
    assert kept is not None
    assert kept["choices"][0]["delta"]["content"] == "b"
    zero = stream.feed(chunk("</think>zero", index=0))
    assert zero is not None
    assert zero["choices"][0]["delta"]["content"] == "zero"
    assert [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in stream.finish()] == [(1, {"content": "</s"})]


def test_nothing_enabled_changes_nothing() -> None:
    output = OutputFilter(strip_think=False, drop_reasoning=False, stop_markers=())
    assert not output.active
    c = chunk("<think>x</think><|im_end|>", reasoning_content="r")
    before = copy.deepcopy(c)
    assert output.stream().feed(c) == before


def test_reasoning_dropped_from_message_only_when_asked() -> None:
    message = {"role": "assistant", "content": "Hi", "refusal": None, "reasoning_content": "r", "reasoning": "r"}
    response = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
    }
    keep = OutputFilter(strip_think=True, drop_reasoning=False, stop_markers=())
    assert not keep.apply_completion(response)
    assert FULL.apply_completion(response)
    assert message == {"role": "assistant", "content": "Hi", "refusal": None}
    assert not FULL.apply_completion(response)


def test_reasoning_kept_unless_dropped_survives_a_chunk_whose_text_was_stripped() -> None:
    """strip_think without drop_reasoning: a chunk whose content was all <think> text
    still carries its reasoning field, which becomes thinking for Anthropic clients."""
    stream = OutputFilter(strip_think=True, drop_reasoning=False, stop_markers=()).stream()
    both = chunk("<think>", reasoning_content="plan")
    assert stream.feed(both) is both
    assert both["choices"][0]["delta"] == {"content": "", "reasoning_content": "plan"}

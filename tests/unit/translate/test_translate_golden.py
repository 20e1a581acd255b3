"""Golden files for every translator: tests/golden/translate/<translator>/<case>.input.* → <case>.expected.*.

Inputs are hand-written from the API references (Anthropic Messages and
streaming docs, the OpenAI spec) with the quirks of real servers (llama.cpp,
vLLM) and of Claude Code. Each expected file holds the whole output and every
degradation as [kind, path], so any change in what a client receives shows up
as a diff here. The helpers at the top are shared with the other translate tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.spec_validation import validate

from octoroute.core.types import Degradation
from octoroute.protocols.thinking import read_thinking
from octoroute.protocols.translate_request import anthropic_to_openai_request
from octoroute.protocols.translate_request_reverse import openai_to_anthropic_request
from octoroute.protocols.translate_response import anthropic_to_openai_response, openai_to_anthropic_response
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "translate"
CLAUDE_CODE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "claude-code"


# ------------------------------------------------------------------ shared helpers


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data object) per SSE event; asserts every event has both lines."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.split(b"\n")
        names = [line[6:].strip().decode() for line in lines if line.startswith(b"event:")]
        data = [line[5:].strip() for line in lines if line.startswith(b"data:")]
        assert (len(names), len(data)) == (1, 1), f"malformed event {block!r}"
        out.append((names[0], orjson.loads(data[0])))
    return out


def assemble_anthropic(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Message a client builds from stream events (what the SDKs' accumulators do)."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = orjson.loads(orjson.dumps(event["message"]))
        elif kind == "content_block_start":
            assert event["index"] == len(message["content"]), "block indexes must be 0, 1, 2..."
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop":
            if event["index"] in partial:
                message["content"][event["index"]]["input"] = orjson.loads(partial.pop(event["index"]) or "{}")
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update(event["usage"])
    return message


def assemble_openai(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat.completion message a client builds from chunks (role, content, tool_calls by index)."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            for call in delta.get("tool_calls", []):
                slot = calls.setdefault(call["index"], {"id": "", "type": "function", "name": "", "arguments": ""})
                slot["id"] = call.get("id", slot["id"])
                slot["name"] += call.get("function", {}).get("name", "")
                slot["arguments"] += call.get("function", {}).get("arguments", "")
            finish = choice["finish_reason"] or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None, "refusal": None}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(calls.items())
        ]
    return {"message": message, "finish_reason": finish}


def translator_args(case: dict[str, Any]) -> dict[str, Any]:
    """A case's `args`; a `thinking` entry is the client's Anthropic `thinking` setting."""
    args = dict(case["args"])
    if "thinking" in args:
        args["thinking"] = read_thinking({"thinking": args["thinking"]})
    return args


def lost_as_json(lost: list[Degradation]) -> list[list[str]]:
    return [[d.kind.value, d.path] for d in lost]


def cases(folder: str, suffix: str) -> list[Path]:
    found = sorted((GOLDEN / folder).glob(f"*.input.{suffix}"))
    assert found, f"no golden inputs in {folder}"
    return found


def case_id(path: Path) -> str:
    return path.name.split(".")[0]


def expected_path(path: Path, suffix: str) -> Path:
    return path.with_name(f"{case_id(path)}.expected.{suffix}")


# ------------------------------------------------------------------ golden runners


@pytest.mark.parametrize("path", cases("request_anthropic_to_openai", "json"), ids=case_id)
def test_request_anthropic_to_openai(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    body, lost = anthropic_to_openai_request(case["input"], **case["args"])
    validate("CreateChatCompletionRequest", body)
    assert {"output": body, "degradations": lost_as_json(lost)} == orjson.loads(
        expected_path(path, "json").read_bytes()
    )


@pytest.mark.parametrize("path", cases("request_openai_to_anthropic", "json"), ids=case_id)
def test_request_openai_to_anthropic(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    validate("CreateChatCompletionRequest", case["input"])
    body, lost = openai_to_anthropic_request(case["input"], **case["args"])
    assert {"output": body, "degradations": lost_as_json(lost)} == orjson.loads(
        expected_path(path, "json").read_bytes()
    )


@pytest.mark.parametrize("path", cases("response_openai_to_anthropic", "json"), ids=case_id)
def test_response_openai_to_anthropic(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    message, lost = openai_to_anthropic_response(case["input"], **translator_args(case))
    expected = orjson.loads(expected_path(path, "json").read_bytes())
    assert {"output": message, "degradations": lost_as_json(lost)} == expected


@pytest.mark.parametrize("path", cases("response_anthropic_to_openai", "json"), ids=case_id)
def test_response_anthropic_to_openai(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    completion, lost = anthropic_to_openai_response(case["input"], **case["args"])
    validate("CreateChatCompletionResponse", completion)
    expected = orjson.loads(expected_path(path, "json").read_bytes())
    assert {"output": completion, "degradations": lost_as_json(lost)} == expected


def run_openai_stream(case: dict[str, Any]) -> tuple[bytes, OpenAIToAnthropicStream]:
    stream = OpenAIToAnthropicStream(**translator_args(case))
    out = [event for chunk in case["chunks"] for event in stream.feed(chunk)]
    out += stream.finish()
    return b"".join(out), stream


@pytest.mark.parametrize("path", cases("stream_openai_to_anthropic", "json"), ids=case_id)
def test_stream_openai_to_anthropic(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    for chunk in case["chunks"]:
        validate("CreateChatCompletionStreamResponse", chunk)
    raw, _ = run_openai_stream(case)
    assert raw == expected_path(path, "sse").read_bytes()


def run_anthropic_stream(raw: bytes) -> list[dict[str, Any]]:
    stream = AnthropicToOpenAIStream("gpt-4o", "chatcmpl-golden", 1700000000, include_usage=True)
    chunks = [chunk for _, event in parse_sse(raw) for chunk in stream.feed(event)]
    return chunks + stream.finish()


@pytest.mark.parametrize("path", cases("stream_anthropic_to_openai", "sse"), ids=case_id)
def test_stream_anthropic_to_openai(path: Path) -> None:
    chunks = run_anthropic_stream(path.read_bytes())
    for chunk in chunks:
        if "error" not in chunk:
            validate("CreateChatCompletionStreamResponse", chunk)
    expected = [orjson.loads(line) for line in expected_path(path, "jsonl").read_bytes().splitlines() if line]
    assert chunks == expected

"""Golden files for the Responses API translators:
tests/golden/translate/<translator>/<case>.input.json → <case>.expected.{json,sse}.

Inputs are hand-written from the API reference and from what Codex 0.171.0 sends
(../shared/data/codex: developer messages with ids, namespace and web_search
tools, reasoning items, store: false). Expected files hold the whole output and
every degradation, so any change a client would see shows up as a diff. Every
translated request validates as a chat request, every response and stream event
against the OpenAI OpenAPI document. Set OCTOROUTE_WRITE_GOLDEN=1 to rewrite the
expected files after a deliberate change (then read the diff).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.spec_validation import validate
from tests.unit.translate.test_translate_golden import GOLDEN, case_id, cases, expected_path, lost_as_json, parse_sse

from octoroute.protocols.responses import ToolName, response_frame
from octoroute.protocols.translate_responses_request import responses_to_chat_request
from octoroute.protocols.translate_responses_response import ItemIds, chat_to_response
from octoroute.protocols.translate_responses_stream import ChatToResponsesStream

CODEX = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "codex"
WRITE = os.environ.get("OCTOROUTE_WRITE_GOLDEN") == "1"
CREATED, COMPLETED = 1700000000, 1700000002


def _check(path: Path, suffix: str, actual: bytes) -> None:
    target = expected_path(path, suffix)
    if WRITE:
        target.write_bytes(actual)
    assert actual == target.read_bytes()


def _json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def _names(case: dict[str, Any]) -> dict[str, ToolName]:
    return {flat: ToolName(kind, name, namespace) for flat, (kind, name, namespace) in case["names"].items()}


def _frame(case: dict[str, Any]) -> dict[str, Any]:
    return response_frame(case["request"], "resp_golden", created_at=CREATED, model=case["request"]["model"])


@pytest.mark.parametrize("path", cases("request_responses_to_openai", "json"), ids=case_id)
def test_request_responses_to_openai(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    # (the inputs are not validated as CreateResponse: the spec's `input` oneOf matches a
    # typed message item both as Item and as EasyInputMessage, so no real request passes)
    out = responses_to_chat_request(case["input"])
    validate("CreateChatCompletionRequest", {**out.body, "model": "m"})
    thinking = None if out.thinking is None else [out.thinking.enabled, out.thinking.effort]
    names = {flat: [n.kind, n.name, n.namespace] for flat, n in out.names.items()}
    actual = {"output": out.body, "names": names, "thinking": thinking, "degradations": lost_as_json(out.lost)}
    _check(path, "json", _json(actual))


@pytest.mark.parametrize("path", cases("response_openai_to_responses", "json"), ids=case_id)
def test_response_openai_to_responses(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    response, lost = chat_to_response(
        case["input"], _frame(case), _names(case), ItemIds("golden"), completed_at=COMPLETED
    )
    validate("Response", response)
    _check(path, "json", _json({"output": response, "degradations": lost_as_json(lost)}))


def run_stream(case: dict[str, Any]) -> tuple[bytes, ChatToResponsesStream]:
    stream = ChatToResponsesStream(_frame(case), _names(case), ItemIds("golden"), completed_at=lambda: COMPLETED)
    out = [event for chunk in case["chunks"] for event in stream.feed(chunk)]
    out += stream.finish()
    return b"".join(out), stream


@pytest.mark.parametrize("path", cases("stream_openai_to_responses", "json"), ids=case_id)
def test_stream_openai_to_responses(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    raw, stream = run_stream(case)
    events = parse_sse(raw)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    for name, data in events:
        assert name == data["type"]
        validate("ResponseStreamEvent", data)
    terminal = [name for name, _ in events if name in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == [events[-1][0]], "exactly one terminal event, last"
    assert stream.response == events[-1][1]["response"]
    _check(path, "sse", raw)


def test_stream_final_response_equals_non_streamed_translation() -> None:
    """The response a stream ends with is the one the same answer gets unstreamed."""
    for path in cases("stream_openai_to_responses", "json"):
        case = orjson.loads(path.read_bytes())
        if any("error" in chunk for chunk in case["chunks"]):
            continue
        _, stream = run_stream(case)
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        calls: dict[int, dict[str, Any]] = {}
        usage, finish = None, None
        for chunk in case["chunks"]:
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                delta = choice["delta"]
                message["content"] += delta.get("content") or ""
                if delta.get("reasoning_content"):
                    message["reasoning_content"] = message.get("reasoning_content", "") + delta["reasoning_content"]
                for call in delta.get("tool_calls", []):
                    slot = calls.setdefault(call["index"], {"id": "", "function": {"name": "", "arguments": ""}})
                    slot["id"] = call.get("id") or slot["id"]
                    slot["function"]["name"] += call.get("function", {}).get("name", "")
                    slot["function"]["arguments"] += call.get("function", {}).get("arguments", "")
                finish = choice["finish_reason"] or finish
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        completion = {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}
        whole, _ = chat_to_response(completion, _frame(case), _names(case), ItemIds("golden"), completed_at=COMPLETED)
        assert stream.response is not None
        strip = [{k: v for k, v in item.items() if k != "id"} for item in whole["output"]]
        assert [{k: v for k, v in item.items() if k != "id"} for item in stream.response["output"]] == strip, path
        assert stream.response["usage"] == whole["usage"]
        assert stream.response["status"] == whole["status"]


def test_real_codex_requests_translate() -> None:
    """Every request Codex 0.171.0 sent in the captures becomes a valid chat request
    that keeps its conversation: one system message first, the tool turn as an
    assistant tool call and its tool message, and the namespace tools flattened."""
    for capture in ("requests-tool-turn.jsonl", "requests-plain.jsonl"):
        for line in (CODEX / capture).read_bytes().splitlines():
            request = orjson.loads(line)["body"]
            out = responses_to_chat_request(request)
            validate("CreateChatCompletionRequest", {**out.body, "model": "m"})
            messages = out.body["messages"]
            assert messages[0]["role"] == "system"
            assert [m["role"] for m in messages[1:]].count("system") == 0
            assert "multi_agent_v1__spawn_agent" in out.names
            assert lost_as_json(out.lost) == [["unsupported_tool", "tools[8].web_search"]]
            assert [d.detail for d in out.lost] == ["tools.web_search"]  # X-Octoroute-Dropped's name for it
            calls = [item for item in request["input"] if item.get("type") == "function_call"]
            for call in calls:
                (assistant,) = [m for m in messages if m.get("tool_calls")]
                assert assistant["tool_calls"][0]["id"] == call["call_id"]
                assert messages[-1] == {
                    "role": "tool",
                    "tool_call_id": call["call_id"],
                    "content": request["input"][-1]["output"],
                }


def test_golden_folders_exist() -> None:
    for folder in ("request_responses_to_openai", "response_openai_to_responses", "stream_openai_to_responses"):
        assert (GOLDEN / folder).is_dir()

"""Properties of the translators: any body of either API translates or raises
the documented `TranslationError` (nothing else), and any chunking of a
recorded stream's bytes gives the same translated output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.bodies import BOUNDED, anything, chat_bodies, json_values, messages_bodies
from tests.unit.translate.test_translate_golden import CLAUDE_CODE, case_id, cases, run_openai_stream, translator_args

from octoroute.core.errors import TranslationError
from octoroute.protocols.sse import EventFramer, iter_data
from octoroute.protocols.translate_request import anthropic_to_openai_request
from octoroute.protocols.translate_request_reverse import openai_to_anthropic_request
from octoroute.protocols.translate_response import anthropic_to_openai_response, openai_to_anthropic_response
from octoroute.protocols.translate_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream

CAPTURED_SSE = sorted((CLAUDE_CODE / "sse").glob("*.sse"))
OPENAI_STREAMS = cases("stream_openai_to_anthropic", "json")


def translates_or_refuses(translate: Any, value: Any) -> None:
    """The translation returns, or raises TranslationError naming the field; any other exception fails."""
    refused: TranslationError | None = None
    try:
        translate(value)
    except TranslationError as exc:
        refused = exc
    if refused is not None:
        assert refused.status == 400
        assert refused.param
        assert refused.message


@BOUNDED
@given(body=messages_bodies)
def test_any_messages_body_translates_to_openai_or_is_refused(body: dict[str, Any]) -> None:
    translates_or_refuses(anthropic_to_openai_request, body)
    translates_or_refuses(lambda b: anthropic_to_openai_request(b, system_role="user"), body)


@BOUNDED
@given(body=chat_bodies)
def test_any_chat_body_translates_to_anthropic_or_is_refused(body: dict[str, Any]) -> None:
    translates_or_refuses(openai_to_anthropic_request, body)
    translates_or_refuses(lambda b: openai_to_anthropic_request(b, late_system="user"), body)


response_like = st.fixed_dictionaries(
    {},
    optional={
        "id": anything,
        "model": anything,
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": anything,
                    "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]) | anything,
                    "message": st.fixed_dictionaries(
                        {}, optional={"role": anything, "content": anything, "tool_calls": anything}
                    )
                    | anything,
                },
            )
            | anything,
            max_size=2,
        )
        | anything,
        "usage": anything,
        "content": anything,
        "stop_reason": anything,
        "type": anything,
    },
)


@BOUNDED
@given(response=response_like)
def test_any_upstream_answer_translates_or_is_refused(response: dict[str, Any]) -> None:
    translates_or_refuses(lambda r: openai_to_anthropic_response(r, model="m"), response)
    translates_or_refuses(lambda r: anthropic_to_openai_response(r, model="m", created=1), response)


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


def framed(pieces: list[bytes]) -> list[bytes]:
    """The `data:` values of the events the framer releases as `pieces` arrive."""
    framer = EventFramer(max_event_bytes=1 << 20)
    return [data for piece in pieces for data in iter_data(framer.feed(piece))]


def openai_stream_bytes(path: Path) -> tuple[dict[str, Any], bytes]:
    case = orjson.loads(path.read_bytes())
    events = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in case["chunks"])
    return case, events + b"data: [DONE]\n\n"


@pytest.mark.parametrize("path", OPENAI_STREAMS, ids=case_id)
@BOUNDED
@given(cuts=st.lists(st.integers(min_value=0), max_size=30), crlf=st.booleans())
def test_any_chunking_of_an_openai_stream_translates_the_same(path: Path, cuts: list[int], crlf: bool) -> None:
    case, raw = openai_stream_bytes(path)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    expected, _ = run_openai_stream(case)
    stream = OpenAIToAnthropicStream(**translator_args(case))
    out: list[bytes] = []
    for data in framed(split(raw, cuts)):
        if data != b"[DONE]":
            out += stream.feed(orjson.loads(data))
    out += stream.finish()
    assert b"".join(out) == expected


@pytest.mark.parametrize("path", CAPTURED_SSE, ids=lambda p: p.stem)
@BOUNDED
@given(cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_of_a_recorded_anthropic_stream_translates_the_same(path: Path, cuts: list[int]) -> None:
    raw = path.read_bytes()

    def translate(pieces: list[bytes]) -> list[dict[str, Any]]:
        stream = AnthropicToOpenAIStream("gpt-x", "chatcmpl-cap", 1700000000, include_usage=True)
        chunks = [chunk for data in framed(pieces) for chunk in stream.feed(orjson.loads(data))]
        return chunks + stream.finish()

    whole = translate([raw])
    assert len(whole) > 2
    assert translate(split(raw, cuts)) == whole


@BOUNDED
@given(events=st.lists(json_values, max_size=6))
def test_any_sequence_of_json_events_never_breaks_a_stream_translator(events: list[Any]) -> None:
    """Upstream events of the wrong shape are the upstream's fault: the translators skip them, never raise."""
    to_anthropic = OpenAIToAnthropicStream(model="m", message_id="msg_1")
    to_openai = AnthropicToOpenAIStream("m", "chatcmpl-1", 1)
    for event in events:
        if isinstance(event, dict):
            to_anthropic.feed(event)
            to_openai.feed(event)
    to_anthropic.finish()
    to_openai.finish()

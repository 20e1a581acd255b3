"""SSE framing under any chunking, its event-size bound, and stream-end detection."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoroute.protocols.sse import EventFramer, EventTooLarge, ends_stream, first_data_problem, has_data, iter_data

SEPARATORS = [b"\n\n", b"\r\n\r\n", b"\r\r"]
payloads = st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))


@given(
    values=payloads,
    separator=st.sampled_from(SEPARATORS),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_any_chunking_releases_exactly_the_whole_events(values: list[bytes], separator: bytes, cuts: list[int]) -> None:
    stream = b"".join(b"data: " + v + separator for v in values) + b"data: unfinished"
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    framer = EventFramer()
    released = b"".join(framer.feed(stream[a:b]) for a, b in itertools.pairwise(bounds))
    whole = stream[: len(stream) - len(b"data: unfinished")]
    assert released == whole
    assert framer.pending == b"data: unfinished"
    assert list(iter_data(released)) == values


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=20))
def test_framing_never_loses_or_invents_bytes(stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    framer = EventFramer()
    released = b"".join(framer.feed(stream[a:b]) for a, b in itertools.pairwise(bounds))
    assert released + framer.pending == stream


def test_a_separator_split_across_chunks_is_found() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: 1\r\n\r") == b""
    assert framer.feed(b"\n") == b"data: 1\r\n\r\n"


def test_an_event_longer_than_the_limit_is_refused_while_it_grows() -> None:
    framer = EventFramer(max_event_bytes=4096)
    framer.feed(b"data: ok\n\ndata: " + b"x" * 4000)
    with pytest.raises(EventTooLarge, match=r"exceeded 4,096 bytes"):
        framer.feed(b"x" * 1000)


def test_the_limit_trips_on_the_chunk_that_crosses_it() -> None:
    framer = EventFramer(max_event_bytes=10_000)
    for _ in range(10):  # 9,990 bytes: still within the limit
        framer.feed(b"y" * 999)
    with pytest.raises(EventTooLarge) as caught:
        framer.feed(b"y" * 999)
    assert caught.value.size == 10_989


@pytest.mark.parametrize(
    ("events", "anthropic", "ends"),
    [
        (b"data: [DONE]\n\n", False, True),
        (b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', False, True),
        (b'data: {"choices":[{"delta":{},"finish_reason": "length"}]}\n\n', False, True),
        (b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n', False, False),
        (b'event: message_stop\ndata: {"type":"message_stop"}\n\n', True, True),
        (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n', True, False),
        (b"data: [DONE]\n\n", True, False),
    ],
)
def test_what_ends_a_stream(events: bytes, anthropic: bool, ends: bool) -> None:
    assert ends_stream(events, anthropic) is ends


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        (b'data: {"a":1}\n\n', None),
        (b"data: [DONE]\n\n", None),
        (b": keep-alive\n\n", None),
        (b"data: {not json\n\n", "its first event is not valid JSON"),
        (b'data: {"a":1}\n\ndata: {broken\n\n', None),  # only the first data event is the commit point
    ],
)
def test_the_first_data_event_must_be_json(events: bytes, problem: str | None) -> None:
    assert first_data_problem(events) == problem


def test_comment_only_events_carry_no_data() -> None:
    assert not has_data(b": ping\n\n: ping\n\n")
    assert has_data(b": ping\n\ndata: {}\n\n")

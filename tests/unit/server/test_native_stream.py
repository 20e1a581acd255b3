"""`NativeStream`: a Responses endpoint's events relayed as they are, with the event
that ends the response held back until `finish`, so it is stored before a client
reading the stream sees the end."""

from __future__ import annotations

from pathlib import Path

from tests.unit.translate.test_translate_golden import parse_sse

from octoroute.server.responses_api import NativeStream

CODEX = Path(__file__).resolve().parents[4] / "shared" / "data" / "codex"


def test_the_final_event_is_held_until_finish_and_kept_as_final() -> None:
    sse = (CODEX / "responses-plain-1.sse").read_bytes()
    stream = NativeStream()
    relayed = stream.convert(sse)
    kinds = [kind for kind, _ in parse_sse(relayed)]
    assert "response.completed" not in kinds
    assert kinds == [kind for kind, _ in parse_sse(sse)][:-1]
    assert stream.final is not None
    assert stream.final["id"] == parse_sse(sse)[-1][1]["response"]["id"]
    assert stream.final["output"]
    tail = stream.finish()
    assert [kind for kind, _ in parse_sse(tail)] == ["response.completed"]
    assert stream.finish() == b""


def test_events_after_the_final_one_stay_behind_it_and_a_failure_sends_what_was_held() -> None:
    sse = (CODEX / "responses-plain-1.sse").read_bytes()
    stream = NativeStream()
    stream.convert(sse)
    assert stream.convert(b'event: keepalive\ndata: {"type":"keepalive"}\n\n') == b""
    kinds = [kind for kind, _ in parse_sse(stream.fail("upstream stream failed"))]
    assert kinds == ["response.completed", "keepalive", "error"]


def test_a_stream_without_a_final_event_is_relayed_whole_and_not_stored() -> None:
    sse = (CODEX / "responses-plain-1.sse").read_bytes()
    cut = sse[: sse.rindex(b"event: response.completed")]
    stream = NativeStream()
    assert [kind for kind, _ in parse_sse(stream.convert(cut))] == [kind for kind, _ in parse_sse(cut)]
    assert stream.final is None
    assert stream.finish() == b""

"""Token usage read out of answers and streams, and the usage chunk the gateway
asked for on a client's behalf dropped again."""

from __future__ import annotations

import orjson

from octoroute.core.types import Api
from octoroute.protocols.sse import iter_data
from octoroute.protocols.usage import StreamWatch, carries_usage, drop_usage_chunks, usage_of, wants_usage


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def content(text: str) -> dict[str, object]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}], "usage": None}


USAGE = {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


def test_usage_of_both_apis():
    assert usage_of(Api.OPENAI, {"usage": {"prompt_tokens": 5, "completion_tokens": 9}}) == (5, 9)
    assert usage_of(Api.ANTHROPIC, {"usage": {"input_tokens": 4, "output_tokens": 2}}) == (4, 2)
    assert usage_of(Api.OPENAI, {"usage": None}) == (None, None)
    assert usage_of(Api.OPENAI, {"usage": {"prompt_tokens": -1, "completion_tokens": True}}) == (None, None)


def test_only_a_usage_object_counts_as_carrying_usage():
    assert carries_usage(sse(USAGE))
    assert carries_usage(b'data: {"usage": {"prompt_tokens": 1}}\n\n')  # Python's json spacing
    assert not carries_usage(sse(content("hi"), content("there")))  # "usage": null in every chunk


def test_a_stream_watch_reads_openai_usage_and_text():
    watch = StreamWatch(Api.OPENAI, keep_text=True)
    watch.feed(sse(content("Hel"), content("lo")))
    watch.feed(sse(USAGE))
    assert (watch.input_tokens, watch.output_tokens, watch.text) == (7, 3, "Hello")


def test_a_stream_watch_keeps_no_text_unless_asked():
    watch = StreamWatch(Api.OPENAI)
    watch.feed(sse(content("Hello"), USAGE))
    assert (watch.input_tokens, watch.output_tokens, watch.text) == (7, 3, "")


def test_a_stream_watch_reads_anthropic_usage_and_text():
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}},
    ]
    watch = StreamWatch(Api.ANTHROPIC, keep_text=True)
    watch.feed(b"".join(b"event: x\ndata: " + orjson.dumps(e) + b"\n\n" for e in events))
    assert (watch.input_tokens, watch.output_tokens, watch.text) == (11, 6, "Hi")


def test_a_stream_without_usage_leaves_it_unknown():
    watch = StreamWatch(Api.OPENAI)
    watch.feed(sse(content("Hello")))
    assert (watch.input_tokens, watch.output_tokens) == (None, None)


def test_the_usage_only_chunk_is_dropped_and_the_rest_kept_in_order():
    events = sse(content("a"), content("b"), USAGE)
    kept = [orjson.loads(d) if d != b"[DONE]" else "DONE" for d in iter_data(drop_usage_chunks(events))]
    assert kept == [content("a"), content("b"), "DONE"]


def test_usage_on_a_content_chunk_is_not_dropped():
    chunk = {**content("a"), "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    first, done = iter_data(drop_usage_chunks(sse(chunk)))
    assert (orjson.loads(first), done) == (chunk, b"[DONE]")


def test_events_without_usage_and_non_sse_bodies_pass_untouched():
    plain = sse(content("a"))
    assert drop_usage_chunks(plain) is plain
    body = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1}})  # an upstream that ignored stream: true
    assert drop_usage_chunks(body) is body


def test_wants_usage_reads_stream_options():
    assert wants_usage({"stream_options": {"include_usage": True}})
    assert not wants_usage({"stream_options": {"include_usage": "yes"}})
    assert not wants_usage({})

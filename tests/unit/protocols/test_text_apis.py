"""The embeddings and completions translators (pure): Ollama's /api/embed and
llama.cpp's /infill both ways, request checks, base64 vectors."""

from __future__ import annotations

import orjson
import pytest
from tests.spec_validation import validate

from octoroute.config.topology import EndpointSpec, ResolvedTimeouts
from octoroute.protocols.completions import (
    InfillStream,
    check_completions_body,
    ends_infill_stream,
    from_infill,
    is_fim,
    to_infill,
)
from octoroute.protocols.embeddings import (
    check_embeddings_body,
    decode_vector,
    encode_vector,
    from_ollama_embed,
    ollama_embed_request,
    openai_vectors,
    to_ollama_embed,
    token_ids_input,
)
from octoroute.protocols.sse import UnreadableEvent, iter_data

EP = EndpointSpec("llama", "coder", "qwen-coder", "http://x/v1", 1.0, 1, 48, 0.2, None, ResolvedTimeouts(1, 1, 1))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, None),
        ({"input": ["a", "b"], "encoding_format": "base64", "dimensions": 3}, None),
        ({"input": [1, 2]}, None),
        ({"input": [[1], [2, 3]]}, None),
        ({"input": []}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": [True]}, "input"),
        ({"input": ["a", 1]}, "input"),
        ({"input": "x", "model": 3}, "model"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": True}, "dimensions"),
        ({"input": "x", "stream": True}, "stream"),
    ],
)
def test_embeddings_checks(body: dict[str, object], param: str | None) -> None:
    problem = check_embeddings_body(body)
    assert (problem[0] if problem else None) == param


def test_token_ids_are_recognised() -> None:
    assert token_ids_input([1, 2])
    assert token_ids_input([[1], [2]])
    assert not token_ids_input("12")
    assert not token_ids_input(["1"])


def test_ollama_embed_both_ways_keeps_order() -> None:
    assert to_ollama_embed({"model": "embed", "input": ["a", "b"], "dimensions": 2, "user": "u"}, "bge") == {
        "model": "bge",
        "input": ["a", "b"],
        "dimensions": 2,
    }
    payload = {"embeddings": [[0.5, 1], [-0.25, 0.0]], "prompt_eval_count": 4}
    floats = from_ollama_embed(payload, "bge", None)
    assert floats is not None
    validate("CreateEmbeddingResponse", floats)
    assert [(d["index"], d["embedding"]) for d in floats["data"]] == [(0, [0.5, 1.0]), (1, [-0.25, 0.0])]
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    packed = from_ollama_embed(payload, "bge", "base64")
    assert packed is not None
    assert [decode_vector(str(d["embedding"])) for d in packed["data"]] == [[0.5, 1.0], [-0.25, 0.0]]
    assert openai_vectors(packed) == [[0.5, 1.0], [-0.25, 0.0]]
    assert from_ollama_embed({"embeddings": [["x"]]}, "bge", None) is None
    assert from_ollama_embed({"error": "boom"}, "bge", None) is None


def test_openai_vectors_orders_by_index_and_refuses_gaps() -> None:
    data = [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": encode_vector([1.0])}]
    assert openai_vectors({"data": data}) == [[1.0], [2.0]]
    assert openai_vectors({"data": [{"index": 1, "embedding": [2.0]}]}) is None
    assert openai_vectors({"data": [{"index": 0, "embedding": "not base64!"}]}) is None


def test_ollama_client_requests() -> None:
    assert ollama_embed_request({"model": "e", "input": ["a"], "truncate": True}, legacy=False) == {
        "model": "e",
        "input": ["a"],
        "encoding_format": "float",
    }
    assert ollama_embed_request({"model": "e", "prompt": "p"}, legacy=True)["input"] == "p"
    for body, legacy in (({"input": "x"}, False), ({"model": "e", "input": []}, False), ({"model": "e"}, True)):
        with pytest.raises(ValueError, match=r"required|must be"):
            ollama_embed_request(body, legacy)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, None),
        ({"prompt": ["a", "b"], "suffix": "s", "stream": True}, None),
        ({"prompt": [[1, 2]]}, None),
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "suffix": 1}, "suffix"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
    ],
)
def test_completions_checks(body: dict[str, object], param: str | None) -> None:
    problem = check_completions_body(body)
    assert (problem[0] if problem else None) == param


def test_fim_needs_a_non_empty_suffix() -> None:
    assert is_fim({"suffix": "x"})
    assert not is_fim({"suffix": ""})
    assert not is_fim({})


def test_infill_request_and_answer() -> None:
    body = {"model": "coder", "prompt": "def f(", "suffix": "\n", "stop": ["\n\n"], "echo": False, "user": "u"}
    assert to_infill(body, EP) == {
        "input_prefix": "def f(",
        "input_suffix": "\n",
        "prompt": "",
        "stop": ["\n\n"],
        "n_predict": 48,
        "temperature": 0.2,
    }
    assert to_infill({**body, "max_tokens": 5, "temperature": 0}, EP)["n_predict"] == 5
    answer = {"content": "x)", "stop": True, "stop_type": "limit", "tokens_evaluated": 7, "tokens_predicted": 2}
    completion = from_infill(answer, "qwen-coder", "cmpl-1", 1700000000)
    assert completion is not None
    validate("CreateCompletionResponse", completion)
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert from_infill({"stop": True}, "m", "c", 0) is None


def test_infill_stream_becomes_completion_chunks_whatever_the_batching() -> None:
    events = [
        b'data: {"content":"a","stop":false}\n\n',
        b'data: {"content":"b","stop":false}\n\n',
        b'data: {"content":"","stop":true,"stop_type":"eos","tokens_evaluated":3,"tokens_predicted":2}\n\n',
    ]
    assert ends_infill_stream(events[2])
    assert not ends_infill_stream(events[0])
    for batches in ([b"".join(events)], events, [events[0], events[1] + events[2]]):
        stream = InfillStream("m", "cmpl-1", 1, include_usage=True)
        data = list(iter_data(b"".join(stream.convert(batch) for batch in batches)))
        assert data[-1] == b"[DONE]"
        chunks = [orjson.loads(d) for d in data[:-1]]
        assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "ab"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"]["completion_tokens"] == 2
        assert stream.done


def test_an_unreadable_infill_event_is_a_hole_the_relay_must_end_the_stream_at() -> None:
    stream = InfillStream("m", "cmpl-1", 1, include_usage=False)
    with pytest.raises(UnreadableEvent) as caught:
        stream.convert(b'data: {"content":"a","stop":false}\n\ndata: {"cont\n\ndata: {"content":"b","stop":false}\n\n')
    assert [orjson.loads(d)["choices"][0]["text"] for d in iter_data(caught.value.converted)] == ["a"]
    assert not stream.done

"""`POST /v1/completions` end to end, whole and streamed, with fill-in-the-middle: the
official `openai` SDK (strict validation) against a gateway in front of fixture
upstreams that are real HTTP servers answering /v1/completions (vLLM, Ollama's
compatibility layer) and llama.cpp's /infill."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode
from octoroute.protocols.sse import iter_data

HTTP = urllib3.PoolManager()
PREFIX = "def add(a, b):\n    return"
SUFFIX = "\n\nprint(add(1, 2))\n"


def post(url: str, body: Any) -> urllib3.BaseHTTPResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HTTP.request("POST", url, body=raw, headers={"Content-Type": "application/json"})


def stream_chunks(response: urllib3.BaseHTTPResponse) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The JSON chunks of an SSE answer, and every data value (for the `[DONE]` check)."""
    data = list(iter_data(response.data))
    return [orjson.loads(d) for d in data if d != b"[DONE]"], data


def validate_chunk(chunk: dict[str, Any]) -> None:
    """A streamed chunk against `CreateCompletionResponse`, which the spec says streamed
    and whole answers share; the spec's `finish_reason` is not nullable, but every chunk
    before the last has none (OpenAI sends null), so null is checked here as absent-yet."""
    shown = {**chunk, "choices": [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]}
    assert all(c["finish_reason"] in (None, "stop", "length") for c in chunk["choices"])
    validate("CreateCompletionResponse", shown)


@pytest.fixture
def fleet(upstreams, gateway):
    """`fast`: a server without FIM; `coder`: one without and one passing `suffix` on;
    `infill`: llama.cpp's /infill; `olla`: Ollama (FIM by default); `embed`: embeddings only."""
    plain, vllm, llama, olla, emb = (upstreams(n) for n in ("plain", "vllm", "llama", "olla", "emb"))
    data = fleet_config(
        {
            "fast": [endpoint(plain, "base-model", id="plain-1")],
            "coder": [
                endpoint(plain, "base-model", id="coder-plain", priority=5),
                endpoint(vllm, "qwen-coder", id="coder-vllm", fim="suffix"),
            ],
            "infill": [endpoint(llama, "qwen-coder-gguf", id="llama-1", fim="infill", max_tokens=64)],
            "olla": [endpoint(olla, "qwen2.5-coder:1.5b", id="olla-1", kind="ollama")],
            "embed": [endpoint(emb, "nomic", id="emb-1")],
        },
        groups={"embed": {"serves": ["embeddings"]}},
    )
    return gateway(data), plain, vllm, llama, olla, emb


def sdk(gw, strict: bool = True) -> openai.OpenAI:
    """Strict validation for whole answers. Streams use the SDK's default parsing: in strict
    mode it rejects the `finish_reason: null` that every chunk but the last carries, from
    OpenAI itself as from any server, so the chunks are checked by `validate_chunk` instead."""
    return openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0, _strict_response_validation=strict)


def test_a_completion_passes_through_and_is_spec_valid(fleet):
    gw, plain, *_ = fleet
    with sdk(gw) as client:
        raw = client.completions.with_raw_response.create(model="fast", prompt="Once upon a", max_tokens=8)
    completion = raw.parse()
    assert completion.choices[0].text == " plain continues a"
    assert completion.choices[0].finish_reason == "stop"
    validate("CreateCompletionResponse", orjson.loads(raw.http_response.content))
    assert raw.headers["X-Octoroute-Endpoint"] == "plain-1"
    sent = plain.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": "base-model", "prompt": "Once upon a", "max_tokens": 8}


def test_batched_prompts_keep_their_index(fleet):
    gw, *_ = fleet
    with sdk(gw) as client:
        completion = client.completions.create(model="fast", prompt=["one two", "three four"], max_tokens=4)
    assert [(c.index, c.text) for c in completion.choices] == [
        (0, " plain continues two"),
        (1, " plain continues four"),
    ]


def test_a_stream_relays_chunks_and_ends_with_done(fleet):
    gw, *_ = fleet
    with sdk(gw, strict=False) as client:
        chunks = list(client.completions.create(model="fast", prompt="Once upon a", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " plain continues a"
    assert chunks[-1].choices[0].finish_reason == "stop"
    response = post(f"{gw.base_url}/completions", {"model": "fast", "prompt": "x", "stream": True})
    assert response.headers["Content-Type"].startswith("text/event-stream")
    parsed, data = stream_chunks(response)
    assert data[-1] == b"[DONE]"
    assert all("usage" not in c for c in parsed)  # the gateway asked for usage; the client did not
    for chunk in parsed:
        validate_chunk(chunk)


def test_a_stream_with_usage_when_asked(fleet):
    gw, *_ = fleet
    with sdk(gw, strict=False) as client:
        chunks = list(
            client.completions.create(model="fast", prompt="a b c", stream=True, stream_options={"include_usage": True})
        )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3


def test_fim_goes_only_to_an_endpoint_that_takes_suffix(fleet):
    gw, plain, vllm, *_ = fleet
    with sdk(gw) as client:
        raw = client.completions.with_raw_response.create(model="coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=16)
    completion = raw.parse()
    assert completion.choices[0].text == f" vllm continues return <fim suffix={len(SUFFIX)}>"
    assert raw.headers["X-Octoroute-Endpoint"] == "coder-vllm"  # the higher-priority one cannot do FIM
    assert vllm.requests[-1].body["suffix"] == SUFFIX
    assert plain.requests == []
    with sdk(gw) as client:
        plain_completion = client.completions.create(model="coder", prompt="no suffix here", max_tokens=4)
    assert plain_completion.choices[0].text.startswith(" plain")  # without a suffix, priority decides


def test_fim_to_a_group_that_cannot_is_a_clear_400(fleet):
    gw, plain, *_ = fleet
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="fast", prompt=PREFIX, suffix=SUFFIX)
    message = refused.value.message
    assert "group 'fast' has no endpoint that does fill-in-the-middle" in message
    assert "groups that can: coder, infill, olla" in message
    assert refused.value.body["param"] == "model"
    assert plain.requests == []


def test_fim_through_llama_cpp_infill_is_translated(fleet):
    gw, _, _, llama, *_ = fleet
    with sdk(gw) as client:
        raw = client.completions.with_raw_response.create(model="infill", prompt=PREFIX, suffix=SUFFIX)
    completion = raw.parse()
    validate("CreateCompletionResponse", orjson.loads(raw.http_response.content))
    assert completion.choices[0].text == f" llama continues return <fim suffix={len(SUFFIX)}>"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "qwen-coder-gguf"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    sent = llama.requests[-1]
    assert sent.path == "/infill"
    assert sent.body == {"input_prefix": PREFIX, "input_suffix": SUFFIX, "prompt": "", "n_predict": 64}


def test_fim_infill_streams_as_completion_chunks(fleet):
    gw, *_ = fleet
    with sdk(gw, strict=False) as client:
        chunks = list(
            client.completions.create(
                model="infill",
                prompt=PREFIX,
                suffix=SUFFIX,
                max_tokens=2,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " llama continues"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    response = post(
        f"{gw.base_url}/completions", {"model": "infill", "prompt": PREFIX, "suffix": SUFFIX, "stream": True}
    )
    parsed, data = stream_chunks(response)
    assert data[-1] == b"[DONE]"
    for chunk in parsed:
        validate_chunk(chunk)


def test_ollama_takes_suffix_on_its_openai_api(fleet):
    gw, *_, olla, _ = fleet
    with sdk(gw) as client:
        completion = client.completions.create(model="olla", prompt=PREFIX, suffix=SUFFIX)
    assert completion.choices[0].text.startswith(" olla continues")
    assert olla.requests[-1].path == "/v1/completions"
    assert olla.requests[-1].body["suffix"] == SUFFIX


def test_auto_uses_a_group_that_serves_completions(fleet):
    gw, *_ = fleet
    response = post(f"{gw.base_url}/completions", {"model": "auto", "prompt": "hello"})
    assert response.status == 200
    assert response.headers["X-Octoroute-Tier"] == "fast"  # the default tier is absent; the first that can
    assert response.headers["X-Octoroute-Reason"] == "serves_operation"
    fim = post(f"{gw.base_url}/completions", {"model": "auto", "prompt": PREFIX, "suffix": SUFFIX})
    assert fim.status == 200
    assert fim.headers["X-Octoroute-Tier"] == "coder"


def test_errors_are_in_openai_shape(fleet):
    gw, *_, emb = fleet
    with sdk(gw) as client:
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="missing", prompt="x")
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model="embed", prompt="x")
        assert "serves completions" in refused.value.message
    for body in (
        b"{oops",
        {"model": "fast"},
        {"model": "fast", "prompt": 3},
        {"model": "fast", "prompt": "x", "suffix": 1},
    ):
        response = post(f"{gw.base_url}/completions", body)
        assert response.status == 400, body
        assert orjson.loads(response.data)["error"]["type"] == "invalid_request_error"
    assert emb.requests == []


def test_failover_and_failure_statuses(fleet):
    gw, plain, *_ = fleet
    plain.behaviour.fail_next = 1
    response = post(f"{gw.base_url}/completions", {"model": "coder", "prompt": "x"})
    assert response.status == 200
    assert response.headers["X-Octoroute-Endpoint"] == "coder-vllm"
    assert response.headers["X-Octoroute-Attempts"] == "2"
    plain.behaviour.mode = Mode.ERROR_500
    assert post(f"{gw.base_url}/completions", {"model": "fast", "prompt": "x"}).status == 502


def test_a_stream_cut_after_its_commit_point_ends_with_an_error_event(fleet):
    gw, plain, *_ = fleet
    plain.behaviour.mode = Mode.DROP_MID_STREAM
    plain.behaviour.drop_after_chunks = 1
    response = post(f"{gw.base_url}/completions", {"model": "fast", "prompt": "a b c d", "stream": True})
    assert response.status == 200
    parsed, data = stream_chunks(response)
    assert parsed[0]["choices"][0]["text"] == " plain"
    assert "upstream stream failed" in parsed[-1]["error"]["message"]
    assert data[-1] != b"[DONE]"

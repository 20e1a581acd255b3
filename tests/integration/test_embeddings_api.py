"""`POST /v1/embeddings` and Ollama's `/api/embed` / `/api/embeddings` end to end: the
official `openai` SDK (strict validation) and the official `ollama` client against a
gateway in front of fixture upstreams that are real HTTP servers, OpenAI-compatible
(vLLM, llama.cpp) and Ollama-native."""

from __future__ import annotations

import base64
import struct
from typing import Any

import ollama
import openai
import orjson
import pytest
import urllib3
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode
from octoroute.demo.text_replies import vector_of

HTTP = urllib3.PoolManager()
TEXTS = ["the first passage", "a second one", "and a third"]


def f32(values: list[float]) -> list[float]:
    """Values as float32 round-trips them (what base64 carries)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HTTP.request("POST", url, body=raw, headers={"Content-Type": "application/json", **(headers or {})})


def config(models: dict[str, list[dict[str, Any]]], **sections: Any) -> dict[str, Any]:
    """A fleet whose `embed` group serves embeddings only."""
    data = fleet_config(models, **sections)
    data["groups"] = {"embed": {"serves": ["embeddings"]}, **data.get("groups", {})}
    return data


@pytest.fixture
def fleet(upstreams, gateway):
    """Chat tiers, an `embed` group of two OpenAI-compatible servers, and an `olla` group of
    one Ollama-native server serving embeddings only."""
    chat, emb_a, emb_b, olla = upstreams("chat"), upstreams("emb-a"), upstreams("emb-b"), upstreams("olla")
    data = config(
        {
            "fast": [endpoint(chat, "chat-model", id="chat-1")],
            "embed": [
                endpoint(emb_a, "nomic-embed", id="emb-a", priority=2),
                endpoint(emb_b, "nomic-embed", id="emb-b", priority=1),
            ],
            "olla": [endpoint(olla, "bge-m3", id="olla-1", kind="ollama")],
        },
        groups={"olla": {"serves": ["embeddings"]}},
    )
    return gateway(data), chat, emb_a, emb_b, olla


def sdk(gw, strict: bool = True) -> openai.OpenAI:
    """Strict validation checks the body before the SDK decodes base64 vectors, so strict
    clients ask for floats; the SDK's default (base64) is tested with a default client."""
    return openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0, _strict_response_validation=strict)


def test_batch_keeps_order_and_index_through_the_sdk(fleet):
    gw, chat, emb_a, _, _ = fleet
    with sdk(gw) as client:
        raw = client.embeddings.with_raw_response.create(model="embed", input=TEXTS, encoding_format="float")
    result = raw.parse()
    assert [item.index for item in result.data] == [0, 1, 2]
    for item, text in zip(result.data, TEXTS, strict=True):
        assert item.embedding == vector_of(text, "emb-a")
    assert result.usage.prompt_tokens == 9
    assert raw.headers["X-Octoroute-Tier"] == "embed"
    assert raw.headers["X-Octoroute-Endpoint"] == "emb-a"
    sent = emb_a.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "nomic-embed", "input": TEXTS, "encoding_format": "float"}
    assert chat.requests == []


def test_the_sdks_default_base64_is_passed_through_and_decodes(fleet):
    gw, _, emb_a, _, _ = fleet
    with sdk(gw, strict=False) as client:
        result = client.embeddings.create(model="embed", input=TEXTS)  # the SDK asks for base64 and decodes it
    assert [item.embedding for item in result.data] == [f32(vector_of(t, "emb-a")) for t in TEXTS]
    assert emb_a.requests[-1].body["encoding_format"] == "base64"


def test_float_answer_is_spec_valid_and_passes_dimensions(fleet):
    gw, _, emb_a, _, _ = fleet
    response = post(
        f"{gw.base_url}/embeddings", {"model": "embed", "input": "one", "encoding_format": "float", "dimensions": 4}
    )
    assert response.status == 200
    body = orjson.loads(response.data)
    validate("CreateEmbeddingResponse", body)
    assert body["data"][0]["embedding"] == vector_of("one", "emb-a", 4)
    assert emb_a.requests[-1].body["dimensions"] == 4


def test_token_arrays_pass_through(fleet):
    gw, _, emb_a, _, _ = fleet
    with sdk(gw) as client:
        result = client.embeddings.create(model="embed", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert [item.embedding for item in result.data] == [vector_of([1, 2, 3], "emb-a"), vector_of([4, 5], "emb-a")]
    assert emb_a.requests[-1].body["input"] == [[1, 2, 3], [4, 5]]


def test_ollama_native_endpoint_is_translated_both_ways(fleet):
    gw, _, _, _, olla = fleet
    with sdk(gw, strict=False) as client:
        raw = client.embeddings.with_raw_response.create(model="olla", input=TEXTS, dimensions=6)
    with sdk(gw) as client:
        floats = client.embeddings.create(model="olla", input="single", encoding_format="float")
    result = raw.parse()
    assert [item.embedding for item in result.data] == [f32(vector_of(t, "olla", 6)) for t in TEXTS]
    assert result.model == "bge-m3"
    assert result.usage.prompt_tokens == 9
    first = olla.requests[0]
    assert first.path == "/api/embed"
    assert first.body == {"model": "bge-m3", "input": TEXTS, "dimensions": 6}
    assert floats.data[0].embedding == vector_of("single", "olla")
    validate("CreateEmbeddingResponse", floats.model_dump())


def test_token_arrays_never_go_to_an_ollama_native_endpoint(fleet):
    gw, _, _, _, olla = fleet
    response = post(f"{gw.base_url}/embeddings", {"model": "olla", "input": [[1, 2]]})
    assert response.status == 400
    error = orjson.loads(response.data)["error"]
    assert "token-id input" in error["message"]
    assert error["param"] == "model"
    assert olla.requests == []


def test_auto_picks_the_embeddings_group_and_chat_auto_never_does(fleet):
    gw, chat, emb_a, _, olla = fleet
    response = post(f"{gw.base_url}/embeddings", {"model": "auto", "input": "x"})
    assert response.status == 200
    assert response.headers["X-Octoroute-Tier"] == "embed"
    assert response.headers["X-Octoroute-Reason"] == "serves_operation"
    with sdk(gw) as client:
        for _ in range(3):
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert len(chat.chat_requests) == 3
    assert [r.path for r in emb_a.requests] == ["/v1/embeddings"]
    assert olla.requests == []


def test_groups_that_do_not_serve_the_operation_are_refused_with_400(fleet):
    gw, chat, emb_a, _, _ = fleet
    with sdk(gw) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="fast", input="x")
        assert "group 'fast' has no endpoint that serves embeddings" in refused.value.message
        assert "embed, olla" in refused.value.message
        with pytest.raises(openai.BadRequestError) as chat_refused:
            client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
        assert "serves chat" in chat_refused.value.message
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="chat-1", input="x")  # an endpoint id of a chat group
    assert chat.requests == []
    assert emb_a.requests == []


def test_unknown_model_is_404_and_bad_bodies_are_400(fleet):
    gw, *_ = fleet
    with sdk(gw) as client, pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    for body in (
        b"{not json",
        {"model": "embed"},
        {"model": "embed", "input": []},
        {"model": "embed", "input": [1, "mixed"]},
        {"model": "embed", "input": "x", "encoding_format": "int8"},
        {"model": "embed", "input": "x", "dimensions": 0},
        {"model": "embed", "input": "x", "stream": True},
    ):
        response = post(f"{gw.base_url}/embeddings", body)
        assert response.status == 400, body
        error = orjson.loads(response.data)["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]


def test_a_failing_endpoint_falls_over_and_all_failing_is_502(fleet):
    gw, _, emb_a, emb_b, _ = fleet
    emb_a.behaviour.fail_next = 1
    response = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x", "encoding_format": "float"})
    assert response.status == 200
    assert response.headers["X-Octoroute-Endpoint"] == "emb-b"
    assert response.headers["X-Octoroute-Attempts"] == "2"
    assert orjson.loads(response.data)["data"][0]["embedding"] == vector_of("x", "emb-b")
    emb_a.behaviour.mode = emb_b.behaviour.mode = Mode.ERROR_500
    failed = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"})
    assert failed.status == 502
    assert orjson.loads(failed.data)["error"]["type"] in ("api_error", "server_error")


def test_an_upstream_4xx_passes_through_in_openai_shape(fleet):
    gw, _, emb_a, emb_b, _ = fleet
    emb_a.behaviour.mode = Mode.REJECT_400
    response = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"})
    assert response.status == 400
    assert response.headers["X-Octoroute-Endpoint"] == "emb-a"
    assert "does not accept" in orjson.loads(response.data)["error"]["message"]
    assert emb_b.requests == []  # a 4xx is the request's fault: not retried


def test_a_garbled_ollama_answer_is_retried_then_502(upstreams, gateway):
    olla_a, olla_b = upstreams("olla-a"), upstreams("olla-b")
    gw = gateway(
        config(
            {
                "fast": [endpoint(olla_a, "chat", id="chat-1")],
                "embed": [
                    endpoint(olla_a, "bge-m3", id="olla-a", kind="ollama", priority=2),
                    endpoint(olla_b, "bge-m3", id="olla-b", kind="ollama", priority=1),
                ],
            }
        )
    )
    olla_a.behaviour.mode = Mode.GARBAGE
    response = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x", "encoding_format": "float"})
    assert response.status == 200
    assert response.headers["X-Octoroute-Endpoint"] == "olla-b"
    olla_b.behaviour.mode = Mode.GARBAGE
    assert post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"}).status == 502


def test_timeouts_are_504(upstreams, gateway):
    slow = upstreams("slow")
    slow.behaviour.mode = Mode.SLOW
    data = config({"fast": [endpoint(slow, "chat")], "embed": [endpoint(slow, "e", timeouts={"total": 0.2})]})
    data["retry"] = {"max_attempts": 1}
    gw = gateway(data)
    response = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"})
    assert response.status == 504
    assert orjson.loads(response.data)["error"]["message"]


def test_auth_and_rate_limits_apply(upstreams, gateway):
    emb = upstreams("emb")
    data = config(
        {"fast": [endpoint(emb, "chat")], "embed": [endpoint(emb, "e")]},
        auth={"enabled": True, "keys": [{"name": "rag", "key_env": "RAG_KEY", "models": ["embed"]}]},
        rate_limit={"enabled": True, "requests_per_second": 0.01, "burst": 1},
    )
    gw = gateway(data, env={"RAG_KEY": "sk-rag-0123456789"})
    assert post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"}).status == 401
    key = {"Authorization": "Bearer sk-rag-0123456789"}
    assert post(f"{gw.base_url}/embeddings", {"model": "fast", "input": "x"}, key).status == 403
    assert post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"}, key).status == 200
    limited = post(f"{gw.base_url}/embeddings", {"model": "embed", "input": "x"}, key)
    assert limited.status == 429
    assert orjson.loads(limited.data)["error"]["type"] == "rate_limit_error"


def test_metrics_count_embeddings_requests_and_tokens(fleet):
    gw, *_ = fleet
    post(f"{gw.base_url}/embeddings", {"model": "embed", "input": TEXTS})
    text = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    assert 'route="/v1/embeddings"' in text
    assert any(
        line.startswith("octoroute_tokens_total")
        and 'endpoint="emb-a"' in line
        and 'direction="input"' in line
        and line.endswith(" 9.0")
        for line in text.splitlines()
    ), text


# -- the ollama client --------------------------------------------------------


def test_ollama_client_embeds_through_any_upstream_kind(fleet):
    gw, _, emb_a, _, olla = fleet
    with ollama.Client(host=gw.url) as client:
        result = client.embed(model="embed", input=TEXTS)
        tagged = client.embed(model="olla:latest", input="single")
        legacy = client.embeddings(model="embed", prompt="legacy")
    assert [list(v) for v in result.embeddings] == [vector_of(t, "emb-a") for t in TEXTS]
    assert result.model == "embed"
    assert result.prompt_eval_count == 9
    assert result.total_duration
    assert result.total_duration > 0
    assert [list(v) for v in tagged.embeddings] == [vector_of("single", "olla")]
    assert tagged.model == "olla:latest"
    assert olla.requests[-1].body == {"model": "bge-m3", "input": "single"}
    assert list(legacy.embedding) == vector_of("legacy", "emb-a")
    assert emb_a.requests[-1].body["encoding_format"] == "float"


def test_ollama_errors_are_in_ollamas_shape(fleet):
    gw, *_ = fleet
    with ollama.Client(host=gw.url) as client:
        with pytest.raises(ollama.ResponseError) as missing:
            client.embed(model="nope", input="x")
        with pytest.raises(ollama.ResponseError) as refused:
            client.embed(model="fast", input="x")
    assert missing.value.status_code == 404
    assert "does not exist" in missing.value.error
    assert refused.value.status_code == 400
    response = post(f"{gw.url}/api/embed", b"{broken")
    assert response.status == 400
    assert set(orjson.loads(response.data)) == {"error"}
    assert post(f"{gw.url}/api/embed", {"model": "embed", "input": 5}).status == 400


def test_ollama_shape_base64_helpers_agree():
    vector = [0.5, -0.25, 1.0]
    packed = base64.b64encode(struct.pack("<3f", *vector)).decode()
    from octoroute.protocols.embeddings import decode_vector, encode_vector

    assert encode_vector(vector) == packed
    assert decode_vector(packed) == vector

"""Embeddings and text completions through the gateway to a real llama.cpp
`llama-server` (../shared/llm): the tiny random-weight model, whose output is
gibberish but whose protocol is the real one. Greedy decoding and mean pooling
make the answers deterministic, so the gateway's answers can be compared with
the server's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ollama
import openai
import orjson
import pytest
import urllib3
from tests.integration.llama import LlamaServer
from tests.spec_validation import validate
from tests.support import fleet_config

from octoroute.protocols.sse import iter_data

pytestmark = pytest.mark.llama

HTTP = urllib3.PoolManager()
TEXTS = ["hello world", "the second input", "and a third"]


def post(url: str, body: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    return HTTP.request("POST", url, body=orjson.dumps(body), headers={"Content-Type": "application/json"})


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def llama_gw(gateway, llama_tiny: LlamaServer, llama_embedder: LlamaServer):
    data = fleet_config(
        {
            "fast": [{"name": "tiny", "base_url": llama_tiny.base_url, "id": "llama-tiny"}],
            "infill": [{"name": "tiny", "base_url": llama_tiny.base_url, "id": "llama-infill", "fim": "infill"}],
            "embed": [{"name": "tiny-embed", "base_url": llama_embedder.base_url, "id": "llama-embed"}],
        },
        retry={"max_attempts": 1},
    )
    data["groups"] = {"embed": {"serves": ["embeddings"]}}
    return gateway(data)


def test_completions_whole_and_streamed_from_llama_cpp(llama_gw, llama_tiny, clients):
    strict = openai.OpenAI(base_url=llama_gw.base_url, api_key="x", max_retries=0, _strict_response_validation=True)
    clients.append(strict)
    raw = strict.completions.with_raw_response.create(model="fast", prompt="Hello", max_tokens=5, temperature=0)
    completion = raw.parse()
    validate("CreateCompletionResponse", orjson.loads(raw.http_response.content))
    direct = orjson.loads(
        post(f"{llama_tiny.base_url}/completions", {"prompt": "Hello", "max_tokens": 5, "temperature": 0}).data
    )
    assert completion.choices[0].text == direct["choices"][0]["text"]
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert raw.headers["X-Octoroute-Endpoint"] == "llama-tiny"

    plain = openai.OpenAI(base_url=llama_gw.base_url, api_key="x", max_retries=0)  # see test_completions_api.sdk
    clients.append(plain)
    chunks = list(plain.completions.create(model="fast", prompt="Hello", max_tokens=5, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == direct["choices"][0]["text"]
    assert chunks[-1].choices[0].finish_reason == "length"
    streamed = post(
        f"{llama_gw.base_url}/completions",
        {"model": "fast", "prompt": "Hello", "max_tokens": 3, "temperature": 0, "stream": True},
    )
    data = list(iter_data(streamed.data))
    assert data[-1] == b"[DONE]"
    for chunk in (orjson.loads(d) for d in data[:-1]):
        finished = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
        validate("CreateCompletionResponse", {**chunk, "choices": finished})  # null: not finished yet


def test_fim_reaches_llama_infill_and_its_refusal_comes_back(llama_gw):
    # The tiny model has no FIM tokens, so the real /infill refuses: the request did reach it,
    # translated, and the refusal comes back in OpenAI's shape with the server's words.
    response = post(f"{llama_gw.base_url}/completions", {"model": "infill", "prompt": "def f(", "suffix": ")\n"})
    assert response.status == 502
    error = orjson.loads(response.data)["error"]
    assert "Infill is not supported by this model" in error["message"]
    assert response.headers["X-Octoroute-Tier"] == "infill"


def test_embeddings_from_llama_cpp_keep_order(llama_gw, llama_embedder, clients):
    strict = openai.OpenAI(base_url=llama_gw.base_url, api_key="x", max_retries=0, _strict_response_validation=True)
    clients.append(strict)
    raw = strict.embeddings.with_raw_response.create(model="embed", input=TEXTS, encoding_format="float")
    result = raw.parse()
    validate("CreateEmbeddingResponse", orjson.loads(raw.http_response.content))
    singles = [
        orjson.loads(post(f"{llama_embedder.base_url}/embeddings", {"input": t}).data)["data"][0]["embedding"]
        for t in TEXTS
    ]
    assert [item.index for item in result.data] == [0, 1, 2]
    for item, single in zip(result.data, singles, strict=True):
        assert item.embedding == pytest.approx(single, abs=1e-5)  # batched and alone, the same vector
    assert len({tuple(s) for s in singles}) == 3

    default = openai.OpenAI(base_url=llama_gw.base_url, api_key="x", max_retries=0)  # asks for base64
    clients.append(default)
    decoded = default.embeddings.create(model="embed", input=TEXTS)
    for item, single in zip(decoded.data, singles, strict=True):
        assert item.embedding == pytest.approx(single, abs=1e-5)
    tokens = strict.embeddings.create(model="embed", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert len(tokens.data) == 2

    with ollama.Client(host=llama_gw.url) as client:
        via_ollama = client.embed(model="embed:latest", input=TEXTS)
    for vector, single in zip(via_ollama.embeddings, singles, strict=True):
        assert list(vector) == pytest.approx(single, abs=1e-5)
    assert via_ollama.prompt_eval_count == result.usage.prompt_tokens

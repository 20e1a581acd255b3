"""Property: any body on /v1/embeddings, /v1/completions and Ollama's /api/embed and
/api/embeddings, over real HTTP to a gateway in front of fixture upstreams (an
OpenAI-compatible one, an Ollama-native one, llama.cpp's /infill), gets a 2xx or a
4xx in the route's error shape: never a 5xx, a hang or a traceback in the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st
from tests.bodies import BOUNDED, anything, completions_bodies, embeddings_bodies, ollama_embed_bodies
from tests.support import endpoint, fleet_config

HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=30), retries=False)  # a hang fails the test


@pytest.fixture
def gw(upstreams, gateway):
    sim, olla, llama = upstreams("sim"), upstreams("olla"), upstreams("llama")
    data = fleet_config(
        {
            "fast": [endpoint(sim, "m")],
            "coder": [endpoint(llama, "c", fim="infill"), endpoint(sim, "v", fim="suffix", priority=0)],
            "embed": [endpoint(sim, "e")],
            "olla": [endpoint(olla, "bge", kind="ollama")],
        }
    )
    data["groups"] = {"embed": {"serves": ["embeddings"]}, "olla": {"serves": ["embeddings"]}}
    return gateway(data)


def post(url: str, body: Any) -> urllib3.BaseHTTPResponse:
    raw = json.dumps(body, ensure_ascii=False).encode()  # integers beyond 64 bits included
    return HTTP.request("POST", url, body=raw, headers={"content-type": "application/json"})


def check(response: urllib3.BaseHTTPResponse, ollama: bool) -> None:
    assert response.status < 500, response.data
    content_type = response.headers.get("content-type", "")
    if response.status >= 400:
        body = orjson.loads(response.data)
        if ollama:
            assert set(body) == {"error"}
            assert isinstance(body["error"], str)
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}
    elif content_type.startswith("text/event-stream"):
        assert response.data.rstrip().endswith(b"data: [DONE]")
    else:
        assert isinstance(orjson.loads(response.data), dict)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@BOUNDED
@given(body=embeddings_bodies | anything)
def test_any_embeddings_body(gw, caplog, body: Any) -> None:
    with caplog.at_level(logging.WARNING):
        check(post(f"{gw.base_url}/embeddings", body), ollama=False)
    no_errors_logged(caplog)


@BOUNDED
@given(body=completions_bodies | anything)
def test_any_completions_body(gw, caplog, body: Any) -> None:
    with caplog.at_level(logging.WARNING):
        check(post(f"{gw.base_url}/completions", body), ollama=False)
    no_errors_logged(caplog)


@BOUNDED
@given(body=ollama_embed_bodies | anything, path=st.sampled_from(["/api/embed", "/api/embeddings"]))
def test_any_ollama_embed_body(gw, caplog, body: Any, path: str) -> None:
    with caplog.at_level(logging.WARNING):
        check(post(f"{gw.url}{path}", body), ollama=True)
    no_errors_logged(caplog)

"""Refused credentials against a real llama.cpp server started with `--api-key`: its
own 401 body reaches the log and `/models`, the endpoint leaves rotation, the other
endpoint serves, and a passing health probe (llama.cpp answers `/v1/models` to
anyone) does not bring it back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
import urllib3
from tests.integration.llama import LlamaServer, start_server, stop_server
from tests.support import fleet_config

pytestmark = pytest.mark.llama

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
SERVER_KEY = "llama-server-key-0123456789"


@contextmanager
def keyed_llama_server() -> Iterator[str]:
    """llama-server with the tiny model and `--api-key SERVER_KEY`; yields its base URL.
    The venv and model exist once the session's `llama_tiny` fixture has started."""
    server = start_server("tiny", server_args=("--api-key", SERVER_KEY))
    try:
        yield server.base_url
    finally:
        stop_server(server)


@pytest.fixture
def keyed(llama_tiny: LlamaServer) -> Iterator[str]:
    with keyed_llama_server() as base_url:
        yield base_url


def _config(keyed_url: str, spare: LlamaServer) -> dict[str, object]:
    return fleet_config(
        {
            "fast": [
                {"name": "tiny", "base_url": keyed_url, "id": "keyed", "priority": 2, "api_key_env": "KEYED_KEY"},
                {"name": "tiny", "base_url": spare.base_url, "id": "spare"},
            ]
        }
    )


def _models(gw) -> dict[str, dict[str, object]]:
    return {e["id"]: e for e in orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"]}


def test_a_wrong_key_takes_the_llama_endpoint_out_and_the_other_serves(
    keyed, llama_tiny, gateway, sdk_clients, loop_thread, caplog
):
    gw = gateway(_config(keyed, llama_tiny), env={"KEYED_KEY": "not-the-servers-key-42"})
    with caplog.at_level(logging.WARNING, logger="octoroute.health"):
        raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="fast", messages=HI, max_tokens=4)
    assert raw.headers["X-Octoroute-Endpoint"] == "spare"
    assert raw.headers["X-Octoroute-Attempts"] == "2"
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "endpoint keyed refused octoroute's credentials (HTTP 401: Invalid API Key)" in line
    assert "$KEYED_KEY" in line
    keyed_status = _models(gw)["keyed"]
    assert keyed_status["credentials_refused"] is True
    assert keyed_status["last_error"] == "HTTP 401: Invalid API Key"
    loop_thread.run(gw.gateway.probe_all())  # llama.cpp answers /v1/models without a key: proves nothing
    assert _models(gw)["keyed"]["credentials_refused"] is True
    with sdk_clients.anthropic(gw).messages.with_streaming_response.create(
        model="fast", max_tokens=4, messages=HI, stream=True
    ) as streamed:
        assert streamed.headers["X-Octoroute-Endpoint"] == "spare"
        assert streamed.headers["X-Octoroute-Attempts"] == "1"  # the refused endpoint is not tried again
        assert [e.type for e in streamed.parse()][-1] == "message_stop"


def test_the_right_key_is_sent_and_served(keyed, llama_tiny, gateway, sdk_clients):
    gw = gateway(_config(keyed, llama_tiny), env={"KEYED_KEY": SERVER_KEY})
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="fast", messages=HI, max_tokens=4)
    assert raw.headers["X-Octoroute-Endpoint"] == "keyed"
    assert _models(gw)["keyed"]["credentials_refused"] is False

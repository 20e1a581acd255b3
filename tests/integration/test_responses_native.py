"""Endpoints that serve the Responses API themselves (`responses = true`): requests
are passed through but for `model`, answers and streams come back as they are.
The fixture upstream is a real aiohttp server that answers /v1/responses with the
bytes Codex accepted from a real capture (../shared/data/codex/*.sse)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import urllib3
from aiohttp import web
from tests.conftest import LoopThread
from tests.support import LoopbackApp, fleet_config
from tests.unit.translate.test_translate_golden import parse_sse

CODEX = Path(__file__).resolve().parents[3] / "shared" / "data" / "codex"
HTTP = urllib3.PoolManager()


class ResponsesUpstream(LoopbackApp):
    """Serves POST /v1/responses: the captured SSE body for streams, its final response otherwise."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.sse = (CODEX / "responses-plain-1.sse").read_bytes()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.json_response({"error": {"message": "this test expects /responses"}}, status=400)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        body = orjson.loads(await request.read())
        self.requests.append(body)
        if body.get("stream"):
            return web.Response(body=self.sse, content_type="text/event-stream")
        final = parse_sse(self.sse)[-1][1]["response"]
        return web.json_response(final)


@pytest.fixture
def native(loop_thread: LoopThread) -> Iterator[Callable[[], ResponsesUpstream]]:
    yield from loop_thread.serving(ResponsesUpstream)


def test_responses_pass_through_to_a_responses_endpoint(native, gateway, sdk_clients) -> None:
    up = native()
    gw = gateway(fleet_config({"deep": [{"name": "gpt-oss-20b", "base_url": up.base_url, "responses": True}]}))
    client = sdk_clients.openai(gw)
    body = {
        "model": "deep",
        "input": [{"type": "message", "id": "m1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [{"type": "web_search"}],
        "include": ["reasoning.encrypted_content"],
    }
    raw = client.responses.with_raw_response.create(**body)
    assert raw.parse().output_text == "Hello!"
    assert "X-Octoroute-Degraded" not in raw.headers  # nothing was dropped on the way
    assert up.paths == ["/v1/responses"]
    assert up.requests[-1] == {**body, "model": "gpt-oss-20b"}
    with client.responses.stream(model="deep", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.output_text == "Hello!"
    streamed = HTTP.request(
        "POST",
        f"{gw.base_url}/responses",
        body=orjson.dumps({"model": "deep", "input": "hi", "stream": True}),
        headers={"Content-Type": "application/json"},
    )
    relayed, original = parse_sse(streamed.data), parse_sse(up.sse)
    filled = {"temperature", "top_p", "usage"}  # what the spec requires and this server left out

    def without_filled(event: dict[str, Any]) -> dict[str, Any]:
        if "response" not in event:
            return event
        return {**event, "response": {k: v for k, v in event["response"].items() if k not in filled}}

    assert [without_filled(e) for _, e in relayed] == [without_filled(e) for _, e in original]
    final = relayed[-1][1]["response"]
    assert final["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert (final["temperature"], final["top_p"]) == (None, None)
    # (no spec validation here: items and events are the server's own, relayed as it wrote them;
    # the capture's output_text parts lack `logprobs`, which the strict SDK above tolerates)


def test_history_is_spelled_out_for_the_native_endpoint(native, gateway, sdk_clients) -> None:
    """A stored conversation continued on a Responses endpoint reaches it as full input
    (the upstream does not know the gateway's ids)."""
    up = native()
    gw = gateway(fleet_config({"deep": [{"name": "gpt-oss-20b", "base_url": up.base_url, "responses": True}]}))
    client = sdk_clients.openai(gw)
    first = client.responses.create(model="deep", input="hi")
    client.responses.create(model="deep", previous_response_id=first.id, input="again")
    sent = up.requests[-1]
    assert "previous_response_id" not in sent
    assert [item.get("role") or item["type"] for item in sent["input"]] == ["user", "assistant", "user"]


def test_passed_through_usage_is_counted(native, gateway, sdk_clients) -> None:
    """The Responses usage of a passed-through answer, whole and streamed, reaches the token metrics."""
    up = native()
    gw = gateway(
        fleet_config(
            {"deep": [{"name": "gpt-oss-20b", "base_url": up.base_url, "responses": True, "id": "deep-1"}]},
            observability={"metrics": True},
        )
    )
    client = sdk_clients.openai(gw)
    client.responses.create(model="deep", input="hi")
    with client.responses.stream(model="deep", input="hi") as stream:
        stream.get_final_response()
    exposition = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    counted = [
        line for line in exposition.splitlines() if line.startswith("octoroute_tokens_total") and "deep-1" in line
    ]
    assert any('direction="input"' in line and line.endswith(" 200.0") for line in counted), counted
    assert any('direction="output"' in line and line.endswith(" 20.0") for line in counted), counted


def test_a_streamed_native_response_is_stored_and_can_be_continued(native, gateway, sdk_clients) -> None:
    """A Responses endpoint's stream is stored as a whole answer is (under the upstream's
    id), before the stream ends, so `previous_response_id` and GET find it; `store: false`
    is honoured."""
    up = native()
    gw = gateway(fleet_config({"deep": [{"name": "gpt-oss-20b", "base_url": up.base_url, "responses": True}]}))
    client = sdk_clients.openai(gw)
    with client.responses.stream(model="deep", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[-1] == "response.completed"  # held back until stored, then sent
    assert client.responses.retrieve(final.id).output_text == "Hello!"
    client.responses.create(model="deep", previous_response_id=final.id, input="again")
    sent = up.requests[-1]
    assert [item.get("role") or item["type"] for item in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][0]["content"] == "hi"
    client.responses.delete(final.id)
    with client.responses.stream(model="deep", input="hi", store=False) as stream:
        stream.get_final_response()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)

"""Requests that need tools or images prefer endpoints whose model has them (the
bundled capability table, overridable in config), and say when none could."""

from __future__ import annotations

import openai
import pytest
import urllib3
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
HELLO = [{"role": "user", "content": "hi"}]
PICTURE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


@pytest.fixture
def fleet(upstreams, gateway):
    def make(**sections):
        small, coder, seer = upstreams("small"), upstreams("coder"), upstreams("seer")
        gw = gateway(
            fleet_config(
                {
                    "fast": [
                        endpoint(small, "smollm2:135m", id="small", priority=3),
                        endpoint(coder, "qwen2.5-coder:7b", id="coder", priority=2),
                        endpoint(seer, "llava:13b", id="seer", priority=1),
                    ]
                },
                **sections,
            )
        )
        client = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0, _strict_response_validation=True)
        return gw, client, small, coder, seer

    made = []

    def tracked(**sections):
        result = make(**sections)
        made.append(result[1])
        return result

    yield tracked
    for client in made:
        client.close()


def _served(client, **kwargs):
    raw = client.chat.completions.with_raw_response.create(model="fast", **kwargs)
    return raw.headers["X-Octoroute-Endpoint"], raw.headers.get("X-Octoroute-Degraded")


def test_plain_requests_follow_priority(fleet):
    _, client, *_ = fleet()
    assert _served(client, messages=HELLO) == ("small", None)


def test_requests_with_tools_prefer_a_tool_capable_model(fleet):
    _, client, *_ = fleet()
    assert _served(client, messages=HELLO, tools=[TOOL]) == ("coder", None)
    assert _served(client, messages=HELLO, tools=[TOOL], tool_choice="none") == ("small", None)


def test_requests_with_images_prefer_a_vision_model(fleet):
    _, client, *_ = fleet()
    assert _served(client, messages=PICTURE) == ("seer", None)


def test_when_no_capable_endpoint_is_left_the_gap_is_named(fleet):
    _, client, _, coder, _ = fleet()
    coder.behaviour.mode = Mode.ERROR_500
    endpoint_id, degraded = _served(client, messages=HELLO, tools=[TOOL])
    assert endpoint_id == "small"
    assert degraded == "endpoint_lacks_tools"
    assert coder.count == 1


def test_config_overrides_the_bundled_table(fleet):
    _, client, *_ = fleet(capabilities={"smollm2*": {"tools": True}})
    assert _served(client, messages=HELLO, tools=[TOOL]) == ("small", None)


def test_serving_without_the_capability_is_counted(fleet):
    from prometheus_client.parser import text_string_to_metric_families

    gw, client, _, coder, _ = fleet()
    coder.behaviour.mode = Mode.ERROR_500
    _served(client, messages=HELLO, tools=[TOOL])
    text = urllib3.request("GET", f"{gw.url}/metrics").data.decode()
    samples = {
        s.labels["kind"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "octoroute_degradations_total"
    }
    assert samples["endpoint_lacks_tools"] == 1
    assert samples["endpoint_lacks_vision"] == 0

"""Upstream errors end to end: rate limits and cooldowns, servers loading their
model, refused credentials, the upstream's own message (redacted) reaching the
client, and fail-open. Real HTTP: fixture upstreams that send the bodies and
headers llama.cpp, Ollama, vLLM, OpenAI and Anthropic send (`tests/error_upstreams.py`),
the gateway on a loopback port, the official `openai` and `anthropic` SDKs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
import openai
import orjson
import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from tests.error_upstreams import (
    ScriptedUpstream,
    anthropic_rate_limited,
    llama_invalid_key,
    llama_loading,
    ok,
    ollama_busy,
    ollama_not_found,
    openai_forbidden,
    openai_invalid_key,
    openai_rate_limited,
    vllm_object_error,
)
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import Mode

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
KEY_A = "sk-local-a-0123456789abcdef"


@pytest.fixture
def scripted(loop_thread) -> Iterator[Callable[[str], ScriptedUpstream]]:
    yield from loop_thread.serving(ScriptedUpstream)


def models(gw) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in orjson.loads(HTTP.request("GET", f"{gw.url}/models").data)["endpoints"]}


def snapshot_endpoints(gw) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in orjson.loads(HTTP.request("GET", f"{gw.url}/metrics.json").data)["endpoints"]}


def metric(gw, name: str, **labels: str) -> float:
    text = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    raise AssertionError(f"no series {name} {labels}")


def ask_openai(sdk_clients, gw, *, stream: bool, model: str = "fast") -> tuple[str, Any]:
    """The serving endpoint (from the decision header) and the headers, through the openai SDK."""
    client = sdk_clients.openai(gw).chat.completions
    if stream:
        with client.with_streaming_response.create(model=model, messages=HI, stream=True) as response:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            assert text
            return response.headers["X-Octoroute-Endpoint"], response.headers
    raw = client.with_raw_response.create(model=model, messages=HI)
    assert raw.parse().choices[0].message.content
    return raw.headers["X-Octoroute-Endpoint"], raw.headers


def ask_anthropic(sdk_clients, gw, *, stream: bool, model: str = "fast") -> tuple[str, Any]:
    client = sdk_clients.anthropic(gw).messages
    if stream:
        with client.with_streaming_response.create(model=model, max_tokens=64, messages=HI, stream=True) as response:
            kinds = [event.type for event in response.parse()]
            assert kinds[0] == "message_start"
            assert kinds[-1] == "message_stop"
            return response.headers["X-Octoroute-Endpoint"], response.headers
    raw = client.with_raw_response.create(model=model, max_tokens=64, messages=HI)
    assert raw.parse().content[0].text
    return raw.headers["X-Octoroute-Endpoint"], raw.headers


ASK = {"openai": ask_openai, "anthropic": ask_anthropic}
BOTH_APIS_STREAMED_AND_NOT = pytest.mark.parametrize(
    ("api", "stream"),
    [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)],
)


def two_endpoints(
    a: ScriptedUpstream, b: ScriptedUpstream, a_extra: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Any]:
    """`a` is preferred (priority), `b` the spare; probes off, quick loading retries."""
    health = {"loading_retry_seconds": 0.01, **sections.pop("health", {})}
    return fleet_config(
        {"fast": [endpoint(a, "m", id="a", priority=2, **(a_extra or {})), endpoint(b, "m", id="b")]},
        health=health,
        **sections,
    )


# -- 2. rate limits ----------------------------------------------------------


@BOTH_APIS_STREAMED_AND_NOT
def test_a_429_cools_the_endpoint_down_without_counting_against_its_health(scripted, gateway, sdk_clients, api, stream):
    a, b = scripted("a"), scripted("b")
    a.script([openai_rate_limited("30")])
    gw = gateway(two_endpoints(a, b, health={"failure_threshold": 1}))
    assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"
    assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"  # a is cooling down: not even tried
    assert a.sent == [429]
    status = models(gw)["a"]
    assert status["healthy"] is True  # one 429 with failure_threshold 1 would have marked it down before
    assert status["consecutive_failures"] == 0
    assert status["last_error"] == "HTTP 429: Rate limit reached for requests. Please try again later."
    assert 0 < status["cooldown_seconds"] <= 30
    assert 0 < snapshot_endpoints(gw)["a"]["cooldown_seconds"] <= 30
    assert metric(gw, "octoroute_upstream_cooldowns_total", endpoint="a", reason="rate_limited") == 1
    assert metric(gw, "octoroute_upstream_errors_total", endpoint="a", error_type="http_429") == 1
    assert metric(gw, "octoroute_endpoint_cooldown_until_seconds", endpoint="a") > 0
    assert metric(gw, "octoroute_endpoint_cooldown_until_seconds", endpoint="b") == 0


@pytest.mark.parametrize("stream", [False, True])
def test_every_endpoint_rate_limited_is_a_429_with_the_shortest_retry_after_openai(
    scripted, gateway, sdk_clients, stream
):
    a, b = scripted("a"), scripted("b")
    in_2_min = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    a.script([openai_rate_limited(in_2_min)])  # an HTTP date
    b.script([openai_rate_limited("60")])  # seconds
    gw = gateway(two_endpoints(a, b))
    client = sdk_clients.openai(gw)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fast", messages=HI, stream=stream)
    response = limited.value.response
    assert 1 <= int(response.headers["Retry-After"]) <= 60  # b's, the shorter, rounded up
    assert response.headers["X-Octoroute-Attempts"] == "2"
    validate("ErrorResponse", response.json())
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "upstream_rate_limited")
    assert "rate limited" in error["message"]
    assert (a.sent, b.sent) == ([429], [429])
    with pytest.raises(openai.RateLimitError) as again:  # both still cooling: nothing is sent upstream
        client.chat.completions.create(model="fast", messages=HI, stream=stream)
    assert int(again.value.response.headers["Retry-After"]) <= 60
    assert (a.sent, b.sent) == ([429], [429])
    assert again.value.response.headers["X-Octoroute-Attempts"] == "0"


@pytest.mark.parametrize("stream", [False, True])
def test_every_endpoint_rate_limited_is_a_429_with_retry_after_anthropic(scripted, gateway, sdk_clients, stream):
    a, b = scripted("a"), scripted("b")
    a.script([anthropic_rate_limited("20")])  # the Anthropic error shape, from an OpenAI-kind server
    b.script([ollama_busy()])  # Ollama's full queue: back-pressure too, no Retry-After
    gw = gateway(two_endpoints(a, b, health={"rate_limit_cooldown_seconds": 4}))
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=16, messages=HI, stream=stream)
    response = limited.value.response
    assert 1 <= int(response.headers["Retry-After"]) <= 4  # b's default cooldown, the shorter
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert metric(gw, "octoroute_upstream_cooldowns_total", endpoint="b", reason="busy") == 1
    assert models(gw)["b"]["healthy"] is True


def test_a_pinned_endpoint_that_rate_limits_is_a_429(scripted, gateway, sdk_clients):
    a, b = scripted("a"), scripted("b")
    a.script([openai_rate_limited("3")])
    gw = gateway(two_endpoints(a, b))
    with pytest.raises(openai.RateLimitError) as limited:
        sdk_clients.openai(gw).chat.completions.create(model="a", messages=HI)
    assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 3
    assert b.sent == []


def read_events(path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_cooldowns_and_refusals_are_events(scripted, gateway, sdk_clients, tmp_path):
    a, c, b = scripted("a"), scripted("c"), scripted("b")
    a.script([openai_rate_limited("30")])
    c.script([llama_invalid_key()])
    events_file = tmp_path / "events.jsonl"
    config = fleet_config(
        {
            "fast": [
                endpoint(a, "m", id="a", priority=3),
                endpoint(c, "m", id="c", priority=2),
                endpoint(b, "m", id="b"),
            ]
        },
        observability={"events_file": str(events_file)},
    )
    gw = gateway(config)
    assert ask_openai(sdk_clients, gw, stream=False)[0] == "b"
    events = [e for e in read_events(events_file) if e["event"] in ("cooldown", "credentials")]
    assert [(e["event"], e["endpoint"]) for e in events] == [("cooldown", "a"), ("credentials", "c")]
    assert (events[0]["reason"], events[0]["seconds"]) == ("rate_limited", 30.0)
    assert (events[1]["refused"], events[1]["detail"]) == (True, "HTTP 401: Invalid API Key")


# -- 2. servers loading their model -----------------------------------------


@BOTH_APIS_STREAMED_AND_NOT
def test_a_server_loading_its_model_is_waited_for(scripted, gateway, sdk_clients, api, stream):
    a, b = scripted("a"), scripted("b")
    a.script([llama_loading(), llama_loading(), ok()])
    gw = gateway(two_endpoints(a, b, health={"failure_threshold": 1}))
    served, headers = ASK[api](sdk_clients, gw, stream=stream)
    assert served == "a"
    assert headers["X-Octoroute-Attempts"] == "1"
    assert a.sent == [503, 503, 200]
    assert b.sent == []
    status = models(gw)["a"]
    assert (status["healthy"], status["consecutive_failures"], status["cooldown_seconds"]) == (True, 0, 0)
    assert metric(gw, "octoroute_upstream_loading_waits_total", endpoint="a") == 2


def test_a_server_still_loading_at_the_attempts_deadline_gives_way(scripted, gateway, sdk_clients):
    a, b = scripted("a"), scripted("b")
    a.script([llama_loading()] * 50)
    # 0.05 s, then 0.1, 0.2, 0.4, 0.4...: the next wait would pass a's 0.5 s total, so b serves.
    gw = gateway(two_endpoints(a, b, {"timeouts": {"total": 0.5}}, health={"loading_retry_seconds": 0.05}))
    assert ask_openai(sdk_clients, gw, stream=False)[0] == "b"
    assert 1 <= len(a.sent) < 50
    assert set(a.sent) == {503}
    assert models(gw)["a"]["healthy"] is True


# -- 3. the upstream's own message, redacted --------------------------------


@pytest.mark.parametrize(
    ("canned", "status", "said"),
    [
        pytest.param(
            # (a context-overflow 400 is escalated instead: tests/integration/test_context_windows.py)
            vllm_object_error("temperature must be non-negative, got -1.0."),
            400,
            "temperature must be non-negative, got -1.0.",
            id="vllm-400",
        ),
        pytest.param(
            ollama_not_found("qwen3:8b"), 404, 'model "qwen3:8b" not found, try pulling it first', id="ollama-404"
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_the_upstreams_own_message_reaches_the_client(scripted, gateway, sdk_clients, canned, status, said, stream):
    a = scripted("a")
    gw = gateway(fleet_config({"fast": [endpoint(a, "m", id="a")]}))
    a.script([canned])
    with pytest.raises(openai.APIStatusError) as failed:
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=stream)
    assert failed.value.status_code == status
    assert failed.value.response.json()["error"]["message"] == f"upstream a answered {status}: {said}"
    validate("ErrorResponse", failed.value.response.json())
    a.script([canned])
    with pytest.raises(anthropic.APIStatusError) as translated:
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=16, messages=HI, stream=stream)
    assert translated.value.status_code == status
    assert translated.value.response.json()["error"]["message"] == f"upstream a answered {status}: {said}"
    assert models(gw)["a"]["last_error"] is None  # a 4xx is the request's fault: the endpoint is fine


def test_secrets_in_an_upstream_message_never_leave(scripted, gateway, sdk_clients):
    a = scripted("a")
    leaky = {
        "error": {
            "message": f"bad upstream http://admin:hunter22@10.1.2.3/v1 with Authorization: Bearer {KEY_A} key={KEY_A}",
            "type": "invalid_request_error",
        }
    }
    a.script([type(openai_forbidden())(422, orjson.dumps(leaky))])
    gw = gateway(fleet_config({"fast": [endpoint(a, "m", id="a", api_key_env="A_KEY")]}), env={"A_KEY": KEY_A})
    with pytest.raises(openai.UnprocessableEntityError) as failed:
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    body = failed.value.response.text
    assert KEY_A not in body
    assert "hunter22" not in body
    message = failed.value.response.json()["error"]["message"]
    assert message.startswith("upstream a answered 422: bad upstream http://[redacted]@10.1.2.3/v1")


# -- 3. refused credentials ---------------------------------------------------


class Clock:
    """The gateway's monotonic clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@BOTH_APIS_STREAMED_AND_NOT
def test_a_401_takes_the_endpoint_out_of_rotation_until_a_request_succeeds(
    scripted, gateway, sdk_clients, loop_thread, caplog, api, stream
):
    a, b = scripted("a"), scripted("b")
    a.script([openai_invalid_key()])
    clock = Clock()
    config = two_endpoints(a, b, {"api_key_env": "A_KEY"}, health={"check_interval_seconds": 30})
    gw = gateway(config, env={"A_KEY": KEY_A}, clock=clock)
    with caplog.at_level(logging.INFO, logger="octoroute"):
        assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"
        assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"
    assert a.sent == [401]
    (line,) = [r.getMessage() for r in caplog.records if "refused octoroute's credentials" in r.getMessage()]
    assert line.startswith(
        "endpoint a refused octoroute's credentials (HTTP 401: Incorrect API key provided: [redacted]."
    )
    assert "check that $A_KEY holds the key this server expects" in line
    assert KEY_A not in caplog.text
    (attempt_line,) = [r.getMessage() for r in caplog.records if r.name == "octoroute.upstream"]
    assert attempt_line.startswith("attempt 1 at a failed: HTTP 401: Incorrect API key provided: [redacted].")
    status = models(gw)["a"]
    assert status["credentials_refused"] is True
    assert status["healthy"] is True
    assert status["last_error"].startswith("HTTP 401: Incorrect API key provided: [redacted].")
    assert KEY_A not in orjson.dumps(snapshot_endpoints(gw)["a"]).decode()
    assert "[redacted]" in snapshot_endpoints(gw)["a"]["last_error"]["message"]
    assert metric(gw, "octoroute_endpoint_credentials_refused", endpoint="a") == 1
    # A probe that passes proves nothing about the key (llama.cpp answers /v1/models to anyone).
    loop_thread.run(gw.gateway.probe_all())
    assert models(gw)["a"]["credentials_refused"] is True
    assert models(gw)["a"]["last_error"].startswith("HTTP 401: Incorrect API key provided")
    # One request per check interval re-tests it: refused again, that request is served by b.
    a.script([openai_invalid_key()])
    clock.advance(30)
    with caplog.at_level(logging.INFO, logger="octoroute"):
        assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"
        assert ASK[api](sdk_clients, gw, stream=stream)[0] == "b"
    assert a.sent == [401, 401]
    assert len([r for r in caplog.records if "refused octoroute's credentials" in r.getMessage()]) == 1
    # The key was fixed upstream: the next re-test succeeds and a is back.
    clock.advance(30)
    with caplog.at_level(logging.INFO, logger="octoroute"):
        assert ASK[api](sdk_clients, gw, stream=stream)[0] == "a"
    assert any("endpoint a accepted octoroute's credentials again" in r.getMessage() for r in caplog.records)
    assert models(gw)["a"]["credentials_refused"] is False
    assert models(gw)["a"]["last_error"] is None
    assert metric(gw, "octoroute_endpoint_credentials_refused", endpoint="a") == 0
    assert ASK[api](sdk_clients, gw, stream=stream)[0] == "a"


def test_a_probe_answering_403_keeps_the_endpoint_out(scripted, gateway, sdk_clients, loop_thread):
    a, b = scripted("a"), scripted("b")
    a.script([openai_forbidden()])
    a.script_models([openai_forbidden()])
    gw = gateway(two_endpoints(a, b))
    assert ask_openai(sdk_clients, gw, stream=False)[0] == "b"
    loop_thread.run(gw.gateway.probe_all())
    assert models(gw)["a"]["credentials_refused"] is True
    assert models(gw)["a"]["last_error"] == "HTTP 403"  # a probe's body is not read
    assert ask_openai(sdk_clients, gw, stream=False)[0] == "b"
    assert a.sent == [403]


def test_every_endpoint_refusing_credentials_says_so(scripted, gateway, sdk_clients):
    a, b = scripted("a"), scripted("b")
    a.script([llama_invalid_key(), llama_invalid_key()])
    b.script([llama_invalid_key(), llama_invalid_key()])
    gw = gateway(two_endpoints(a, b))
    with pytest.raises(openai.APIStatusError) as first:
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    assert first.value.status_code == 502  # the gateway's configuration, not the client's request
    assert "a: HTTP 401: Invalid API Key" in first.value.response.json()["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as then:
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=16, messages=HI)
    assert then.value.status_code == 503
    assert "refused octoroute's credentials" in then.value.response.json()["error"]["message"]
    assert then.value.response.headers["Retry-After"]
    assert (a.sent, b.sent) == ([401], [401])  # fail-open never picks an endpoint that refused us


# -- 7. fail-open -------------------------------------------------------------


def test_when_every_endpoint_is_unhealthy_the_longest_failed_one_is_tried(
    scripted, upstreams, gateway, sdk_clients, caplog, tmp_path
):
    a, b = upstreams("a"), upstreams("b")
    events_file = tmp_path / "events.jsonl"
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(a, "m", id="a", priority=2), endpoint(b, "m", id="b")]},
            health={"failure_threshold": 1, "check_interval_seconds": 600},
            retry={"max_attempts": 1},
            observability={"events_file": str(events_file)},
        )
    )
    a.behaviour.fail_next = 1
    b.behaviour.fail_next = 1
    client = sdk_clients.openai(gw)
    for _ in range(2):  # a fails (marked down), then b fails (marked down): b's failure is the newer
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="fast", messages=HI)
    assert [e["healthy"] for e in models(gw).values()] == [False, False]
    with caplog.at_level(logging.INFO, logger="octoroute"):
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI)
    assert raw.headers["X-Octoroute-Endpoint"] == "a"
    assert raw.headers["X-Octoroute-Fail-Open"] == "true"
    assert any("fail-open" in r.getMessage() and "tries a" in r.getMessage() for r in caplog.records)
    (access,) = [r.getMessage() for r in caplog.records if r.name == "octoroute.access"]
    assert "endpoint=a" in access
    assert "fail_open=true" in access.lower()
    assert models(gw)["a"]["healthy"] is True  # it answered: back in service
    assert metric(gw, "octoroute_fail_open_attempts_total", group="fast") == 1
    (event,) = [e for e in read_events(events_file) if e["event"] == "fail_open"]
    assert (event["group"], event["endpoint"], event["request_id"]) == ("fast", "a", raw.headers["X-Request-Id"])
    normal = client.chat.completions.with_raw_response.create(model="fast", messages=HI)
    assert "X-Octoroute-Fail-Open" not in normal.headers


@pytest.mark.parametrize("stream", [False, True])
def test_fail_open_through_the_anthropic_api(upstreams, gateway, sdk_clients, stream):
    x = upstreams("x")
    gw = gateway(
        fleet_config({"fast": [endpoint(x, "m", id="x")]}, health={"failure_threshold": 1}, retry={"max_attempts": 1})
    )
    x.behaviour.mode = Mode.ERROR_500
    with pytest.raises(anthropic.InternalServerError):
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=16, messages=HI)
    assert models(gw)["x"]["healthy"] is False
    x.behaviour.mode = Mode.NORMAL  # recovered, but the probe interval has not passed
    served, headers = ask_anthropic(sdk_clients, gw, stream=stream)
    assert served == "x"
    assert headers["X-Octoroute-Fail-Open"] == "true"


def test_a_failed_fail_open_attempt_is_reported_not_retried(upstreams, gateway, sdk_clients):
    x = upstreams("x")
    x.behaviour.mode = Mode.ERROR_500
    gw = gateway(fleet_config({"fast": [endpoint(x, "m", id="x")]}, health={"failure_threshold": 1}))
    with pytest.raises(openai.InternalServerError):
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    with pytest.raises(openai.APIStatusError) as still:
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    assert still.value.status_code == 502
    assert "The simulated upstream x failed" in still.value.response.json()["error"]["message"]
    assert x.count == 2  # one attempt per request


# -- Anthropic-native endpoints -----------------------------------------------


def test_an_anthropic_native_endpoint_rate_limiting_cools_down_too(scripted, gateway, sdk_clients):
    a, b = scripted("a"), scripted("b")
    a.script([anthropic_rate_limited("20")])
    gw = gateway(
        fleet_config(
            {
                "fast": [
                    endpoint(a, "claude-local", id="a", priority=2, kind="anthropic", base_url=a.base_url),
                    endpoint(b, "m", id="b"),
                ]
            }
        )
    )
    for ask in (ask_openai, ask_anthropic):
        assert ask(sdk_clients, gw, stream=False)[0] == "b"
    assert a.sent == [429]
    assert [r.path for r in a.requests] == ["/v1/messages"]
    status = models(gw)["a"]
    assert 0 < status["cooldown_seconds"] <= 20
    assert status["last_error"] == "HTTP 429: Number of request tokens has exceeded your rate limit."

"""`[auth]`: client keys over real HTTP with the official SDKs, against a fixture upstream.

Every refusal is in the caller's API shape; the key's name (never the key)
reaches the access log and the metrics."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.spec_validation import validate
from tests.support import endpoint, fleet_config

from octoroute.config.keysfile import KeyRecord, append_key
from octoroute.fleet.clientkeys import hash_key

HTTP = urllib3.PoolManager()
CI_KEY = "ork-" + "1f" * 32
BOT_KEY = "ork-" + "2e" * 32
FILE_KEY = "ork-" + "3d" * 32
HI = [{"role": "user", "content": "hi"}]
ENV = {"CI_KEY": CI_KEY, "BOT_KEY": BOT_KEY}


def auth_config(upstreams: Any, tmp_path: Any, rate_limit: bool = False, **auth: Any) -> dict[str, Any]:
    fast, deep = upstreams("fast"), upstreams("deep")
    keys_file = tmp_path / "keys.jsonl"
    append_key(str(keys_file), KeyRecord("filed", hash_key(FILE_KEY), "2026-12-07T15:00:00Z"))
    section = {
        "enabled": True,
        "keys_file": str(keys_file),
        "keys": [
            {"name": "ci", "key_env": "CI_KEY"},
            {"name": "bot", "key_env": "BOT_KEY", "models": ["fast", "fast/*"]},
        ],
        **auth,
    }
    return fleet_config(
        {"fast": [endpoint(fast, "fast-model")], "deep": [endpoint(deep, "deep-model")]},
        auth=section,
        observability={"metrics": True, "events_file": str(tmp_path / "events.jsonl")},
        rate_limit={"enabled": rate_limit, "burst": 1000},
    )


def client(gw: Any, key: str, kind: str = "openai") -> Any:
    if kind == "openai":
        return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, _strict_response_validation=True)
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, _strict_response_validation=True)


def post(gw: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
    return HTTP.request(
        "POST",
        gw.url + path,
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        retries=False,
    )


@pytest.fixture
def authed(upstreams, gateway, tmp_path):
    def make(rate_limit: bool = False, **auth: Any) -> Any:
        return gateway(auth_config(upstreams, tmp_path, rate_limit, **auth), env=ENV)

    return make


def test_a_key_is_accepted_in_each_header_form(authed):
    gw = authed()
    with client(gw, CI_KEY) as oa:  # Authorization: Bearer
        assert oa.chat.completions.create(model="deep", messages=HI).choices[0].message.content
    with client(gw, FILE_KEY, "anthropic") as an:  # x-api-key
        assert an.messages.create(model="fast", max_tokens=16, messages=HI).content
    azure = post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI}, {"api-key": BOT_KEY})
    assert azure.status == 200


@pytest.mark.parametrize("key", [None, "ork-" + "00" * 32, "sk-someone-elses-key-123456"])
def test_missing_or_unknown_key_is_401_in_each_api_shape(authed, key):
    gw = authed()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    raw = post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI}, headers)
    assert raw.status == 401
    assert raw.headers["WWW-Authenticate"] == 'Bearer realm="octoroute"'
    validate("ErrorResponse", raw.json())
    assert raw.json()["error"]["code"] == "unauthorized"
    if key:
        with client(gw, key) as oa, pytest.raises(openai.AuthenticationError):
            oa.chat.completions.create(model="fast", messages=HI)
        with client(gw, key, "anthropic") as an, pytest.raises(anthropic.AuthenticationError) as failed:
            an.messages.create(model="fast", max_tokens=16, messages=HI)
        assert failed.value.response.json()["error"]["type"] == "authentication_error"
        assert key not in failed.value.response.text


def test_health_and_ready_stay_open_everything_else_needs_a_key(authed):
    gw = authed()
    assert HTTP.request("GET", gw.url + "/health", retries=False).status == 200
    assert HTTP.request("GET", gw.url + "/ready", retries=False).status in (200, 503)
    for path in ("/v1/models", "/models", "/metrics", "/metrics.json", "/dashboard"):
        assert HTTP.request("GET", gw.url + path, retries=False).status == 401, path
        ok = HTTP.request("GET", gw.url + path, headers={"Authorization": f"Bearer {CI_KEY}"}, retries=False)
        assert ok.status == 200, path


def test_a_model_the_key_may_not_use_is_403_and_models_lists_only_its_own(authed):
    gw = authed()
    with client(gw, BOT_KEY) as oa:
        with pytest.raises(openai.PermissionDeniedError) as failed:
            oa.chat.completions.create(model="deep", messages=HI)
        assert "'bot' may not use model 'deep'" in failed.value.message
        assert sorted(m.id for m in oa.models.list()) == ["fast", "fast/fast-model"]
        with pytest.raises(openai.PermissionDeniedError):
            oa.chat.completions.create(model="auto", messages=HI)  # auto could route anywhere
    with client(gw, BOT_KEY, "anthropic") as an, pytest.raises(anthropic.PermissionDeniedError) as denied:
        an.messages.create(model="deep", max_tokens=16, messages=HI)
    assert denied.value.response.json()["error"]["type"] == "permission_error"
    with client(gw, CI_KEY) as oa:
        assert "deep" in {m.id for m in oa.models.list()}


def test_a_spent_token_budget_is_429_until_the_day_ends(upstreams, gateway, tmp_path):
    data = auth_config(upstreams, tmp_path, keys=[{"name": "ci", "key_env": "CI_KEY", "tokens_per_day": 1}])
    gw = gateway(data, env=ENV, wall_clock=lambda: 1_765_000_000.0)
    with client(gw, CI_KEY) as oa:
        oa.chat.completions.create(model="fast", messages=HI)  # admitted while budget remained
        with pytest.raises(openai.RateLimitError) as refused:
            oa.chat.completions.create(model="fast", messages=HI)
    assert refused.value.response.json()["error"]["code"] == "token_budget_exceeded"
    assert int(refused.value.response.headers["Retry-After"]) > 0
    with client(gw, CI_KEY, "anthropic") as an, pytest.raises(anthropic.RateLimitError):
        an.messages.create(model="fast", max_tokens=16, messages=HI)
    with client(gw, FILE_KEY) as other:  # other keys keep their own budgets
        assert other.chat.completions.create(model="fast", messages=HI).choices


def test_rate_limits_bucket_by_key_name_not_by_what_the_client_sends(authed):
    gw = authed(True, keys=[{"name": "ci", "key_env": "CI_KEY", "requests_per_second": 0.001, "burst": 2}])
    statuses = [
        post(gw, "/v1/chat/completions", {"model": "fast", "messages": HI}, headers).status
        for headers in ({"Authorization": f"Bearer {CI_KEY}"}, {"x-api-key": CI_KEY}, {"api-key": CI_KEY})
    ]
    assert statuses == [200, 200, 429]


def test_the_key_name_never_the_key_in_logs_and_metrics(authed, caplog, tmp_path):
    gw = authed()
    with caplog.at_level(logging.DEBUG, logger="octoroute"), client(gw, CI_KEY) as oa:
        oa.chat.completions.create(model="fast", messages=HI)
        with pytest.raises(openai.AuthenticationError):
            client(gw, "ork-wrong-key-0123456789").chat.completions.create(model="fast", messages=HI)
    access = [r for r in caplog.records if r.name == "octoroute.access"]
    assert [getattr(r, "fields", {}).get("client") for r in access] == ["ci", None]
    ours = [r for r in caplog.records if r.name.startswith("octoroute")]
    text = "".join(r.getMessage() + str(getattr(r, "fields", "")) for r in ours)
    assert CI_KEY not in text
    assert "ork-wrong-key-0123456789" not in text
    headers = {"Authorization": f"Bearer {CI_KEY}"}
    metrics = HTTP.request("GET", gw.url + "/metrics", headers=headers, retries=False).data.decode()
    # The chat completion and this scrape itself.
    assert 'octoroute_client_requests_total{key="ci",outcome="accepted"} 2.0' in metrics
    assert 'octoroute_client_requests_total{key="-",outcome="unauthenticated"} 1.0' in metrics
    assert CI_KEY not in metrics
    snapshot = HTTP.request("GET", gw.url + "/metrics.json", headers=headers, retries=False).data.decode()
    assert CI_KEY not in snapshot
    clients = orjson.loads(snapshot)["clients"]
    assert {"key": "ci", "outcome": "accepted", "count": 3} in clients  # chat, /metrics, this request
    assert {"key": "-", "outcome": "unauthenticated", "count": 1} in clients
    events = (tmp_path / "events.jsonl").read_text()
    assert [e.get("client") for e in map(orjson.loads, events.splitlines()) if e.get("event") == "request"] == [
        "ci",
        None,
    ]
    assert CI_KEY not in events

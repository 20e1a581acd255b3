"""Metrics, the JSON snapshot, logs, the event file and trace spans, driven by
real traffic (the official openai SDK) through fixture upstreams that succeed,
fail over and fail. Counters are asserted to move by exactly what was sent."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import urllib3
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families
from tests.support import endpoint, eventually, fleet_config

from octoroute.demo.simulated import Mode

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[str, Series]:
    response = HTTP.request("GET", f"{url}/metrics", headers=headers)
    assert response.status == 200, response.data
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.data.decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def total(series: Series, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= ls)


def delta(before: Series, after: Series) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every counter / histogram-count series that moved, and by how much."""
    moved = {}
    for key, v in after.items():
        name = key[0]
        if name.endswith(("_created", "_bucket", "_sum")) or name == "octoroute_active_connections":
            continue
        change = v - before.get(key, 0.0)
        if change:
            moved[key] = change
    return moved


def snapshot(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = HTTP.request("GET", f"{url}/metrics.json", headers=headers)
    assert response.status == 200, response.data
    assert response.headers["Content-Type"].startswith("application/json")
    return orjson.loads(response.data)  # type: ignore[no-any-return]


@pytest.fixture
def fleet(upstreams, gateway):
    """fast: one good endpoint; balanced: a failing one first, then a good one;
    deep: a failing one, falling back to fast; broken: a failing one, no fallback."""

    def make(**sections: Any):
        fast_ok, bal_bad, bal_ok = upstreams("fast-ok"), upstreams("bal-bad"), upstreams("bal-ok")
        deep_bad, broken = upstreams("deep-bad"), upstreams("broken")
        for sim in (bal_bad, deep_bad, broken):
            sim.behaviour.mode = Mode.ERROR_500
        models = {
            "fast": [endpoint(fast_ok, "m-fast", id="fast-ok")],
            "balanced": [endpoint(bal_bad, "m-b1", id="bal-bad", priority=10), endpoint(bal_ok, "m-b2", id="bal-ok")],
            "deep": [endpoint(deep_bad, "m-deep", id="deep-bad")],
            "broken": [endpoint(broken, "m-broken", id="broken-1")],
        }
        config = fleet_config(models, fallback={"deep": "fast", "broken": "none", "balanced": "none"}, **sections)
        return gateway(config)

    return make


def settle(gw: Any, loop_thread: Any, routed: int) -> None:
    """Wait until the gateway has finished its bookkeeping for `routed` routed requests:
    a stream's runs just after its last byte. Once the window holds them all, a no-op
    on the gateway's loop runs only after the code that wrote them has returned."""
    window = gw.gateway.observer.decisions
    eventually(lambda: len(window.records()) >= routed, what=f"{routed} routed requests")
    loop_thread.run(asyncio.sleep(0))


def traffic(client: openai.OpenAI) -> dict[str, Any]:
    """The same mix for every test (7 routed requests and one unknown model):
    what was sent and what the SDK saw."""
    seen: dict[str, Any] = {"ids": [], "prompt_tokens": 0, "completion_tokens": 0}

    def call(model: str) -> None:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HI)
        completion = raw.parse()
        seen["ids"].append(raw.headers["X-Request-Id"])
        if raw.headers["X-Octoroute-Endpoint"] == "fast-ok":
            seen["prompt_tokens"] += completion.usage.prompt_tokens
            seen["completion_tokens"] += completion.usage.completion_tokens

    for _ in range(3):
        call("fast")
    call("balanced")  # bal-bad 500, then bal-ok
    call("deep")  # deep-bad 500, then fallback to fast-ok
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="broken", messages=HI)
    assert failed.value.status_code == 502
    seen["failed_id"] = failed.value.response.headers["X-Request-Id"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HI)
    stream = client.chat.completions.create(
        model="fast", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            seen["prompt_tokens"] += chunk.usage.prompt_tokens
            seen["completion_tokens"] += chunk.usage.completion_tokens
        seen.setdefault("stream_id", chunk.id)
    return seen


def test_counters_move_by_exactly_the_traffic_sent(loop_thread, fleet, sdk_clients):
    gw = fleet()
    _, before = scrape(gw.url)
    seen = traffic(sdk_clients.openai(gw))
    settle(gw, loop_thread, 7)
    bad_json = HTTP.request(
        "POST", f"{gw.base_url}/chat/completions", body=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status == 400
    _, after = scrape(gw.url)
    moved = delta(before, after)
    chat = "/v1/chat/completions"

    def expect(name: str, amount: float, **labels: str) -> None:
        key = (name, frozenset(labels.items()))
        assert moved.pop(key, 0.0) == amount, f"{name}{labels}"

    for tier, n in (("fast", 4), ("balanced", 1), ("deep", 1), ("broken", 1)):
        expect("octoroute_requests_total", n, tier=tier, strategy="direct")
    expect("octoroute_routing_duration_ms_count", 7, strategy="direct")
    for tier, n in (("fast", 5), ("balanced", 2), ("deep", 1), ("broken", 1)):  # deep's fallback called fast
        expect("octoroute_model_invocations_total", n, tier=tier)
    expect("octoroute_http_requests_total", 6, route=chat, method="POST", status="200")
    expect("octoroute_http_requests_total", 1, route=chat, method="POST", status="502")
    expect("octoroute_http_requests_total", 1, route=chat, method="POST", status="404")
    expect("octoroute_http_requests_total", 1, route=chat, method="POST", status="400")
    expect("octoroute_http_requests_total", 1, route="/metrics", method="GET", status="200")  # the first scrape
    expect("octoroute_http_request_duration_seconds_count", 9, route=chat)
    expect("octoroute_http_request_duration_seconds_count", 1, route="/metrics")
    expect("octoroute_upstream_attempts_total", 5, endpoint="fast-ok", outcome="ok")
    expect("octoroute_upstream_attempts_total", 1, endpoint="bal-ok", outcome="ok")
    for ep in ("bal-bad", "deep-bad", "broken-1"):
        expect("octoroute_upstream_attempts_total", 1, endpoint=ep, outcome="http_5xx")
        expect("octoroute_upstream_errors_total", 1, endpoint=ep, error_type="http_5xx")
        expect("octoroute_upstream_request_duration_seconds_count", 1, endpoint=ep)
    expect("octoroute_upstream_request_duration_seconds_count", 5, endpoint="fast-ok")
    expect("octoroute_upstream_request_duration_seconds_count", 1, endpoint="bal-ok")
    expect("octoroute_time_to_first_token_seconds_count", 1, endpoint="fast-ok")
    expect("octoroute_tokens_total", seen["prompt_tokens"], endpoint="fast-ok", direction="input")
    expect("octoroute_tokens_total", seen["completion_tokens"], endpoint="fast-ok", direction="output")
    bal_tokens = value(after, "octoroute_tokens_total", endpoint="bal-ok", direction="input")
    assert bal_tokens > 0
    expect("octoroute_tokens_total", bal_tokens, endpoint="bal-ok", direction="input")
    bal_out = moved.pop(("octoroute_tokens_total", frozenset({("endpoint", "bal-ok"), ("direction", "output")})))
    # usage per client key (none: anonymous), by the group that served: deep's fallback is fast's
    fast_ok = {"client": "anonymous", "group": "fast", "endpoint": "fast-ok"}
    bal_ok = {"client": "anonymous", "group": "balanced", "endpoint": "bal-ok"}
    expect("octoroute_usage_requests_total", 5, usage="reported", **fast_ok)
    expect("octoroute_usage_requests_total", 1, usage="reported", **bal_ok)
    expect("octoroute_usage_tokens_total", seen["prompt_tokens"], direction="input", **fast_ok)
    expect("octoroute_usage_tokens_total", seen["completion_tokens"], direction="output", **fast_ok)
    expect("octoroute_usage_tokens_total", bal_tokens, direction="input", **bal_ok)
    expect("octoroute_usage_tokens_total", bal_out, direction="output", **bal_ok)
    expect("octoroute_retries_total", 2)
    expect("octoroute_fallbacks_total", 1, from_group="deep", to_group="fast")
    expect("octoroute_affinity_total", 5, group="fast", result="new")  # one-turn chats: every one is new
    expect("octoroute_affinity_total", 1, group="balanced", result="new")
    assert moved == {}, f"unexpected movement: {moved}"
    # Gauges: every endpoint still healthy (one failure each, threshold 3); the
    # scrape that read them is the one request in progress.
    for ep in ("fast-ok", "bal-bad", "bal-ok", "deep-bad", "broken-1"):
        assert value(after, "octoroute_endpoint_healthy", endpoint=ep) == 1
    assert value(after, "octoroute_active_connections") == 1
    assert value(after, "octoroute_rate_limiter_buckets") == 0
    assert total(after, "octoroute_mid_stream_failures_total") == 0


def test_the_exposition_passes_promtool_with_no_lint_complaint(loop_thread, fleet, sdk_clients, tmp_path):
    gw = fleet(observability={"routing_duration_unit": "seconds"})
    traffic(sdk_clients.openai(gw))
    settle(gw, loop_thread, 7)
    text, series = scrape(gw.url)
    assert value(series, "octoroute_routing_duration_seconds_count", strategy="direct") == 7
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


def test_the_1_0_metric_name_is_promtools_only_complaint(loop_thread, fleet, sdk_clients):
    gw = fleet()
    traffic(sdk_clients.openai(gw))
    settle(gw, loop_thread, 7)
    text, series = scrape(gw.url)
    assert value(series, "octoroute_routing_duration_ms_count", strategy="direct") == 7
    assert 'octoroute_routing_duration_ms_bucket{le="0.1",strategy="direct"}' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    complaints = {line.split(" ", 1)[0] for line in (check.stdout + check.stderr).splitlines() if line}
    assert complaints == {"octoroute_routing_duration_ms", "octoroute_routing_duration_ms_created"}


def test_a_mid_stream_failure_is_counted(loop_thread, upstreams, gateway, sdk_clients):
    sim = upstreams("dropper")
    sim.behaviour.mode = Mode.DROP_MID_STREAM
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="dropper")]}))
    stream = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    settle(gw, loop_thread, 1)
    _, series = scrape(gw.url)
    assert value(series, "octoroute_mid_stream_failures_total", endpoint="dropper") == 1
    assert value(series, "octoroute_upstream_errors_total", endpoint="dropper", error_type="mid_stream") == 1
    assert value(series, "octoroute_upstream_attempts_total", endpoint="dropper", outcome="ok") == 1
    assert snapshot(gw.url)["mid_stream_failures"] == 1


def test_label_values_never_come_from_request_content(fleet):
    gw = fleet()
    for path in ("/v1/chat/completions/x", "/some/thing", "/../etc"):
        HTTP.request("GET", f"{gw.url}{path}")
    HTTP.request("PROPFIND", f"{gw.url}/v1/chat/completions")
    HTTP.request(
        "POST",
        f"{gw.base_url}/chat/completions",
        body=orjson.dumps({"model": "evil\nlabel", "messages": HI}),
        headers={"Content-Type": "application/json"},
    )
    text, series = scrape(gw.url)
    routes = {dict(labels).get("route") for (name, labels) in series if name == "octoroute_http_requests_total"}
    assert routes == {"unmatched", "/v1/chat/completions"}
    methods = {dict(labels).get("method") for (name, labels) in series if name == "octoroute_http_requests_total"}
    assert methods == {"GET", "POST", "other"}
    assert "evil" not in text
    assert "thing" not in text


def test_the_snapshot_tells_what_happened(loop_thread, fleet, sdk_clients):
    gw = fleet()
    seen = traffic(sdk_clients.openai(gw))
    settle(gw, loop_thread, 7)
    snap = snapshot(gw.url)
    assert snap["workers"] == 1
    assert snap["uptime_seconds"] >= 0
    assert snap["requests"]["total"] == 7
    assert snap["requests"]["by_tier"] == {"fast": 4, "balanced": 1, "deep": 1, "broken": 1}
    assert list(snap["requests"]["by_tier"]) == snap["groups"] == ["fast", "balanced", "deep", "broken"]
    assert snap["requests"]["by_strategy"] == {"direct": 7}
    assert snap["requests"]["by_status"] == {"2xx": 6, "4xx": 1, "5xx": 1}
    endpoints = {e["id"]: e for e in snap["endpoints"]}
    assert list(endpoints) == ["fast-ok", "bal-bad", "bal-ok", "deep-bad", "broken-1"]
    assert endpoints["fast-ok"]["outcomes"] == {"ok": 5}
    assert endpoints["fast-ok"]["errors"] == 0
    assert endpoints["fast-ok"]["tokens"] == {"input": seen["prompt_tokens"], "output": seen["completion_tokens"]}
    assert endpoints["fast-ok"]["latency_ms"]["count"] == 5
    bad = endpoints["bal-bad"]
    assert bad["outcomes"] == {"http_5xx": 1}
    assert bad["healthy"] is True
    assert bad["last_error"]["error_type"] == "http_5xx"
    assert "500" in bad["last_error"]["message"]
    assert endpoints["fast-ok"]["last_error"] is None
    assert snap["retries"] == 2
    assert snap["fallbacks"] == [{"from_group": "deep", "to_group": "fast", "count": 1}]
    assert {(e["endpoint"], e["error_type"], e["count"]) for e in snap["upstream_errors"]} == {
        ("bal-bad", "http_5xx", 1),
        ("deep-bad", "http_5xx", 1),
        ("broken-1", "http_5xx", 1),
    }
    assert snap["latency_ms"]["count"] == 7
    assert snap["latency_ms"]["p50"] > 0
    assert snap["ttft_ms"]["count"] == 1
    decisions = snap["decisions"]
    assert len(decisions) == 7  # the 404 made no routing decision
    assert [d["request_id"] for d in decisions][::-1][:5] == seen["ids"]
    failed = next(d for d in decisions if d["request_id"] == seen["failed_id"])
    assert (failed["status"], failed["tier"], failed["endpoint"], failed["attempts"]) == (502, "broken", None, 1)
    fell_back = decisions[::-1][4]
    assert (fell_back["tier"], fell_back["group"], fell_back["endpoint"]) == ("deep", "fast", "fast-ok")
    assert (fell_back["fallback_from"], fell_back["attempts"], fell_back["reason"]) == ("deep", 2, "explicit_group")
    assert set(decisions[0]) == {
        "time", "request_id", "route", "model", "tier", "group", "endpoint", "strategy", "reason", "status",
        "latency_ms", "ttft_ms", "attempts", "fallback_from", "input_tokens", "output_tokens", "shadow_tier",
    }  # fmt: skip
    assert snap["shadow"] is None  # shadow mode is off
    assert "hi there" not in orjson.dumps(snap).decode()  # never prompt text


def test_a_metrics_token_guards_metrics_and_the_snapshot(fleet):
    gw = fleet(observability={"metrics_token": "s3cret-token"})
    for path in ("/metrics", "/metrics.json"):
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic s3cret-token"}):
            response = HTTP.request("GET", f"{gw.url}{path}", headers=headers)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert orjson.loads(response.data)["error"]["code"] == "unauthorized"
    scrape(gw.url, {"Authorization": "Bearer s3cret-token"})
    snapshot(gw.url, {"Authorization": "Bearer s3cret-token"})
    assert HTTP.request("GET", f"{gw.url}/dashboard").status == 200  # the page itself; its data needs the token


def test_a_metrics_token_from_the_environment(upstreams, gateway):
    sim = upstreams("a")
    gw = gateway(
        fleet_config({"fast": [endpoint(sim, "m")]}, observability={"metrics_token_env": "TOKEN"}),
        env={"TOKEN": "from-the-env"},
    )
    assert HTTP.request("GET", f"{gw.url}/metrics").status == 401
    scrape(gw.url, {"Authorization": "Bearer from-the-env"})


def test_metrics_switched_off_record_nothing_and_say_so(upstreams, gateway, sdk_clients):
    sim = upstreams("a")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}, observability={"metrics": False}))
    sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    for path in ("/metrics", "/metrics.json", "/dashboard"):
        response = HTTP.request("GET", f"{gw.url}{path}")
        assert response.status == 404
        assert "metrics = false" in orjson.loads(response.data)["error"]["message"]
    assert gw.gateway.observer.decisions is None


def test_the_dashboard_is_one_self_contained_page(fleet):
    gw = fleet()
    response = HTTP.request("GET", f"{gw.url}/dashboard")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.data.decode()
    assert "metrics.json" in page
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert all(ref.startswith(("data:", "#")) for ref in references), references
    assert not re.search(r"@import|url\(\s*[\"']?(https?:)?//", page)


def test_one_log_line_per_api_request_without_text(loop_thread, fleet, sdk_clients, caplog):
    gw = fleet()
    with caplog.at_level(logging.INFO, logger="octoroute.access"):
        seen = traffic(sdk_clients.openai(gw))
        settle(gw, loop_thread, 7)
        HTTP.request("GET", f"{gw.url}/health")  # not an API request: no line
    records = [r for r in caplog.records if r.name == "octoroute.access"]
    lines = [r.fields for r in records]  # type: ignore[attr-defined]
    assert len(lines) == 8  # 7 routed + the unknown model
    assert Tally(line["status"] for line in lines) == {200: 6, 502: 1, 404: 1}
    fell_back = next(line for line in lines if line.get("fallback_from") == "deep")
    assert fell_back["request_id"] == seen["ids"][4]
    assert (fell_back["tier"], fell_back["group"], fell_back["endpoint"]) == ("deep", "fast", "fast-ok")
    assert (fell_back["attempts"], fell_back["retries"]) == (2, 1)
    assert fell_back["strategy"] == "direct"
    assert fell_back["input_tokens"] > 0
    assert fell_back["latency_ms"] > 0
    streamed = next(line for line in lines if "ttft_ms" in line)
    assert streamed["output_tokens"] > 0
    assert all("prompt" not in line and "completion" not in line for line in lines)
    assert all("hi there" not in r.getMessage() for r in records)


def test_the_event_file_records_requests_health_fallbacks_and_warnings(loop_thread, fleet, sdk_clients, tmp_path):
    path = tmp_path / "events.jsonl"
    gw = fleet(observability={"events_file": str(path), "log_content": True}, health={"failure_threshold": 1})
    seen = traffic(sdk_clients.openai(gw))
    settle(gw, loop_thread, 7)
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    kinds = Tally(e["event"] for e in events)
    assert kinds == {"start": 1, "config_warning": 1, "request": 8, "fallback": 1, "health": 3}
    assert "log_content" in next(e for e in events if e["event"] == "config_warning")["message"]
    fallback = next(e for e in events if e["event"] == "fallback")
    assert fallback == {**fallback, "request_id": seen["ids"][4], "from_group": "deep", "to_group": "fast"}
    health = {e["endpoint"]: e["healthy"] for e in events if e["event"] == "health"}
    assert health == {"bal-bad": False, "deep-bad": False, "broken-1": False}
    requests = [e for e in events if e["event"] == "request"]
    assert requests[0]["prompt"] == "hi there"
    assert requests[0]["completion"]
    assert all(isinstance(e["ts"], float) for e in events)


def test_the_event_file_is_shared_line_by_line(fleet, sdk_clients, tmp_path, gateway, upstreams):
    path = tmp_path / "events.jsonl"
    first = fleet(observability={"events_file": str(path)})
    sim = upstreams("other")
    second = gateway(fleet_config({"fast": [endpoint(sim, "m")]}, observability={"events_file": str(path)}))
    for gw in (first, second, first, second):
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["event"] for line in lines].count("request") == 4


def test_spans_cover_the_request_the_decision_and_each_attempt(fleet, sdk_clients, gateway, upstreams):
    exporter = InMemorySpanExporter()
    sim_bad, sim_ok = upstreams("bad"), upstreams("ok")
    sim_bad.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(sim_bad, "m1", id="bad", priority=5), endpoint(sim_ok, "m2", id="ok")]},
            observability={"tracing": {"enabled": True}},
        ),
        span_exporter=exporter,
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client = sdk_clients.openai(gw)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HI, extra_headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    spans = exporter.get_finished_spans()
    by_name = Tally(s.name for s in spans)
    assert by_name == {"octoroute.request": 1, "octoroute.route": 1, "octoroute.upstream": 2}
    request = next(s for s in spans if s.name == "octoroute.request")
    assert format(request.context.trace_id, "032x") == trace_id
    assert request.kind is SpanKind.SERVER
    assert request.attributes["octoroute.request_id"] == raw.headers["X-Request-Id"]
    assert request.attributes["http.response.status_code"] == 200
    route = next(s for s in spans if s.name == "octoroute.route")
    assert route.parent.span_id == request.context.span_id
    assert route.attributes["octoroute.tier"] == "fast"
    assert route.attributes["octoroute.strategy"] == "rule"
    attempts = sorted(
        (s for s in spans if s.name == "octoroute.upstream"), key=lambda s: s.attributes["octoroute.attempt"]
    )
    assert [(a.attributes["octoroute.endpoint"], a.attributes["octoroute.outcome"]) for a in attempts] == [
        ("bad", "http_5xx"),
        ("ok", "ok"),
    ]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert all(a.parent.span_id == request.context.span_id for a in attempts)


def test_tracing_off_makes_no_spans(fleet):
    gw = fleet()
    assert gw.gateway.observer.tracing is None


def test_rate_limiter_buckets_are_a_gauge_and_budgets_settle_on_real_usage(upstreams, gateway, sdk_clients):
    sim = upstreams("a")
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(sim, "m")]},
            rate_limit={"enabled": True, "requests_per_second": 100, "burst": 100, "tokens_per_minute": 100_000},
        )
    )
    for key in ("key-a", "key-b", "key-c"):
        client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
        client.chat.completions.create(model="fast", messages=HI)
        client.close()
    _, series = scrape(gw.url)
    assert value(series, "octoroute_rate_limiter_buckets") == 3
    assert snapshot(gw.url)["rate_limiter"] == {"enabled": True, "buckets": 3}


def test_config_warnings_are_logged_at_startup(upstreams, gateway, caplog):
    sim = upstreams("a")
    with caplog.at_level(logging.WARNING, logger="octoroute.events"):
        gateway(fleet_config({"fast": [endpoint(sim, "m")]}, observability={"log_content": True}))
    assert any("log_content" in r.getMessage() for r in caplog.records)


def test_the_snapshot_of_a_fresh_gateway_is_empty_but_whole(fleet):
    gw = fleet()
    snap = snapshot(gw.url)
    assert snap["requests"] == {"total": 0, "by_tier": {}, "by_strategy": {}, "by_status": {}}
    assert snap["latency_ms"] == {"p50": None, "p90": None, "p99": None, "count": 0}
    assert snap["decisions"] == []
    assert snap["fallbacks"] == []
    assert snap["upstream_errors"] == []
    assert all(e["healthy"] and e["attempts"] == 0 and e["last_error"] is None for e in snap["endpoints"])


def test_events_go_nowhere_without_a_file(fleet, tmp_path: Path):
    gw = fleet()
    assert gw.gateway.observer.events is None


def _post_chat(gw: Any, model: str, request_id: str) -> int:
    response = HTTP.request(
        "POST",
        f"{gw.base_url}/chat/completions",
        body=orjson.dumps({"model": model, "messages": HI}),
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    return response.status


def test_the_longest_request_id_is_kept_whole(upstreams, gateway):
    gw = gateway(fleet_config({"fast": [endpoint(upstreams("a"), "m")]}))
    long_id = "r" * 128  # the longest id the gateway echoes
    assert _post_chat(gw, "fast", long_id) == 200
    (decision,) = snapshot(gw.url)["decisions"]
    assert decision["request_id"] == long_id


def test_the_longest_config_names_still_make_a_decision_record(upstreams, gateway):
    group = "g" * 128  # the longest group name; the endpoint's id is group/name, 385 characters
    sim = upstreams("a")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")], group: [endpoint(sim, "m" * 256)]}))
    assert _post_chat(gw, group, "r" * 128) == 200
    (decision,) = snapshot(gw.url)["decisions"]  # one process: nothing needs cutting
    assert (decision["request_id"], decision["tier"], decision["endpoint"]) == (
        "r" * 128,
        group,
        f"{group}/{'m' * 256}",
    )
    assert decision["status"] == 200


def test_streams_count_tokens_even_when_the_client_did_not_ask_for_usage(loop_thread, upstreams, gateway, sdk_clients):
    sim = upstreams("a")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="a")]}))
    chunks = list(sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True))
    assert sim.requests[-1].body["stream_options"] == {"include_usage": True}  # asked upstream
    assert all(c.usage is None for c in chunks)  # but the client, who did not ask, gets no usage chunk
    assert all(c.choices for c in chunks)
    settle(gw, loop_thread, 1)
    _, series = scrape(gw.url)
    pieces = sum(1 for c in chunks if c.choices[0].delta.content)  # the fixture counts one token per piece
    assert value(series, "octoroute_tokens_total", endpoint="a", direction="output") == pieces > 0


def test_a_group_can_turn_the_usage_request_off(loop_thread, upstreams, gateway, sdk_clients):
    sim = upstreams("a")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="a")]}, groups={"fast": {"stream_usage": False}}))
    chunks = list(sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI, stream=True))
    assert "stream_options" not in sim.requests[-1].body
    assert chunks
    settle(gw, loop_thread, 1)
    _, series = scrape(gw.url)
    assert value(series, "octoroute_tokens_total", endpoint="a", direction="output") == 0


def test_a_client_asking_for_usage_gets_it_once(upstreams, gateway, sdk_clients):
    sim = upstreams("a")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}))
    chunks = list(
        sdk_clients.openai(gw).chat.completions.create(
            model="fast", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert sim.requests[-1].body["stream_options"] == {"include_usage": True}
    assert [c.usage is not None for c in chunks].count(True) == 1


def test_last_error_carries_the_upstreams_own_message(upstreams, gateway, sdk_clients):
    sim = upstreams("picky")
    sim.behaviour.mode = Mode.REJECT_400
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="picky")]}))
    with pytest.raises(openai.BadRequestError) as refused:
        sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
    said = refused.value.body["message"]
    assert said.startswith("upstream picky answered 400: picky does not accept one of the request's parameters")
    (picky,) = snapshot(gw.url)["endpoints"]
    assert picky["last_error"]["error_type"] == "http_4xx"
    assert picky["last_error"]["message"] == "HTTP 400: " + said.removeprefix("upstream picky answered 400: ")


def test_a_client_going_away_ends_its_spans_and_counts_as_499(upstreams, gateway, loop_thread):
    exporter = InMemorySpanExporter()
    sim = upstreams("slow")
    sim.behaviour.mode = Mode.SLOW
    gw = gateway(
        fleet_config({"fast": [endpoint(sim, "m", id="slow")]}, observability={"tracing": {"enabled": True}}),
        span_exporter=exporter,
    )
    body = orjson.dumps({"model": "fast", "messages": HI})
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(head + body)
        loop_thread.run(asyncio.wait_for(sim.wait_started(), 10))
    loop_thread.run(asyncio.wait_for(sim.wait_cancelled(), 10))
    eventually(lambda: len(exporter.get_finished_spans()) == 3, what="the request's three spans")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["octoroute.upstream"].attributes["octoroute.outcome"] == "cancelled"
    assert spans["octoroute.request"].attributes["http.response.status_code"] == 499
    _, series = scrape(gw.url)
    assert (
        value(series, "octoroute_http_requests_total", route="/v1/chat/completions", method="POST", status="499") == 1
    )
    assert value(series, "octoroute_active_connections") == 1  # only the scrape


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_tokens_are_counted_for_anthropic_clients_whatever_the_endpoint_speaks(
    kind, stream, upstreams, gateway, sdk_clients, loop_thread
):
    sim = upstreams("ep")
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m", id="ep", kind=kind)]}))
    client = sdk_clients.anthropic(gw)
    if stream:
        with client.messages.stream(model="fast", max_tokens=64, messages=HI) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model="fast", max_tokens=64, messages=HI)
    settle(gw, loop_thread, 1)
    _, series = scrape(gw.url)
    assert value(series, "octoroute_tokens_total", endpoint="ep", direction="output") == message.usage.output_tokens > 0
    if kind == "anthropic" or not stream:  # translated streams estimate input tokens; upstream usage is the truth
        assert value(series, "octoroute_tokens_total", endpoint="ep", direction="input") == message.usage.input_tokens
    (decision,) = snapshot(gw.url)["decisions"]
    assert (decision["route"], decision["endpoint"], decision["output_tokens"]) == (
        "/v1/messages",
        "ep",
        message.usage.output_tokens,
    )

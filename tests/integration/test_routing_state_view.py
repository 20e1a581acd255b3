"""Why traffic goes where it goes, from real behaviour to `/metrics.json` and
`octoroute stats`: an upstream answering 429 with `Retry-After` puts its endpoint
in cooldown (seconds left, until when, how many 429s), a context window learned from
an upstream's context-length error, and requests the gateway refused itself (rate
limit, a request nothing can hold), counted by reason. Fixture upstreams are real
HTTP servers on loopback; `octoroute stats --once` runs as a subprocess at a wide
and a compact terminal width."""

from __future__ import annotations

import re
from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.cli.test_stats import has_row, octoroute_stats, plain
from tests.context_upstreams import ContextUpstream, Flavour, servers  # noqa: F401  (fixture)
from tests.error_upstreams import (  # noqa: F401  (fixture)
    ScriptedUpstream,
    llama_invalid_key,
    ok,
    openai_rate_limited,
    scripted,
)
from tests.integration.test_auth import BOT_KEY, CI_KEY, ENV, FILE_KEY, auth_config, client
from tests.support import endpoint, fleet_config

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
WIDE, COMPACT = "220", "80"


def snapshot(gw) -> dict[str, Any]:
    response = HTTP.request("GET", f"{gw.url}/metrics.json")
    assert response.status == 200, response.data
    return dict(orjson.loads(response.data))


def stats(gw, columns: str) -> str:
    """`octoroute stats --once` at this terminal width, table borders blanked."""
    result = octoroute_stats("--url", gw.url, "--once", env={"COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    out = plain(result.stdout)
    assert max(len(line) for line in out.splitlines()) <= int(columns), out
    return out


def flat(out: str) -> str:
    return " ".join(out.split())


def words(n_chars: int) -> str:
    return ("lorem ipsum " * (n_chars // 12 + 1))[:n_chars]


def test_a_429_with_retry_after_shows_as_a_cooldown_until_then(scripted, gateway, sdk_clients):  # noqa: F811
    a, b = scripted("a"), scripted("b")
    a.script([openai_rate_limited("30")])
    b.script([ok(), ok()])
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(a, "m", id="a", priority=2), endpoint(b, "m", id="b")]},
            health={"loading_retry_seconds": 0.01},
        )
    )
    client = sdk_clients.openai(gw)
    before = snapshot(gw)["time"]
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI)
    assert raw.headers["X-Octoroute-Endpoint"] == "b"  # a said 429: the request moved on
    after = snapshot(gw)
    rows = {e["id"]: e for e in after["endpoints"]}
    cooled = rows["a"]
    assert cooled["cooldowns"] == {"rate_limited": 1, "busy": 0}
    assert before + 29 <= cooled["cooldown_until"] <= after["time"] + 30  # Retry-After: 30, from when it was said
    assert cooled["cooldown_seconds"] == pytest.approx(cooled["cooldown_until"] - after["time"], abs=0.002)
    assert rows["b"]["cooldown_until"] is None
    assert rows["b"]["cooldowns"] == {"rate_limited": 0, "busy": 0}
    assert after["refusals"]["total"] == 0  # the upstream's 429 is not the gateway refusing anyone

    until = r"(29|30)s until \d\d:\d\d:\d\d"
    wide = stats(gw, WIDE)
    assert "in flight context out of rotation last error" in flat(wide), wide
    # endpoint group model health attempts errors p50 p90 | in flight, context, out of rotation | last error
    assert has_row(wide, "a", rf"a fast m healthy 1 1 – – 0 unknown {until} http_429: .* 429×1"), wide
    assert has_row(wide, "b", r"b fast m healthy 1 0 \S+ ms \S+ ms 0 unknown – –"), wide
    compact = stats(gw, COMPACT)
    assert "load, context, rotation endpoint in flight context out of rotation" in flat(compact), compact
    assert has_row(compact, "a", rf"a 0 unknown {until} 429×1"), compact
    assert has_row(compact, "b", r"b 0 unknown –"), compact


def test_a_window_learned_from_a_context_length_error_is_shown_with_who_said_it(servers, gateway, sdk_clients):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    big = servers(Flavour.LLAMA, 16384, "big")
    models = {"fast": [{"name": "qwen2.5-7b", "base_url": small.base_url, "id": "small", "priority": 2}]}
    models["fast"].append({"name": "big", "base_url": big.base_url, "id": "big", "priority": 1})
    gw = gateway(fleet_config(models))
    rows = {e["id"]: e for e in snapshot(gw)["endpoints"]}
    assert rows["small"]["context"]["told_by"] is None  # the capability table's guess until the server says
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": words(6000)}], max_tokens=100
    )
    assert raw.headers["X-Octoroute-Endpoint"] == "big"
    rows = {e["id"]: e for e in snapshot(gw)["endpoints"]}
    assert rows["small"]["context"] == {
        "window": 2048,
        "source": "discovered",
        "told_by": "overflow_error",
        "total_slots": None,
    }
    wide = stats(gw, WIDE)
    assert has_row(
        wide, "small", r"small fast qwen2\.5-7b healthy 1 1 – – 0 2048 – context_overflow: .* overflow_error"
    ), wide
    assert has_row(stats(gw, COMPACT), "small", r"small 0 2048 overflow_error –")


def test_refused_requests_are_counted_by_reason(servers, gateway, sdk_clients):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    gw = gateway(
        fleet_config(
            {"fast": [{"name": "small", "base_url": small.base_url, "id": "small"}]},
            health={"discover": True},
            rate_limit={"enabled": True, "requests_per_second": 0.001, "burst": 2, "tokens_per_minute": 20_000},
        )
    )
    client = openai.OpenAI(base_url=gw.base_url, api_key="one-client", max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError):  # nothing can hold it: 400, the burst's first request
            client.chat.completions.create(model="fast", messages=[{"role": "user", "content": words(40_000)}])
        with pytest.raises(openai.APIStatusError) as too_large:  # over the whole per-minute token budget
            client.chat.completions.create(model="fast", messages=[{"role": "user", "content": words(100_000)}])
        assert too_large.value.status_code == 413
        client.chat.completions.create(model="fast", messages=HI)  # the burst's second request
        for _ in range(2):
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="fast", messages=HI)
    finally:
        client.close()
    refusals = snapshot(gw)["refusals"]
    assert refusals == {
        "total": 4,
        "by_reason": {
            "rate_limit_requests": 2,
            "rate_limit_tokens": 0,
            "rate_limit_too_large": 1,
            "auth_unauthenticated": 0,
            "auth_forbidden": 0,
            "auth_budget": 0,
            "queue_full": 0,
            "queue_timeout": 0,
            "context_rejected": 1,
            "cooling_down": 0,
            "no_healthy": 0,
        },
    }
    for columns in (WIDE, COMPACT):
        shown = flat(stats(gw, columns))
        assert re.search(r"refused 4 rate limit: requests 2 rate limit: too large 1 context: too large 1", shown), shown


def test_no_endpoint_able_to_take_a_request_is_a_refusal_by_reason(scripted, gateway, sdk_clients):  # noqa: F811
    a, b = scripted("a"), scripted("b")
    a.script([openai_rate_limited("60")])
    b.script([openai_rate_limited("60")])
    limited = gateway(fleet_config({"fast": [endpoint(a, "m", id="a"), endpoint(b, "m", id="b")]}))
    client = sdk_clients.openai(limited)
    for _ in range(2):  # both say 429; then both are still cooling down and nothing is sent
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="fast", messages=HI)
    assert (a.sent, b.sent) == ([429], [429])
    refusals = snapshot(limited)["refusals"]
    assert (refusals["total"], refusals["by_reason"]["cooling_down"]) == (2, 2)
    assert re.search(r"refused 2 fleet: all cooling down 2", flat(stats(limited, COMPACT)))

    c, d = scripted("c"), scripted("d")
    c.script([llama_invalid_key()])
    d.script([llama_invalid_key()])
    refusing = gateway(fleet_config({"fast": [endpoint(c, "m", id="c"), endpoint(d, "m", id="d")]}))
    client = sdk_clients.openai(refusing)
    with pytest.raises(openai.APIStatusError) as failed:  # both tried, both 401: a failure, not a refusal
        client.chat.completions.create(model="fast", messages=HI)
    assert failed.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as refused:  # neither is in rotation now
        client.chat.completions.create(model="fast", messages=HI)
    assert refused.value.status_code == 503
    snap = snapshot(refusing)
    assert (snap["refusals"]["total"], snap["refusals"]["by_reason"]["no_healthy"]) == (1, 1)
    rows = {e["id"]: e for e in snap["endpoints"]}
    assert rows["c"]["credentials_refused"] is True
    wide = stats(refusing, WIDE)
    assert has_row(wide, "c", r"c fast m healthy 1 1 – – 0 unknown credentials refused http_auth: .*"), wide
    assert re.search(r"refused 1 fleet: none healthy 1", flat(wide))


def test_auth_refusals_are_counted_by_reason(upstreams, gateway, tmp_path):
    keys = [
        {"name": "ci", "key_env": "CI_KEY", "tokens_per_day": 1},
        {"name": "bot", "key_env": "BOT_KEY", "models": ["fast"]},
    ]
    gw = gateway(auth_config(upstreams, tmp_path, keys=keys), env=ENV, wall_clock=lambda: 1_765_000_000.0)
    with client(gw, "ork-wrong-key-0123456789") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="fast", messages=HI)
    with client(gw, BOT_KEY) as bot, pytest.raises(openai.PermissionDeniedError):
        bot.chat.completions.create(model="deep", messages=HI)
    with client(gw, CI_KEY) as ci:
        ci.chat.completions.create(model="fast", messages=HI)  # admitted while its budget remained
        with pytest.raises(openai.RateLimitError):
            ci.chat.completions.create(model="fast", messages=HI)
    response = HTTP.request("GET", f"{gw.url}/metrics.json", headers={"Authorization": f"Bearer {FILE_KEY}"})
    by_reason = orjson.loads(response.data)["refusals"]["by_reason"]
    assert {k: n for k, n in by_reason.items() if n} == {
        "auth_unauthenticated": 1,
        "auth_forbidden": 1,
        "auth_budget": 1,
    }
    result = octoroute_stats("--url", gw.url, "--once", "--token", FILE_KEY, env={"COLUMNS": COMPACT})
    assert result.returncode == 0, result.stderr
    shown = flat(plain(result.stdout))
    assert re.search(r"refused 3 auth: no valid key 1 auth: model forbidden 1 auth: budget spent 1", shown), shown

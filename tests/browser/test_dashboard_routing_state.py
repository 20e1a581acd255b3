"""The dashboard shows why traffic goes where it goes, in a real headless Chromium against
gateways that met the real thing: an upstream's 429 with `Retry-After` (its endpoint
cooling down, until when), a context window learned from an upstream's context-length
error, requests the gateway refused (rate limit, a request too large for any window),
and, with two gateways sharing Redis, the streams the other one holds on an endpoint."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest
import urllib3
from selenium.webdriver.chrome.webdriver import WebDriver
from tests.browser.test_dashboard import ARTIFACTS, wait_connected, wait_for
from tests.context_upstreams import ContextUpstream, Flavour, servers  # noqa: F401  (fixture)
from tests.error_upstreams import ScriptedUpstream, openai_rate_limited, scripted  # noqa: F401  (fixture)
from tests.integration.test_shared_state import (  # noqa: F401  (serve: fixture)
    HELD,
    busy_and_idle,
    elsewhere,
    hold_streams,
    serve,
    shared,
)
from tests.support import endpoint, eventually, fleet_config

HI = [{"role": "user", "content": "hi there"}]

# One read of the endpoints table and the refusals, at one instant (the page re-renders every 2 s).
_STATE = """
const rows = {};
for (const tr of document.querySelectorAll('#endpoints tbody tr[data-endpoint]')) {
  const cell = (id) => tr.querySelector(`td[data-testid="${id}"]`);
  rows[tr.dataset.endpoint] = {
    elsewhere: cell('elsewhere').innerText.trim(),
    in_use: tr.querySelector('td[data-testid="in-use"]').innerText.trim(),
    context: cell('context').innerText.trim(),
    context_title: cell('context').title,
    rotation: cell('rotation').innerText.trim(),
    out: cell('rotation').dataset.out,
  };
}
const refusals = {};
for (const li of document.querySelectorAll('#refusals li[data-reason]')) {
  refusals[li.dataset.reason] = li.innerText.replace(/\\s+/g, ' ').trim();
}
return {rows: rows, refused: document.getElementById('refused-total').innerText.trim(), refusals: refusals};
"""


def words(n_chars: int) -> str:
    return ("lorem ipsum " * (n_chars // 12 + 1))[:n_chars]


def test_cooldowns_learned_windows_and_refusals_are_shown(browser: WebDriver, scripted, servers, gateway) -> None:  # noqa: F811
    a, b = scripted("a"), scripted("b")
    a.script([openai_rate_limited("30")])
    small = servers(Flavour.LLAMA, 2048, "small")
    big = servers(Flavour.LLAMA, 16384, "big")
    models: dict[str, list[dict[str, Any]]] = {
        "fast": [endpoint(a, "m", id="a", priority=2), endpoint(b, "m", id="b")],
        "deep": [
            {"name": "qwen2.5-7b", "base_url": small.base_url, "id": "small", "priority": 2},
            {"name": "big", "base_url": big.base_url, "id": "big", "priority": 1},
        ],
    }
    limits = {"enabled": True, "requests_per_second": 0.001, "burst": 2, "tokens_per_minute": 20_000}
    gw = gateway(fleet_config(models, health={"loading_retry_seconds": 0.01}, rate_limit=limits))
    client = openai.OpenAI(base_url=gw.base_url, api_key="one-client", max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI)
        assert raw.headers["X-Octoroute-Endpoint"] == "b"  # a answered 429 and cools down
        raw = client.chat.completions.with_raw_response.create(
            model="deep", messages=[{"role": "user", "content": words(6000)}], max_tokens=100
        )
        assert raw.headers["X-Octoroute-Endpoint"] == "big"  # small overflowed: its window is learned
        with pytest.raises(openai.APIStatusError) as too_large:
            client.chat.completions.create(model="fast", messages=[{"role": "user", "content": words(100_000)}])
        assert too_large.value.status_code == 413
        with pytest.raises(openai.RateLimitError):  # the burst of 2 is spent
            client.chat.completions.create(model="fast", messages=HI)
    finally:
        client.close()

    browser.get(f"{gw.url}/dashboard")
    wait_connected(browser)
    shown = wait_for(browser, lambda d: (s := d.execute_script(_STATE))["rows"] and s, "the endpoints table to fill")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-routing-state.png"))
    rows = shown["rows"]
    assert re.fullmatch(r"cooling down (29|30) s, until \d\d:\d\d:\d\d · 429×1", rows["a"]["rotation"]), rows["a"]
    assert rows["a"]["out"] == "true"
    assert (rows["b"]["rotation"], rows["b"]["out"]) == ("–", "false")
    assert rows["small"]["context"] == "2,048 (overflow_error)"
    assert rows["small"]["context_title"] == "source: discovered, told by overflow_error"
    assert rows["big"]["context"] == "unknown"  # no window configured, discovered or in the capability table
    assert {ep: row["elsewhere"] for ep, row in rows.items()} == dict.fromkeys(("a", "b", "small", "big"), "0")
    assert shown["refused"] == "2"
    assert shown["refusals"] == {
        "rate_limit_requests": "rate limit: requests 1",
        "rate_limit_too_large": "rate limit: too large 1",
    }


def test_the_other_gateways_streams_show_as_elsewhere(browser: WebDriver, upstreams, redis_server, serve) -> None:  # noqa: F811
    busy, _idle, models = busy_and_idle(upstreams)
    data = fleet_config(models, state=shared(redis_server, inflight_interval_seconds=0.2))
    data["models"]["fast"][0]["max_concurrency"] = HELD
    one, other = serve(data), serve(data)
    held = hold_streams(one.port, "busy", HELD)  # pinned to busy by its endpoint id
    try:
        eventually(lambda: busy.count == HELD, timeout=10, what="the held streams to reach busy")
        eventually(lambda: elsewhere(other.port, "busy")[1] == HELD, timeout=10, what="the other gateway to see them")
        browser.get(f"http://127.0.0.1:{other.port}/dashboard")
        wait_connected(browser)
        rows = wait_for(
            browser,
            lambda d: (s := d.execute_script(_STATE))["rows"].get("busy", {}).get("elsewhere") == str(HELD) and s,
            "busy's streams on the other gateway",
        )["rows"]
        assert rows["busy"]["in_use"] == f"0 / {HELD}"  # the other gateway's streams fill none of its own slots
        assert (rows["idle"]["elsewhere"], rows["idle"]["in_use"]) == ("0", "0")
        page = urllib3.request("GET", f"http://127.0.0.1:{other.port}/metrics.json").json()
        assert {e["id"]: e["inflight_elsewhere"] for e in page["endpoints"]} == {"busy": HELD, "idle": 0}
        assert {e["id"]: e["inflight_replicas"] for e in page["endpoints"]} == {"busy": HELD, "idle": 0}
    finally:
        for sock in held:
            sock.close()

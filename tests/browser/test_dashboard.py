"""The live dashboard (`GET /dashboard`) in a real headless Chromium, against a
gateway carrying real traffic from the openai SDK: what an operator sees, the
page refreshing by itself, the metrics token, and a gateway that goes away and
comes back.

The fleet: `fast` has one endpoint that always answers 500, so every `auto`
chat falls back to `balanced`, and three failures mark it unhealthy; `deep`
is healthy and its model name holds markup the page must show as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from aiohttp import web
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from tests.support import endpoint, eventually, fleet_config, serve_on_loopback

from octoroute.config import build_topology, parse_config
from octoroute.demo.simulated import Mode
from octoroute.server import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
HELLO = [{"role": "user", "content": "hi there"}]  # short and casual: the rules send it to fast
DEEP_MODEL = "<b>big</b> model"
TOKEN = "secret-token-123"
WAIT_SECONDS = 20  # the page polls every 2 s
T = TypeVar("T")


# -- the gateway and its traffic -------------------------------------------------


def fleet(upstreams: Callable[[str], Any], **sections: Any) -> dict[str, Any]:
    broken, balanced, deep = upstreams("broken"), upstreams("balanced"), upstreams("deep")
    broken.behaviour.mode = Mode.ERROR_500
    models = {
        "fast": [endpoint(broken, "small-model", id="fast-broken")],
        "balanced": [endpoint(balanced, "medium-model", id="balanced-1")],
        "deep": [endpoint(deep, DEEP_MODEL, id="deep-1")],
    }
    return fleet_config(models, **sections)


@dataclass
class Traffic:
    """Requests sent through the openai SDK, with what their response headers said."""

    client: openai.OpenAI
    routed: list[str] = field(default_factory=list)  # request ids, in order
    failed: str = ""  # the request id of the one that got a 502

    def send(self, model: str, *, stream: bool = False) -> str:
        raw = self.client.chat.completions.with_raw_response.create(model=model, messages=HELLO, stream=stream)
        if stream:
            for _chunk in raw.parse():
                pass
        else:
            raw.parse()
        request_id = raw.headers["X-Request-Id"]
        self.routed.append(request_id)
        return request_id

    def send_failing(self, model: str) -> str:
        with pytest.raises(openai.InternalServerError) as info:
            self.client.chat.completions.create(model=model, messages=HELLO)
        assert info.value.status_code == 502
        request_id = info.value.response.headers["X-Request-Id"]
        self.failed = request_id
        return request_id


@dataclass
class Busy:
    url: str
    traffic: Traffic


@pytest.fixture
def busy(upstreams, gateway, sdk_clients) -> Busy:
    """A gateway that has served fallbacks, a stream, a 502 and a 404."""
    gw = gateway(fleet(upstreams))
    traffic = Traffic(sdk_clients.openai(gw))
    for _ in range(3):
        traffic.send("auto")
    traffic.send("deep")
    traffic.send("deep", stream=True)
    traffic.send_failing("fast-broken")  # an endpoint id: no fallback, so its 500 ends as a 502
    with pytest.raises(openai.NotFoundError):
        traffic.client.chat.completions.create(model="no-such-model", messages=HELLO)
    return Busy(gw.url, traffic)


# -- reading the page ---------------------------------------------------------------


def page_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str) -> T:
    """Wait until `condition` is truthy; the page re-renders every poll, so stale reads are retried."""
    waiting = WebDriverWait(
        driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
    )
    try:
        return waiting.until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; the page shows:\n{page_text(driver)}") from None


def read(driver: WebDriver, reader: Callable[[WebDriver], T]) -> T:
    """One consistent read of elements a refresh may replace mid-read (retried if it did)."""
    waiting = WebDriverWait(driver, 5, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(lambda d: (reader(d),))[0]


def status(driver: WebDriver) -> tuple[str, str]:
    element = driver.find_element(By.ID, "status")
    return element.get_attribute("data-state") or "", element.text


def wait_connected(driver: WebDriver) -> None:
    wait_for(driver, lambda d: status(d) == ("ok", "connected"), "the status to say connected")


# The page re-renders every 2 s. Element-by-element reads take one WebDriver round trip
# each and, on a loaded machine, can span a re-render (stale elements, retried forever);
# these read a whole table in one script, at one instant.
_TABLE_ROWS = """
return Array.from(document.querySelectorAll(arguments[0])).map(tr => ({
  key: tr.getAttribute(arguments[1]),
  cells: Array.from(tr.cells).map(td => td.innerText.trim()),
  classes: tr.className,
}));
"""
_BARS = """
const section = document.getElementById(arguments[0]);
const labels = Array.from(section.querySelectorAll('.bar-label')).map(e => e.innerText.trim());
const values = Array.from(section.querySelectorAll('.bar-value')).map(e => e.innerText.trim());
return [labels, values];
"""


def decision_rows(driver: WebDriver) -> dict[str, dict[str, Any]]:
    """Request id → the row's cells as shown, and whether it is highlighted as an error."""
    rows = driver.execute_script(_TABLE_ROWS, "#decisions tbody tr", "data-request-id")
    return {
        row["cells"][1]: {"cells": row["cells"], "error": "error" in row["classes"].split()}
        for row in rows
        if len(row["cells"]) > 1
    }


def shows_requests(ids: list[str]) -> Callable[[WebDriver], bool]:
    return lambda d: set(ids) <= set(decision_rows(d))


def endpoint_rows(driver: WebDriver) -> dict[str, list[str]]:
    rows = driver.execute_script(_TABLE_ROWS, "#endpoints tbody tr[data-endpoint]", "data-endpoint")
    return {row["key"] or "": row["cells"] for row in rows}


def bar_counts(driver: WebDriver, section: str) -> dict[str, str]:
    """Label → count as shown in one of the bar charts (tier mix, strategies)."""
    labels, values = driver.execute_script(_BARS, section)
    return {label: value.split()[0] for label, value in zip(labels, values, strict=True)}


def text_of(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


# -- the tests ------------------------------------------------------------------------


def test_dashboard_shows_what_the_gateway_did(browser: WebDriver, busy: Busy) -> None:
    traffic = busy.traffic
    browser.get(f"{busy.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests([*traffic.routed, traffic.failed]), "every request sent in the decisions table")

    # Header: uptime, workers and the time of the last update.
    assert read(browser, lambda d: text_of(d, "#workers")) == "1"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", read(browser, lambda d: text_of(d, "#updated")))
    assert re.fullmatch(r"\d+s|\d+m \d\ds", read(browser, lambda d: text_of(d, "#uptime")))

    # Endpoints: every configured one, with the health a person reads.
    endpoints = read(browser, endpoint_rows)
    assert sorted(endpoints) == ["balanced-1", "deep-1", "fast-broken"]
    health = {ep: cells[3] for ep, cells in endpoints.items()}
    assert health == {"fast-broken": "unhealthy", "balanced-1": "healthy", "deep-1": "healthy"}
    assert endpoints["fast-broken"][1:3] == ["fast", "small-model"]
    assert endpoints["fast-broken"][5] == "4"  # errors: three fallbacks and the direct 502
    assert endpoints["fast-broken"][9] == "http_5xx HTTP 500: The simulated upstream broken failed (simulated 500)."
    assert endpoints["balanced-1"][5] == "0"
    assert endpoints["balanced-1"][9] == ""
    assert endpoints["deep-1"][2] == DEEP_MODEL  # markup in data is shown as text, never parsed
    assert browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody b") == []

    # Recent decisions: the ids the SDK saw in X-Request-Id, newest first, the 502 highlighted.
    rows = read(browser, decision_rows)
    shown_ids = list(rows)
    assert shown_ids[: len(traffic.routed) + 1] == [traffic.failed, *reversed(traffic.routed)]
    failed = rows[traffic.failed]
    assert failed["error"]
    assert failed["cells"][7] == "502"
    assert failed["cells"][4] == "–"  # no endpoint answered
    for request_id in traffic.routed:
        assert not rows[request_id]["error"]
        assert rows[request_id]["cells"][7] == "200"
    first = rows[traffic.routed[0]]["cells"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", first[0])
    assert (first[2], first[4], first[5]) == ("auto", "balanced-1", "rule")
    assert first[3] == "balanced from fast"  # the group that served, tagged with the one it fell back from
    assert first[6].startswith("rule_casual_short")
    deep = rows[traffic.routed[3]]["cells"]
    assert (deep[2], deep[3], deep[4], deep[5]) == ("deep", "deep", "deep-1", "direct")

    # Tier mix and strategies: the tier routing chose, so the fallbacks count under fast, as does
    # the request naming fast's endpoint.
    assert read(browser, lambda d: bar_counts(d, "tier-mix")) == {"fast": "4", "deep": "2"}
    assert read(browser, lambda d: bar_counts(d, "strategies")) == {"rule": "3", "direct": "3"}

    # Totals, status classes, latency.
    assert read(browser, lambda d: text_of(d, "#req-total")) == str(len(traffic.routed) + 1)
    assert read(browser, lambda d: text_of(d, "#status-classes")) == "2xx 5 4xx 1 5xx 1"  # the 404 included
    latency = read(browser, lambda d: text_of(d, '#latency tr[data-metric="latency"]')).split()
    assert latency[0] == "overall"
    assert all(re.fullmatch(r"[\d.,]+", value) for value in latency[1:]), latency
    ttft = read(browser, lambda d: text_of(d, '#latency tr[data-metric="ttft"]'))
    assert ttft.split()[-1] == "1", ttft  # one stream

    # Fallbacks and errors.
    fallback = read(browser, lambda d: text_of(d, '#fallbacks li[data-from="fast"][data-to="balanced"]'))
    assert fallback.split() == ["fast", "→", "balanced", "3"]
    upstream_errors = read(browser, lambda d: text_of(d, "#upstream-errors"))
    assert upstream_errors.split() == ["fast-broken", "http_5xx", "4"]
    assert read(browser, lambda d: text_of(d, "#mid-stream")) == "0"

    wait_for(browser, lambda d: text_of(d, "#rate-value") != "–", "a request rate (it needs two polls)")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    assert browser.save_screenshot(str(screenshot))
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png[16:20], "big") >= 1000  # IHDR width: the whole window
    assert len(png) > 20_000  # a populated page, not a blank one


def test_dashboard_refreshes_by_itself(browser: WebDriver, busy: Busy) -> None:
    traffic = busy.traffic
    browser.get(f"{busy.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests(traffic.routed), "the first requests in the decisions table")
    total = int(read(browser, lambda d: text_of(d, "#req-total")))

    later = [traffic.send("auto"), traffic.send("deep")]

    wait_for(browser, shows_requests(later), "requests sent after the page loaded")
    wait_for(browser, lambda d: text_of(d, "#req-total") == str(total + 2), "the total to grow by two")
    assert list(read(browser, decision_rows))[:2] == list(reversed(later))
    # The rate sparkline shows the burst: its highest point is above zero.
    wait_for(
        browser,
        lambda d: float(d.find_element(By.ID, "sparkline").get_attribute("data-max") or 0) > 0,
        "the request-rate sparkline to show the new requests",
    )
    assert read(browser, lambda d: text_of(d, "#rate-value")) != "–"
    assert status(browser) == ("ok", "connected")


def test_page_has_no_console_errors_and_loads_nothing_from_elsewhere(browser: WebDriver, busy: Busy) -> None:
    browser.get(f"{busy.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, lambda d: text_of(d, "#rate-value") != "–", "a second poll (the rate needs two)")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched, "the page fetched nothing"
    assert {url for url in fetched if not url.startswith(f"{busy.url}/metrics.json")} == set()


def test_metrics_token_comes_from_the_url_fragment(browser: WebDriver, upstreams, gateway, sdk_clients) -> None:
    gw = gateway(fleet(upstreams, observability={"metrics_token": TOKEN}))
    request_id = Traffic(sdk_clients.openai(gw)).send("deep")

    browser.get(f"{gw.url}/dashboard")
    _, text = wait_for(browser, lambda d: status(d) if status(d)[0] == "error" else None, "an error status")
    assert "unauthorised" in text
    assert "401" in text
    assert "#token=" in text  # says how to fix it
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("octoroute")  # a page, not a blank screen
    assert read(browser, endpoint_rows) == {}

    browser.get(f"{gw.url}/dashboard#token=not-the-token")
    wait_for(browser, lambda d: "refused" in status(d)[1], "the status to say the token was refused")

    browser.get(f"{gw.url}/dashboard#token={TOKEN}")
    wait_connected(browser)
    wait_for(browser, shows_requests([request_id]), "the request in the decisions table")
    assert sorted(read(browser, endpoint_rows)) == ["balanced-1", "deep-1", "fast-broken"]


def test_an_unreachable_gateway_is_shown_and_the_page_recovers(
    browser: WebDriver, upstreams, gateway, sdk_clients, loop_thread
) -> None:
    config = fleet(upstreams)
    gw = gateway(config)
    first = Traffic(sdk_clients.openai(gw)).send("deep")
    browser.get(f"{gw.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests([first]), "the first request in the decisions table")

    loop_thread.run(gw.runner.cleanup())
    wait_for(browser, lambda d: "gateway unreachable" in status(d)[1], "the status to say the gateway is unreachable")
    assert status(browser)[0] == "error"
    assert first in read(browser, decision_rows)  # the last data stays on screen

    restarted = loop_thread.run(start_on(gw.port, config))
    try:
        second = Traffic(sdk_clients.openai(gw)).send("deep")
        wait_connected(browser)
        wait_for(browser, shows_requests([second]), "a request served after the restart")
        assert read(browser, lambda d: text_of(d, "#req-total")) == "1"
    finally:
        loop_thread.run(restarted.cleanup())


async def start_on(port: int, config_data: dict[str, Any]) -> web.AppRunner:
    """A fresh gateway on a port another one just left."""
    config = parse_config(config_data, {})
    runner, _ = await serve_on_loopback(create_app(config, build_topology(config, {})), port, handler_cancellation=True)
    return runner


async def _release_all(up: Any) -> None:
    up.release_all()


def test_dashboard_shows_slots_the_waiting_line_and_affinity(
    browser: WebDriver, slotted, gateway, sdk_clients, loop_thread
) -> None:
    up = slotted("llama-1")
    gw = gateway(
        fleet_config({"fast": [{"name": "m", "id": "llama-1", "base_url": up.base_url, "max_concurrency": 1}]})
    )
    client = sdk_clients.openai(gw)
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
    for question in ("and then?", "and after that?"):  # one conversation: new, hit, hit
        answer = client.chat.completions.create(model="fast", messages=messages).choices[0].message.content
        messages += [{"role": "assistant", "content": answer or ""}, {"role": "user", "content": question}]
    client.chat.completions.create(model="fast", messages=messages)
    up.hold = True
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(client.chat.completions.create, model="fast", messages=HELLO)
        loop_thread.run(up.wait_held(1))
        waiting = pool.submit(client.chat.completions.create, model="fast", messages=HELLO)
        eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="one request waiting for the slot")

        browser.get(f"{gw.url}/dashboard")
        wait_connected(browser)
        wait_for(browser, lambda d: endpoint_rows(d).get("llama-1", [""])[-1] == "1 / 1", "the slot in use")
        waiting_line = read(browser, lambda d: text_of(d, '#queue-waiting li[data-group="fast"]'))
        assert waiting_line.split() == ["fast", "1"]
        assert read(browser, lambda d: text_of(d, "#affinity-hit")) == "2"
        assert read(browser, lambda d: text_of(d, "#affinity-new")) == "1"  # the two waiting are not served yet
        assert read(browser, lambda d: text_of(d, "#affinity-broken")) == "0"

        loop_thread.run(_release_all(up))
        assert held.result(30).choices[0].message.content
        assert waiting.result(30).choices[0].message.content
    wait_for(browser, lambda d: endpoint_rows(d)["llama-1"][-1] == "0 / 1", "the slot free again")
    wait_for(browser, lambda d: text_of(d, "#queue-served") == "1", "one request served after waiting")
    assert read(browser, lambda d: text_of(d, "#affinity-new")) == "3"
    assert read(browser, lambda d: text_of(d, '#queue-waiting li[data-group="fast"]')).split() == ["fast", "0"]

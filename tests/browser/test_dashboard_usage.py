"""The dashboard's usage table in a real headless Chromium: two `[auth]` keys' traffic
(tests/integration/test_usage_accounting.py) shown per key, group and endpoint, with the same
numbers and exact costs as /metrics.json."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import urllib3
from selenium.webdriver.chrome.webdriver import WebDriver
from tests.browser.test_dashboard import ARTIFACTS, wait_connected, wait_for
from tests.integration.test_usage_accounting import ENV, send_traffic, usage_config
from tests.scripted import scripted  # noqa: F401  (fixture)
from tests.support import eventually

TOKEN = "metrics-token-for-usage"
_USAGE = """
const cells = (tr) => Object.fromEntries(
  Array.from(tr.querySelectorAll('td[data-field]')).map(td => [td.dataset.field, td.innerText.trim()]));
const rows = Array.from(document.querySelectorAll('#usage-rows tr[data-client]')).map(tr => ({
  key: [tr.dataset.client, tr.dataset.group, tr.dataset.endpoint],
  cells: cells(tr),
}));
const total = document.querySelector('#usage-total tr');
return {
  currency: document.getElementById('usage-currency').innerText.trim(),
  rows: rows,
  total: total ? cells(total) : null,
};
"""


def whole(text: str) -> int:
    return int(text.replace(",", ""))  # counts are shown with thousands separators


@pytest.fixture
def served(upstreams, scripted, gateway):  # noqa: F811
    data = usage_config(upstreams, scripted)
    data["observability"] = {**data.get("observability", {}), "metrics_token": TOKEN}
    gw = gateway(data, env=ENV)
    expected = send_traffic(gw)
    http = urllib3.PoolManager()

    def snapshot() -> dict[str, Any]:
        response = http.request("GET", gw.url + "/metrics.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        return dict(response.json())

    total = sum(expected.requests.values())
    eventually(lambda: snapshot()["usage"]["total"]["requests"] == total, what="usage of every request")
    return gw, expected, snapshot()["usage"]


def test_the_usage_table_shows_each_key_group_and_endpoint_exactly(browser: WebDriver, served) -> None:
    gw, expected, usage = served
    browser.get(f"{gw.url}/dashboard#token={TOKEN}")
    wait_connected(browser)
    shown = wait_for(
        browser,
        lambda d: (table := d.execute_script(_USAGE))["rows"] and table,
        "the usage table to fill",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-usage.png"))
    assert shown["currency"] == "EUR"
    rows = {tuple(r["key"]): r["cells"] for r in shown["rows"]}
    assert sorted(rows) == expected.served()
    for key, cells in rows.items():
        assert whole(cells["requests"]) == expected.requests[key]
        assert whole(cells["unreported"]) == expected.unreported[key]
        assert whole(cells["input_tokens"]) == expected.tokens_in[key]
        assert whole(cells["output_tokens"]) == expected.tokens_out[key]
        assert Decimal(cells["cost"]) == expected.cost(key)  # the exact text, not a rounded float
    json_rows = {(r["client"], r["group"], r["endpoint"]): r for r in usage["rows"]}
    assert {k: c["cost"] for k, c in rows.items()} == {k: r["cost"] for k, r in json_rows.items()}
    assert shown["total"]["cost"] == usage["total"]["cost"]
    assert whole(shown["total"]["unreported"]) == 2

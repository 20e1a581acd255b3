"""Shadow mode on the dashboard, in a real headless Chromium: agreement, the
candidate's tier mix next to the live one, the live × candidate counts and each
decision's shadow tier, all from real SDK traffic; and no shadow panel when
shadow mode is off."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from tests.browser.test_dashboard import (
    ARTIFACTS,
    decision_rows,
    read,
    shows_requests,
    text_of,
    wait_connected,
    wait_for,
)
from tests.integration.test_learned_routing import weights_with
from tests.integration.test_shadow import HARD_HI, HI, WordModel
from tests.support import endpoint, fleet_config

from octoroute.routing.scoring import bundled_model

_SHADOW_TABLES = """
const cells = (tr) => Array.from(tr.cells).map(c => c.innerText.trim());
const rows = (css) => Array.from(document.querySelectorAll(css)).map(cells);
return [rows('#shadow-mix tbody tr'), rows('#shadow-confusion thead tr'), rows('#shadow-confusion tbody tr')];
"""


def healthy_fleet(upstreams) -> dict[str, Any]:
    return {tier: [endpoint(upstreams(tier), f"{tier}-model", id=f"{tier}-1")] for tier in ("fast", "balanced", "deep")}


def test_dashboard_shows_shadow_agreement_and_tier_mixes(browser: WebDriver, upstreams, gateway, sdk_clients) -> None:
    config = fleet_config(healthy_fleet(upstreams), routing={"strategy": "rule", "shadow": {"strategy": "learned"}})
    gw = gateway(config, score_model=WordModel())
    client = sdk_clients.openai(gw)
    ids = []
    for messages in (HI, HI, HARD_HI):  # rule: fast each time; the candidate: fast, fast, deep
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
        raw.parse()
        ids.append(raw.headers["X-Request-Id"])

    browser.get(f"{gw.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests(ids), "the three requests in the decisions table")
    assert browser.find_element(By.ID, "shadow").is_displayed()
    assert read(browser, lambda d: text_of(d, "#shadow-strategy")) == "learned (test.words) vs rule"
    assert read(browser, lambda d: text_of(d, "#shadow-agreement")) == "66.7%"
    assert read(browser, lambda d: (text_of(d, "#shadow-agreed"), text_of(d, "#shadow-decisions"))) == ("2", "3")
    assert not browser.find_element(By.ID, "shadow-judge").is_displayed()  # an offline candidate never waits

    mix, head, confusion = read(browser, lambda d: d.execute_script(_SHADOW_TABLES))
    assert mix == [
        ["fast", "3 (100%)", "", "2 (67%)", ""],
        ["balanced", "0 (0%)", "", "0 (0%)", ""],
        ["deep", "0 (0%)", "", "1 (33%)", ""],
    ]
    assert head == [["live ↓ cand. →", "fast", "balanced", "deep"]]
    assert confusion == [["fast", "2", "0", "1"], ["balanced", "0", "0", "0"], ["deep", "0", "0", "0"]]
    agree = browser.find_elements(By.CSS_SELECTOR, "#shadow-confusion td.agree")
    assert [cell.get_attribute("data-shadow") for cell in agree] == ["fast", "balanced", "deep"]

    rows = read(browser, decision_rows)
    assert [rows[i]["cells"][3] for i in ids] == ["fast shadow fast", "fast shadow fast", "fast shadow deep"]

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-shadow.png"
    screenshot.unlink(missing_ok=True)
    browser.find_element(By.ID, "shadow").screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_no_shadow_panel_when_shadow_mode_is_off(browser: WebDriver, upstreams, gateway, sdk_clients) -> None:
    gw = gateway(fleet_config(healthy_fleet(upstreams), routing={"strategy": "rule"}), score_model=WordModel())
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="auto", messages=HARD_HI)
    raw.parse()
    browser.get(f"{gw.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests([raw.headers["X-Request-Id"]]), "the request in the decisions table")
    assert not browser.find_element(By.ID, "shadow").is_displayed()
    assert "Shadow mode" not in browser.find_element(By.TAG_NAME, "body").text
    rows = read(browser, decision_rows)
    assert not any("shadow" in row["cells"][3] for row in rows.values())


def test_a_trained_model_shadowing_the_live_one_is_named_by_role_and_version(
    browser: WebDriver, upstreams, gateway, sdk_clients, tmp_path
) -> None:
    weights = tmp_path / "trained.json"
    weights.write_bytes(weights_with("trained-7", bias=10.0))  # beyond the reference: always deep
    shadow = {"strategy": "learned", "learned_weights": str(weights)}
    gw = gateway(fleet_config(healthy_fleet(upstreams), routing={"strategy": "learned", "shadow": shadow}))
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="auto", messages=HI)
    raw.parse()
    browser.get(f"{gw.url}/dashboard")
    wait_connected(browser)
    wait_for(browser, shows_requests([raw.headers["X-Request-Id"]]), "the request in the decisions table")
    version = bundled_model().version
    assert read(browser, lambda d: text_of(d, "#shadow-strategy")) == f"learned (trained-7) vs learned ({version})"
    names = read(browser, lambda d: (text_of(d, "#shadow-live-name"), text_of(d, "#shadow-candidate-name")))
    assert names == ("live", "shadow")

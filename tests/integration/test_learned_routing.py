"""The default `learned` strategy over real HTTP: the score in the headers and the
event record, cut points from config, and tiers that have no endpoints."""

from __future__ import annotations

import orjson
import pytest
from tests.integration.test_observability import settle
from tests.support import endpoint, fleet_config

from octoroute.config import parse_config
from octoroute.config.weightsfile import FORMAT
from octoroute.routing.learned import DENSE_NAMES
from octoroute.routing.scoring import TierCuts, bundled_model
from octoroute.server.state import LIVE

HARD = "Prove that every bounded monotone sequence of real numbers converges, and give a counterexample in Q."
EASY = "hi"


@pytest.fixture
def client(sdk_clients):
    return sdk_clients.openai


def route(client, gw, text: str, **extra: object) -> dict[str, str]:
    raw = client(gw.base_url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], extra_body=extra or None
    )
    raw.parse()  # the answer itself validates
    return {k.lower(): v for k, v in raw.headers.items() if k.lower().startswith("x-octoroute")}


def three_tiers(upstreams) -> dict[str, list[dict[str, object]]]:
    return {t: [endpoint(upstreams(t), t, id=f"{t}-1")] for t in ("fast", "balanced", "deep")}


def default_routing(models: dict[str, list[dict[str, object]]], **sections: object) -> dict[str, object]:
    """`fleet_config` without its `strategy = "rule"`: the defaults a user gets."""
    config = fleet_config(models, **sections)
    del config["routing"]["strategy"]
    return config


def test_a_config_without_a_strategy_routes_by_the_learned_score(upstreams, gateway, client):
    gw = gateway(default_routing(three_tiers(upstreams)))
    model, cuts = bundled_model(), TierCuts(0.4, 0.8)
    for text in (EASY, HARD):
        headers = route(client, gw, text)
        expected = model.predict(text).score
        assert headers["x-octoroute-strategy"] == "learned"
        assert headers["x-octoroute-reason"] == "learned_score"
        assert float(headers["x-octoroute-score"]) == pytest.approx(expected, abs=5e-4)
        assert headers["x-octoroute-tier"] == cuts.tier_of(expected).value


def test_thresholds_from_config_decide_the_tier(upstreams, gateway, client):
    everything_deep = gateway(default_routing(three_tiers(upstreams), routing={"score_thresholds": [0.0, 0.0]}))
    nothing_deep = gateway(default_routing(three_tiers(upstreams), routing={"score_thresholds": [1.0, 1.0]}))
    assert route(client, everything_deep, EASY)["x-octoroute-tier"] == "deep"
    assert route(client, nothing_deep, HARD)["x-octoroute-tier"] == "fast"


def test_importance_hint_moves_the_score(upstreams, gateway, client):
    gw = gateway(default_routing(three_tiers(upstreams)))
    plain = float(route(client, gw, HARD)["x-octoroute-score"])
    low = float(route(client, gw, HARD, importance="low")["x-octoroute-score"])
    assert low == pytest.approx(max(0.0, plain - 0.25), abs=1e-3)


def test_a_missing_tier_goes_to_the_nearest_stronger_one(upstreams, gateway, client):
    fast, deep = upstreams("fast"), upstreams("deep")
    models = {"fast": [endpoint(fast, "f")], "deep": [endpoint(deep, "d")]}
    gw = gateway(default_routing(models, routing={"score_thresholds": [0.0, 1.0]}))  # every score says balanced
    headers = route(client, gw, EASY)
    assert headers["x-octoroute-tier"] == "deep"
    assert headers["x-octoroute-reason"] == "learned_score"
    assert deep.count == 1
    assert fast.count == 0


def test_the_score_reaches_the_event_file_and_rule_decisions_carry_nominal_scores(
    upstreams, gateway, client, tmp_path, loop_thread
):
    events = tmp_path / "events.jsonl"
    gw = gateway(default_routing(three_tiers(upstreams), observability={"events_file": str(events)}))
    headers = route(client, gw, HARD)
    rule_gw = gateway(fleet_config(three_tiers(upstreams), routing={"strategy": "rule"}))
    assert route(client, rule_gw, EASY)["x-octoroute-score"] == "0.000"
    settle(gw, loop_thread, 1)
    records = [orjson.loads(line) for line in events.read_bytes().splitlines()]
    requests = [r for r in records if r["event"] == "request"]
    assert len(requests) == 1
    expected = bundled_model().predict(HARD).score
    assert requests[0]["score"] == pytest.approx(expected, abs=5e-5)
    assert float(headers["x-octoroute-score"]) == pytest.approx(expected, abs=5e-4)


def test_a_client_naming_a_group_gets_no_score(upstreams, gateway, client):
    gw = gateway(default_routing(three_tiers(upstreams)))
    raw = client(gw.base_url).chat.completions.with_raw_response.create(
        model="deep", messages=[{"role": "user", "content": HARD}]
    )
    assert "x-octoroute-score" not in {k.lower() for k in raw.headers}


def weights_with(version: str, bias: float = 0.0, **dense: float) -> bytes:
    """A weights file whose raw score is `bias` plus the named dense features; its
    reference runs 0..4, so raw 3 is the score 0.7 and anything beyond 4 is near 1."""
    return orjson.dumps(
        {
            "format": FORMAT,
            "version": version,
            "bias": bias,
            "dense": [dense.get(name, 0.0) for name in DENSE_NAMES],
            "dense_means": [0.0] * len(DENSE_NAMES),
            "terms": {},
            "reference": [0.0, 1.0, 2.0, 3.0, 4.0],
        }
    )


def weighted_gateway(upstreams, gateway, tmp_path, weights: bytes):
    """A gateway whose `[routing] learned_weights` file holds `weights`: (the file, the config, the gateway)."""
    path = tmp_path / "weights.json"
    path.write_bytes(weights)
    config = default_routing(three_tiers(upstreams), routing={"learned_weights": str(path)})
    return path, config, gateway(config)


def test_learned_weights_from_config_score_live_requests_and_a_reload_applies_a_retrained_file(
    upstreams, gateway, client, tmp_path, loop_thread
):
    path, config, gw = weighted_gateway(upstreams, gateway, tmp_path, weights_with("by-questions", question_marks=1.0))
    asking = route(client, gw, "Why? How? When?")
    assert float(asking["x-octoroute-score"]) == pytest.approx(0.7, abs=5e-4)  # raw 3 on the 0..4 reference
    assert asking["x-octoroute-tier"] == "balanced"
    assert route(client, gw, "Tell me.")["x-octoroute-tier"] == "fast"

    path.write_bytes(weights_with("by-numbers", log_numbers=4.0))  # retrained in place, same config
    report = loop_thread.run(gw.app[LIVE].reload(parse_config(config, {}), {}))
    assert report.result == "ok"
    assert report.changed
    assert route(client, gw, "Why? How? When?")["x-octoroute-tier"] == "fast"
    assert route(client, gw, "Add 1 and 2.")["x-octoroute-tier"] == "deep"  # raw 4 * log1p(2) numbers > 4


def test_a_weights_file_spoilt_after_the_check_refuses_the_reload_and_keeps_serving(
    upstreams, gateway, client, tmp_path, loop_thread
):
    path, config, gw = weighted_gateway(upstreams, gateway, tmp_path, weights_with("first", question_marks=1.0))
    path.write_bytes(weights_with("second", log_numbers=1.0))
    checked = parse_config(config, {})  # valid when read...
    path.write_bytes(b"{ truncated")  # ...and spoilt before the gateway loads it
    report = loop_thread.run(gw.app[LIVE].reload(checked, {}))
    assert report.result == "refused"
    assert any("routing.learned_weights" in problem for problem in report.problems)
    assert route(client, gw, "Why? How? When?")["x-octoroute-tier"] == "balanced"  # still the first file

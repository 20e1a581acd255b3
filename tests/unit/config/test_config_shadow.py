"""`[routing.shadow]`: what is accepted, and every problem with its key path."""

from __future__ import annotations

from importlib import resources

import pytest

from octoroute.config import parse_config
from octoroute.config.models import RoutingConfig, ShadowConfig
from octoroute.config.reload import config_digest
from octoroute.core.errors import ConfigError
from octoroute.core.types import Strategy


def ep() -> dict[str, str]:
    return {"name": "m", "base_url": "http://localhost:1/v1"}


def shadow_problems(routing: dict[str, object], models: tuple[str, ...] = ("fast", "deep")) -> dict[str, str]:
    """Problems of a config with this `[routing]`, by key path ({} when it is valid)."""
    try:
        parse_config({"models": {g: [ep()] for g in models}, "routing": routing}, {})
    except ConfigError as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


def test_shadow_mode_is_off_unless_the_section_is_there():
    assert RoutingConfig().shadow is None
    config = parse_config(
        {"models": {"fast": [ep()]}, "routing": {"strategy": "rule", "shadow": {"strategy": "llm"}}}, {}
    )
    assert config.routing.shadow == ShadowConfig(strategy=Strategy.LLM)
    assert (config.routing.shadow.allow_judge, config.routing.shadow.sample, config.routing.shadow.max_pending) == (
        False,
        1.0,
        32,
    )


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        (
            {"strategy": "rule", "shadow": {"strategy": "rule"}},
            {"routing.shadow.strategy": "'rule' is already the live strategy; shadow a different one"},
        ),
        (
            {"shadow": {"strategy": "learned"}},
            {"routing.shadow.strategy": "'learned' is already the live strategy; shadow a different one"},
        ),
        ({"strategy": "rule", "shadow": {}}, {"routing.shadow.strategy": "required"}),
        ({"strategy": "rule", "shadow": {"strategy": "direct"}}, {"routing.shadow.strategy": "must be one of"}),
        ({"strategy": "rule", "shadow": {"strategy": "llm", "sample": 0}}, {"routing.shadow.sample": "must be > 0"}),
        ({"strategy": "rule", "shadow": {"strategy": "llm", "sample": 1.5}}, {"routing.shadow.sample": "must be <= 1"}),
        (
            {"strategy": "rule", "shadow": {"strategy": "llm", "max_pending": 0}},
            {"routing.shadow.max_pending": "must be >= 1"},
        ),
        ({"strategy": "rule", "shadow": {"strategy": "llm", "colour": "red"}}, {"routing.shadow.colour": ""}),
    ],
)
def test_shadow_problems_name_their_key(routing, expected):
    found = shadow_problems(routing)
    assert set(found) == set(expected)
    for path, words in expected.items():
        assert words.lower() in found[path].lower()


def test_a_judge_candidate_allowed_to_ask_needs_the_router_tier():
    routing = {"strategy": "rule", "router_tier": "balanced", "shadow": {"strategy": "hybrid", "allow_judge": True}}
    found = shadow_problems(routing)
    assert list(found) == ["routing.router_tier"]
    assert "'balanced' has no endpoints" in found["routing.router_tier"]
    assert "shadow strategy 'hybrid'" in found["routing.router_tier"]
    # Scored offline (no allow_judge), it never asks: no router tier needed.
    assert shadow_problems({**routing, "shadow": {"strategy": "hybrid"}}) == {}
    # With the router tier present, asking is fine.
    assert shadow_problems({**routing, "router_tier": "fast"}) == {}


def test_a_live_judge_and_a_judge_candidate_report_a_missing_router_tier_once():
    routing = {"strategy": "llm", "router_tier": "balanced", "shadow": {"strategy": "hybrid", "allow_judge": True}}
    assert list(shadow_problems(routing)) == ["routing.router_tier"]


def test_a_trained_model_can_shadow_the_live_learned_one(tmp_path):
    weights = tmp_path / "w.json"
    weights.write_bytes(resources.files("octoroute.routing").joinpath("learned_weights.json").read_bytes())
    assert shadow_problems({"shadow": {"strategy": "learned", "learned_weights": str(weights)}}) == {}
    assert shadow_problems({"strategy": "rule", "shadow": {"strategy": "llm", "learned_weights": str(weights)}}) == {}
    assert shadow_problems({"shadow": {"strategy": "learned"}})["routing.shadow.strategy"].endswith(
        "shadow a different one, or give it a trained model of its own (learned_weights)"
    )
    where = "routing.shadow.learned_weights"
    same = {"learned_weights": str(weights), "shadow": {"strategy": "learned", "learned_weights": str(weights)}}
    assert "is the live model's file too" in shadow_problems(same)[where]
    rule = {"strategy": "llm", "shadow": {"strategy": "rule", "learned_weights": str(weights)}}
    assert shadow_problems(rule)[where] == "the shadow strategy 'rule' does not score with the learned model"
    asking = {"strategy": "rule", "shadow": {"strategy": "llm", "allow_judge": True, "learned_weights": str(weights)}}
    assert "asks the router model" in shadow_problems(asking)[where]
    missing = {"shadow": {"strategy": "learned", "learned_weights": str(tmp_path / "none.json")}}
    assert shadow_problems(missing)[where].startswith("cannot read")


def test_the_shadow_models_file_is_part_of_the_digest(tmp_path):
    weights = tmp_path / "w.json"
    bundled = resources.files("octoroute.routing").joinpath("learned_weights.json").read_bytes()
    weights.write_bytes(bundled)
    data = {"models": {"fast": [ep()]}, "routing": {"shadow": {"strategy": "learned", "learned_weights": str(weights)}}}
    before = config_digest(parse_config(data, {}))
    weights.write_bytes(bundled.replace(b'"version":"', b'"version":"re-'))
    assert config_digest(parse_config(data, {})) != before

"""Config validation: the 1.0 format as is, extensions, and every problem at once."""

from __future__ import annotations

import importlib.util

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.config.topology import config_warnings, default_tier
from octoroute.core.errors import ConfigError

ONE_O = {
    "server": {"host": "127.0.0.1", "port": 3000, "request_timeout_seconds": 30},
    "models": {
        tier: [
            {
                "name": f"{tier}-m",
                "base_url": "http://localhost:1234/v1",
                "max_tokens": 2048,
                "temperature": 0.7,
                "weight": 1.0,
                "priority": 1,
            }
        ]
        for tier in ("fast", "balanced", "deep")
    },
    "routing": {"strategy": "hybrid", "default_importance": "normal", "router_tier": "balanced"},
    "timeouts": {"fast": 15, "balanced": 30, "deep": 60},
    "observability": {"log_level": "info"},
}


def ep(**extra):
    return {"name": "m", "base_url": "http://localhost:1/v1", **extra}


def problems(data, env=None):
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return [str(p) for p in info.value.problems]


def test_octoroute_1_0_config_is_accepted_verbatim():
    config = parse_config(ONE_O, {})
    topo = build_topology(config, {})
    assert list(topo.groups) == ["fast", "balanced", "deep"]
    assert topo.endpoints["fast/fast-m"].timeouts.total == 15
    assert topo.endpoints["deep/deep-m"].timeouts.total == 60
    assert topo.fallback_chain("fast") == ("fast", "balanced", "deep")


def test_every_problem_is_reported_at_once_with_its_key_path():
    data = {
        "server": {"port": 70000, "colour": "blue"},
        "models": {"fast": [ep(), ep(weight=0), ep(weight=float("inf"), base_url="ftp://x")]},
        "routing": {"strategy": "magic"},
    }
    found = problems(data)
    assert "server.port: must be <= 65535" in found
    assert "server.colour: unknown key" in found
    assert "models.fast[1].weight: must be > 0" in found
    assert any(p.startswith("models.fast[2].weight:") for p in found)
    assert any(p.startswith("models.fast[2].base_url: must be an http") for p in found)
    assert 'routing.strategy: must be one of learned, rule, llm, hybrid, tool; got "magic"' in found


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"models": {"fast": [ep()]}, "routing": {"strategy": "llm", "router_tier": "deep"}},
            "routing.router_tier: 'deep' has no endpoints under [models]",
        ),
        (
            {"models": {"fast": [ep()]}, "routing": {"strategy": "tool", "router_tier": "balanced"}},
            "routing.router_tier: 'balanced' has no endpoints under [models]",
        ),
        (
            {"models": {"fast": [ep(id="a")], "deep": [ep(id="a")]}},
            "models.deep[0].id: 'a' is already used by models.fast[0].id",
        ),
        (
            {"models": {"fast": [ep(id="deep")], "deep": [ep()]}},
            "models.fast[0].id: 'deep' is also a group name; ids and groups share one namespace",
        ),
        (
            {"models": {"fast": [ep()], "deep": [ep()]}, "fallback": {"fast": "deep", "deep": "fast"}},
            "fallback.fast: fallback chain is a cycle: fast -> deep -> fast",
        ),
        (
            {"models": {"fast": [ep()]}, "fallback": {"fast": "nowhere"}},
            "fallback.fast: target 'nowhere' is not a group under [models]",
        ),
        (
            {"models": {"fast": [ep(api_key_env="OCTO_TEST_KEY")]}},
            "models.fast[0].api_key_env: environment variable OCTO_TEST_KEY is not set",
        ),
        ({"models": {"coder": [ep()]}}, "models: define at least one of the tiers fast, balanced, deep"),
        ({"models": {"fast": [ep(timeouts={"total": 0})]}}, "models.fast[0].timeouts.total: must be > 0"),
        ({"models": {"fast": [ep()]}, "timeouts": {"slow": 3}}, "timeouts.slow: 'slow' is not a group under [models]"),
        ({"models": {"fast": []}}, "models: group 'fast' has no endpoints"),
        ({"models": {"auto": [ep()]}}, "models: 'auto' is reserved for routing and cannot be a group name"),
        (
            {"models": {"fast": [ep()]}, "health": {"rate_limit_cooldown_seconds": 0}},
            "health.rate_limit_cooldown_seconds: must be > 0",
        ),
        (
            {"models": {"fast": [ep()]}, "health": {"loading_retry_seconds": 7200}},
            "health.loading_retry_seconds: must be <= 3600",
        ),
        ({"models": {"fast": [ep()]}, "health": {"fail_open": "sometimes"}}, "health.fail_open:"),
    ],
)
def test_cross_field_rules(data, expected):
    found = problems(data)
    assert any(expected in p for p in found), found


def test_api_key_is_read_from_the_environment_only():
    config = parse_config({"models": {"fast": [ep(api_key_env="OCTO_KEY")]}}, {"OCTO_KEY": "s3cret"})
    topo = build_topology(config, {"OCTO_KEY": "s3cret"})
    assert topo.endpoints["fast/m"].api_key == "s3cret"
    assert topo.endpoints["fast/m"].api_key_env == "OCTO_KEY"  # named in the log line when the key is refused
    assert "s3cret" not in config.model_dump_json()


def test_timeouts_resolve_endpoint_then_group_then_global():
    data = {
        "server": {"request_timeout_seconds": 40},
        "models": {
            "fast": [ep(id="a", timeouts={"first_byte": 2}), ep(id="b")],
            "deep": [ep(id="c")],
        },
        "timeouts": {"connect": 1.5, "idle": 50, "fast": {"total": 10, "first_byte": 5, "idle": 7}},
    }
    data["models"]["deep"].append(ep(id="d", timeouts={"idle": 3}))
    topo = build_topology(parse_config(data, {}), {})
    a, b, c, d = (topo.endpoints[i].timeouts for i in "abcd")
    assert (a.connect, a.first_byte, a.total, a.idle) == (1.5, 2, 10, 7)
    assert (b.connect, b.first_byte, b.total, b.idle) == (1.5, 5, 10, 7)
    assert (c.connect, c.first_byte, c.total, c.idle) == (1.5, 40, 40, 50)
    assert d.idle == 3


def test_default_timeouts_fit_a_local_server_prefilling_a_long_prompt():
    """Minutes to the first token, a short connect, and a stream judged by its silences."""
    topo = build_topology(parse_config({"models": {"fast": [ep()]}}, {}), {})
    t = topo.endpoints["fast/m"].timeouts
    assert (t.connect, t.first_byte, t.total, t.idle) == (5, 600, 600, 120)


def test_default_ids_alias_groups_and_fallbacks():
    data = {
        "models": {"fast": [ep(), ep()], "coder": [ep(name="qwen")], "deep": [ep()]},
        "fallback": {"coder": "deep", "fast": "none"},
    }
    topo = build_topology(parse_config(data, {}), {})
    assert list(topo.endpoints) == ["fast/m", "fast/m#2", "coder/qwen", "deep/m"]
    assert topo.fallback_chain("coder") == ("coder", "deep")
    assert topo.fallback_chain("fast") == ("fast",)


def test_unset_default_tier_uses_the_nearest_configured_tier():
    assert default_tier(parse_config({"models": {"fast": [ep()]}, "routing": {"strategy": "rule"}}, {})) == "fast"
    found = problems({"models": {"fast": [ep()]}, "routing": {"strategy": "rule", "default_tier": "deep"}})
    assert "routing.default_tier: 'deep' has no endpoints under [models]" in found


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [
        ({"claude-*": "nowhere"}, "aliases.claude-*: target 'nowhere' is not 'auto', a group or an endpoint id"),
        ({"auto": "fast"}, "aliases.auto: 'auto' is reserved for routing"),
        ({"fast": "auto"}, "aliases.fast: 'fast' is already a group or endpoint id"),
        ({"claude-[ab]*": 3}, "aliases.claude-[ab]*: must be a string, got 3"),
    ],
)
def test_alias_problems(aliases, expected):
    assert expected in problems({"models": {"fast": [ep()]}, "aliases": aliases})


def test_aliases_match_patterns_in_file_order():
    data = {"models": {"fast": [ep()], "deep": [ep()]}, "aliases": {"claude-opus-*": "deep", "claude-*": "fast"}}
    topo = build_topology(parse_config(data, {}), {})
    assert topo.resolve_alias("claude-opus-9") == "deep"
    assert topo.resolve_alias("claude-haiku-9") == "fast"
    assert topo.resolve_alias("gpt-4") is None


def _observability(section, env=None):
    """Problems of a config with this `[observability]`, by key path ({} when it is valid)."""
    try:
        parse_config({"models": {"fast": [ep()]}, "observability": section}, env or {})
    except ConfigError as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


def test_observability_problems_name_their_keys(tmp_path):
    assert "observability.events_file" in _observability({"events_file": str(tmp_path / "missing" / "e.jsonl")})
    assert _observability({"events_file": str(tmp_path / "e.jsonl")}) == {}
    assert "observability.metrics_token_env" in _observability({"metrics_token_env": "TOKEN"})  # unset
    assert "observability.metrics_token_env" in _observability({"metrics_token_env": "TOKEN"}, {"TOKEN": "short"})
    assert _observability({"metrics_token_env": "TOKEN"}, {"TOKEN": "long-enough"}) == {}
    assert "observability.metrics_token_env" in _observability({"metrics_token_env": "not a name"})
    both = _observability({"metrics_token": "12345678", "metrics_token_env": "TOKEN"}, {"TOKEN": "12345678"})
    assert "not both" in str(both.values())


def test_tracing_without_the_otel_extra_is_a_config_problem(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("opentelemetry") else real(name, *a)
    )
    found = _observability({"tracing": {"enabled": True}})
    assert "octoroute[otel]" in found["observability.tracing.enabled"]
    assert _observability({"tracing": {"enabled": False}}) == {}


def test_config_warnings_name_what_is_risky():
    config = parse_config(
        {
            "models": {"fast": [ep(base_url="http://gpu-box:8000/v1", api_key_env="KEY")]},
            "observability": {"log_content": True, "tracing": {"enabled": True, "sample_ratio": 0}},
        },
        {"KEY": "k"},
    )
    warnings = config_warnings(config, build_topology(config, {"KEY": "k"}))
    assert len(warnings) == 3
    assert "plain http to gpu-box" in warnings[0]
    assert "log_content" in warnings[1]
    assert "sample_ratio 0" in warnings[2]
    local = parse_config(
        {"models": {"fast": [ep(base_url="http://127.0.0.1:8000/v1", api_key_env="KEY")]}}, {"KEY": "k"}
    )
    assert config_warnings(local, build_topology(local, {"KEY": "k"})) == []


@pytest.mark.parametrize("url", ["http://admin:hunter22@10.0.0.5:8080/v1", "https://token@api.example/v1"])
def test_base_url_credentials_are_refused_pointing_at_api_key_env_and_never_echoed(url):
    found = problems({"models": {"fast": [ep(base_url=url)]}})
    assert len(found) == 1
    assert found[0].startswith("models.fast[0].base_url: must not carry credentials")
    assert "api_key_env" in found[0]
    assert "hunter22" not in found[0]
    assert "token@" not in found[0]


def test_an_at_sign_in_the_path_is_not_a_credential():
    config = parse_config({"models": {"fast": [ep(base_url="http://127.0.0.1:8080/v1/@x")]}}, {})
    assert config.models["fast"][0].base_url == "http://127.0.0.1:8080/v1/@x"

"""`[state]`: defaults, the URL from the environment, and every problem with its key path."""

from __future__ import annotations

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import ConfigError

MODELS = {"fast": [{"name": "m", "base_url": "http://localhost:1/v1"}]}


def problems(state: dict[str, object], env: dict[str, str] | None = None) -> dict[str, str]:
    try:
        config = parse_config({"models": MODELS, "state": state}, env or {})
        build_topology(config, env or {})
    except ConfigError as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


def test_the_default_is_local_state_with_a_short_redis_timeout():
    config = parse_config({"models": MODELS}, {})
    assert (config.state.backend, config.state.timeout_ms, config.state.key_prefix) == ("local", 50.0, "octoroute:")


def test_the_url_may_come_from_the_environment_and_stays_out_of_reprs():
    env = {"REDIS_URL": "redis://:s3cret@10.0.0.5:6379/1"}
    config = parse_config({"models": MODELS, "state": {"backend": "redis", "url_env": "REDIS_URL"}}, env)
    topology = build_topology(config, env)
    assert topology.state_url == "redis://:s3cret@10.0.0.5:6379/1"
    assert "s3cret" not in repr(topology)


def test_every_problem_is_reported_with_its_key_path():
    assert set(problems({"backend": "memcached", "timeout_ms": 0, "url": "http://x", "colour": 1})) == {
        "state.backend",
        "state.timeout_ms",
        "state.url",
        "state.colour",
    }
    assert "REDIS_URL is not set" in problems({"backend": "redis", "url_env": "REDIS_URL"})["state.url_env"]
    assert "state.url_env" in problems({"url_env": "REDIS_URL"}, {"REDIS_URL": "localhost:6379"})

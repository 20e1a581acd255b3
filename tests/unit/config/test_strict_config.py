"""Strict config: wrong types are problems (no coercion), unknown keys get a
"did you mean", and every message is in the house style of config/problems.py."""

from __future__ import annotations

import datetime
import re
import tomllib

import pytest

from octoroute.config import parse_config
from octoroute.core.errors import ConfigError


def ep(**extra: object) -> dict[str, object]:
    return {"name": "m", "base_url": "http://localhost:1/v1", **extra}


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[[models.fast]]\nname="m"\nbase_url="http://h/v1"\nmax_tokens = true',
            "models.fast[0].max_tokens: must be an integer, got true",
        ),
        (
            '[server]\nport = "3000"\n[[models.fast]]\nname="m"\nbase_url="http://h/v1"',
            'server.port: must be an integer, got "3000"',
        ),
        (
            '[[models.fast]]\nname="m"\nbase_url="http://h/v1"\ntemperature = "0.5"',
            'models.fast[0].temperature: must be a number, got "0.5"',
        ),
        (
            '[health]\nactive = "yes"\n[[models.fast]]\nname="m"\nbase_url="http://h/v1"',
            'health.active: must be true or false, got "yes"',
        ),
        (
            '[[models.fast]]\nname="m"\nbase_url="http://h/v1"\npriority = 1.5',
            "models.fast[0].priority: must be an integer, got 1.5",
        ),
        ('[[models.fast]]\nname=7\nbase_url="http://h/v1"', "models.fast[0].name: must be a string, got 7"),
        (
            '[routing]\nscore_thresholds = "0.2"\n[[models.fast]]\nname="m"\nbase_url="http://h/v1"',
            'routing.score_thresholds: must be an array, got "0.2"',
        ),
        ('health = 3\n[[models.fast]]\nname="m"\nbase_url="http://h/v1"', "health: must be a table, got 3"),
        (
            '[[models.fast]]\nname="m"\nbase_url="http://h/v1"\nweight = 1979-05-27',
            "models.fast[0].weight: must not be a TOML date or time",
        ),
    ],
)
def test_wrong_types_are_problems_with_their_key_path(toml: str, expected: str) -> None:
    assert expected in problems(tomllib.loads(toml))


def test_integers_stay_valid_where_numbers_are_expected() -> None:
    data = {"models": {"fast": [ep(temperature=1, weight=2)]}, "server": {"request_timeout_seconds": 30}}
    config = parse_config(data, env={})
    assert config.models["fast"][0].temperature == 1.0
    assert config.models["fast"][0].weight == 2.0
    assert config.server.request_timeout_seconds == 30.0


def test_strings_still_name_enums_and_arrays_still_fill_tuples() -> None:
    data = {
        "models": {"fast": [ep()], "deep": [ep()]},
        "routing": {"strategy": "rule", "default_tier": "deep", "score_thresholds": [0.2, 0.6]},
        "groups": {"fast": {"stop_markers": ["</s>"], "thinking_params": ["chat_template_kwargs"]}},
    }
    config = parse_config(data, env={})
    assert config.routing.strategy == "rule"
    assert config.routing.score_thresholds == (0.2, 0.6)
    assert config.groups["fast"].stop_markers == ("</s>",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"server": {"prot": 3000}}, "server.prot: unknown key; did you mean 'port'?"),
        ({"obsrvability": {}}, "obsrvability: unknown key; did you mean 'observability'?"),
        ({"models": {"fast": [ep(wieght=2)]}}, "models.fast[0].wieght: unknown key; did you mean 'weight'?"),
        (
            {"groups": {"fast": {"strip_thinks": True}}},
            "groups.fast.strip_thinks: unknown key; did you mean 'strip_think'?",
        ),
        (
            {"observability": {"tracing": {"enabld": True}}},
            "observability.tracing.enabld: unknown key; did you mean 'enabled'?",
        ),
        (
            {"rate_limit": {"overrides": [{"key_env": "K", "brust": 3}]}},
            "rate_limit.overrides[0].brust: unknown key; did you mean 'burst'?",
        ),
        ({"server": {"zzzz": 1}}, "server.zzzz: unknown key"),
    ],
)
def test_unknown_keys_suggest_the_nearest_known_key(data: dict[str, object], expected: str) -> None:
    data.setdefault("models", {"fast": [ep()]})
    assert expected in problems(data)


def test_a_far_off_key_gets_no_suggestion() -> None:
    assert problems({"models": {"fast": [ep()]}, "server": {"zzzz": 1}}) == ["server.zzzz: unknown key"]


RAW_PYDANTIC = re.compile(r"Input should|Value error|valid (integer|number|string|list|dictionary)|\[type=")


def test_no_message_is_raw_pydantic_text() -> None:
    data = {
        "server": {"port": "x", "host": 1, "max_body_bytes": 1},
        "models": {"fast": [ep(max_tokens=True, kind="grpc", id="bad id!", timeouts=[])], "deep": "x"},
        "routing": {"strategy": 3, "score_thresholds": [0.1], "default_importance": "urgent"},
        "observability": {"log_format": "xml", "log_level": 2},
        "groups": {"fast": {"late_system": "x", "stop_markers": [""]}},
        "aliases": {"a": 1},
        "health": {"failure_threshold": 0, "active": 1},
    }
    found = problems(data)
    assert len(found) >= 14
    for line in found:
        assert not RAW_PYDANTIC.search(line), line
        path, _, message = line.partition(": ")
        assert path, line
        assert message, line
        assert message[0].islower(), line
        assert not message.endswith("."), line


def test_dates_anywhere_are_refused_before_validation() -> None:
    data = {"models": {"fast": [ep(name=datetime.date(2024, 1, 1))]}}
    assert problems(data) == ["models.fast[0].name: must not be a TOML date or time"]

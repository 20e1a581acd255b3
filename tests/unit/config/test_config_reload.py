"""What a reload applies and what needs a restart (`config.reload`), pure."""

from __future__ import annotations

from typing import Any

import pytest

from octoroute.config import Config, parse_config
from octoroute.config.reload import config_digest, needs_restart, runnable

BASE: dict[str, Any] = {
    "models": {"fast": [{"name": "m", "base_url": "http://127.0.0.1:8001/v1"}]},
    "routing": {"strategy": "rule"},
}


def config(**sections: Any) -> Config:
    return parse_config({**BASE, **sections}, {})


@pytest.mark.parametrize(
    ("sections", "keys"),
    [
        pytest.param({}, (), id="nothing"),
        pytest.param({"server": {"port": 4000}}, ("server.port",), id="port"),
        pytest.param({"server": {"host": "0.0.0.0"}}, ("server.host",), id="host"),
        pytest.param({"server": {"request_timeout_seconds": 5}}, (), id="request-timeout-applies"),
        pytest.param(
            {"limits": {"client_body_timeout_seconds": 5, "max_json_depth": 16}},
            ("limits.client_body_timeout_seconds",),
            id="client-timeouts-not-upstream-limits",
        ),
        pytest.param(
            {"observability": {"tracing": {"enabled": True}}}, ("observability.tracing.enabled",), id="nested"
        ),
        pytest.param({"rate_limit": {"enabled": True}}, ("rate_limit.enabled",), id="rate-limit"),
        pytest.param({"responses": {"store_max_entries": 5}}, ("responses.store_max_entries",), id="responses-store"),
        pytest.param({"retry": {"max_attempts": 2}, "health": {"active": False}}, (), id="applied-sections"),
    ],
)
def test_needs_restart_names_only_the_restart_only_keys_that_changed(
    sections: dict[str, Any], keys: tuple[str, ...]
) -> None:
    assert needs_restart(config(), config(**sections)) == keys


def test_runnable_keeps_restart_only_values_and_takes_the_rest() -> None:
    running = config()
    loaded = config(
        server={"port": 4000, "request_timeout_seconds": 5},
        observability={"log_format": "json"},
        retry={"max_attempts": 2},
        limits={"client_header_timeout_seconds": 3, "max_event_bytes": 65536},
    )
    applied = runnable(running, loaded)
    assert applied.server.port == running.server.port
    assert applied.server.request_timeout_seconds == 5
    assert applied.observability == running.observability
    assert applied.retry.max_attempts == 2
    assert applied.limits.client_header_timeout_seconds == running.limits.client_header_timeout_seconds
    assert applied.limits.max_event_bytes == 65536
    assert needs_restart(running, applied) == ()


def test_the_digest_follows_content_only() -> None:
    assert config_digest(config()) == config_digest(config())
    assert config_digest(config()) != config_digest(config(retry={"max_attempts": 2}))

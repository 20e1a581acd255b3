"""Helpers for building test configs around fixture upstreams."""

from __future__ import annotations

from typing import Any

from octoroute.demo.simulated import SimulatedUpstream


def endpoint(sim: SimulatedUpstream, name: str, **extra: Any) -> dict[str, Any]:
    """A config entry for a fixture upstream."""
    return {"name": name, "base_url": sim.base_url, **extra}


def fleet_config(models: dict[str, list[dict[str, Any]]], **sections: Any) -> dict[str, Any]:
    """A config dict with active probes off (tests drive health explicitly) and fast retries."""
    data: dict[str, Any] = {
        "models": models,
        "routing": {"strategy": "rule"},
        "health": {"active": False, "failure_threshold": 3},
        "retry": {"max_attempts": 4, "backoff_base_ms": 1, "backoff_max_ms": 5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data

"""Helpers for building test configs around fixture upstreams."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from octoroute.core.types import Features, Importance, TaskType
from octoroute.demo.simulated import SimulatedUpstream


def endpoint(sim: SimulatedUpstream, name: str, **extra: Any) -> dict[str, Any]:
    """A config entry for a fixture upstream."""
    return {"name": name, "base_url": sim.base_url, **extra}


def fleet_config(models: dict[str, list[dict[str, Any]]], **sections: Any) -> dict[str, Any]:
    """A config dict with active probes and discovery off (tests drive health explicitly) and fast retries."""
    data: dict[str, Any] = {
        "models": models,
        "routing": {"strategy": "rule"},
        "health": {"active": False, "discover": False, "failure_threshold": 3},
        "retry": {"max_attempts": 4, "backoff_base_ms": 1, "backoff_max_ms": 5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def make_features(
    tokens: int, task: TaskType, importance: Importance = Importance.NORMAL, *, explicit: bool = False
) -> Features:
    """Features of a one-message chat, for routing tests."""
    return Features(
        token_estimate=tokens,
        message_count=1,
        user_turns=1,
        code_fences=0,
        code_lines=0,
        has_tools=False,
        has_images=False,
        importance=importance,
        task_type=task,
        task_type_explicit=explicit,
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout` seconds. For state another
    thread or process finishes after the client already has its answer (a stream's
    bookkeeping runs after its last byte)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)

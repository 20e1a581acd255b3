"""Which endpoints of a reloaded config carry their state over (`fleet.carry`), and what
the health board, rotation and context book keep for them."""

from __future__ import annotations

from typing import Any

import pytest

from octoroute.config import Topology, build_topology, parse_config
from octoroute.core.facts import FactSource, ServerFacts, WindowSource
from octoroute.fleet.capabilities import CapabilityRegistry
from octoroute.fleet.carry import carried_endpoints
from octoroute.fleet.context import ContextBook
from octoroute.fleet.health import HealthBoard
from octoroute.fleet.rotation import Rotation


def topology(*endpoints: dict[str, Any], threshold: int = 3) -> Topology:
    data = {"models": {"fast": list(endpoints)}, "routing": {"strategy": "rule"}}
    return build_topology(parse_config(data, {}), {})


def ep(ep_id: str, url: str = "http://127.0.0.1:8001/v1", name: str = "m", **extra: Any) -> dict[str, Any]:
    return {"id": ep_id, "name": name, "base_url": url, **extra}


@pytest.mark.parametrize(
    ("old", "new", "pairs"),
    [
        pytest.param([ep("a")], [ep("a", weight=3, priority=5)], {"a": "a"}, id="same-id-other-weight"),
        pytest.param([ep("a")], [ep("b")], {"b": "a"}, id="renamed"),
        pytest.param([ep("a")], [ep("a", url="http://127.0.0.1:8001/v1/")], {"a": "a"}, id="trailing-slash"),
        pytest.param([ep("a")], [ep("a", url="http://127.0.0.1:8002/v1")], {}, id="other-server"),
        pytest.param([ep("a")], [ep("a", name="other-model")], {}, id="other-model"),
        pytest.param([ep("a")], [ep("a", kind="anthropic")], {}, id="other-api"),
        pytest.param([ep("a"), ep("b")], [ep("b"), ep("c")], {"b": "b", "c": "a"}, id="same-id-first-then-by-server"),
        pytest.param([ep("a")], [ep("x"), ep("y")], {"x": "a"}, id="one-old-endpoint-matches-once"),
    ],
)
def test_endpoints_match_by_server_and_model_not_by_id(
    old: list[dict[str, Any]], new: list[dict[str, Any]], pairs: dict[str, str]
) -> None:
    assert carried_endpoints(topology(*old).endpoints, topology(*new).endpoints) == pairs


def test_health_carries_over_and_takes_the_new_threshold() -> None:
    before = HealthBoard(topology(ep("a"), ep("gone", url="http://127.0.0.1:9/v1")), failure_threshold=3)
    before.record_failure("a", now=1.0, error="HTTP 503")
    before.record_failure("a", now=2.0, error="HTTP 503")
    after = HealthBoard(topology(ep("renamed"), ep("new", url="http://127.0.0.1:9999/v1")), failure_threshold=2)
    after.carry_over(before, {"renamed": "a"})
    carried = after.get("renamed")
    assert (carried.consecutive_failures, carried.last_error, carried.failure_threshold) == (2, "HTTP 503", 2)
    assert after.get("new").last_check_at is None
    before.record_failure("a", now=3.0, error="HTTP 503")  # a request still running on the old config
    assert not after.is_healthy("renamed")


def test_cooldowns_carry_over_and_refusals_only_with_the_same_key() -> None:
    before = Rotation()
    before.cool_down("a", now=10.0, seconds=30.0)
    before.refuse("b", now=10.0, why="HTTP 401")
    before.refuse("c", now=10.0, why="HTTP 401")
    after = Rotation()
    after.carry_over(before, {"a": "a", "b": "b", "c": "c"}, same_key={"a", "b"})
    assert after.cooldown_left("a", now=20.0) == 20.0
    assert after.refusal("b") == "HTTP 401"
    assert after.refused_since("c") is None  # its key changed: the new key gets its chance
    assert after.engaged


def test_discovered_windows_carry_over_but_a_configured_one_wins() -> None:
    registry = CapabilityRegistry.bundled({})
    old_topology = topology(ep("a"), ep("b", url="http://127.0.0.1:8002/v1"))
    before = ContextBook(old_topology.endpoints.values(), registry.known_window)
    before.learn("a", ServerFacts(FactSource.LLAMA_PROPS, context_window=8192, total_slots=2))
    before.learn("b", ServerFacts(FactSource.LLAMA_PROPS, context_window=4096, total_slots=1))
    new_topology = topology(ep("a"), ep("b", url="http://127.0.0.1:8002/v1", context_window=2048))
    after = ContextBook(new_topology.endpoints.values(), registry.known_window)
    version = after.version
    after.carry_over(before, {"a": "a", "b": "b"})
    assert after.window("a").tokens == 8192
    assert after.window("a").source is WindowSource.DISCOVERED
    assert after.window("b").tokens == 2048
    assert after.facts("b") is not None
    assert after.version > version

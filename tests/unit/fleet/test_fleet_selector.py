"""Endpoint selection: priority, weight, health and exclusion, with a seeded RNG."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection

import pytest
from tests.support import endpoint_spec as ep

from octoroute.config import Topology, build_topology, parse_config
from octoroute.fleet.selector import GroupSelector, build_selectors, order_candidates, pick_endpoint

N = 10_000
TOLERANCE = 0.02


def all_healthy(_: str) -> bool:
    return True


def healthy_except(*down: str) -> Callable[[str], bool]:
    return lambda ep_id: ep_id not in down


WEIGHTED = [ep("a", weight=1), ep("b", weight=2), ep("c", weight=7)]


def shares(picks: list[str]) -> dict[str, float]:
    counts = Counter(picks)
    return {k: v / len(picks) for k, v in counts.items()}


def assert_shares(picks: list[str], expected: dict[str, float]) -> None:
    got = shares(picks)
    assert set(got) <= set(expected), got
    for ep_id, share in expected.items():
        assert got.get(ep_id, 0.0) == pytest.approx(share, abs=TOLERANCE), (ep_id, got)


def test_pick_follows_weights() -> None:
    rng = random.Random(1)
    selector = GroupSelector(WEIGHTED)
    picks = []
    for _ in range(N):
        chosen = pick_endpoint(selector, healthy=all_healthy, excluded=(), rng=rng)
        assert chosen is not None
        picks.append(chosen.id)
    assert_shares(picks, {"a": 0.1, "b": 0.2, "c": 0.7})


def test_pick_renormalises_over_usable_endpoints() -> None:
    rng = random.Random(2)
    selector = GroupSelector(WEIGHTED)
    picks = []
    for i in range(N):
        # alternate exclusion and ill health of the heavy endpoint: both leave a:b = 1:2
        kwargs: dict[str, Collection[str]] = {"excluded": {"c"}} if i % 2 else {}
        healthy = all_healthy if i % 2 else healthy_except("c")
        chosen = selector.pick(healthy=healthy, rng=rng, **kwargs)
        assert chosen is not None
        picks.append(chosen.id)
    assert_shares(picks, {"a": 1 / 3, "b": 2 / 3})


def test_order_first_follows_weights_and_second_is_without_replacement() -> None:
    rng = random.Random(3)
    firsts, seconds = [], []
    for _ in range(N):
        order = order_candidates(WEIGHTED, healthy=all_healthy, excluded=(), rng=rng)
        assert sorted(e.id for e in order) == ["a", "b", "c"]
        firsts.append(order[0].id)
        seconds.append(order[1].id)
    assert_shares(firsts, {"a": 0.1, "b": 0.2, "c": 0.7})
    # P(second = a) = P(b first) * 1/8 + P(c first) * 1/3
    p_a = 0.2 * 1 / 8 + 0.7 * 1 / 3
    p_b = 0.1 * 2 / 9 + 0.7 * 2 / 3
    assert_shares(seconds, {"a": p_a, "b": p_b, "c": 1 - p_a - p_b})


PRIORITISED = [
    ep("low", priority=0, weight=100),
    ep("high-1", priority=5),
    ep("mid", priority=3, weight=50),
    ep("high-2", priority=5, weight=3),
]


@pytest.mark.parametrize(
    ("down", "excluded", "allowed_first"),
    [
        pytest.param((), (), {"high-1", "high-2"}, id="highest-level-despite-lower-weights"),
        pytest.param(("high-1",), (), {"high-2"}, id="one-high-down"),
        pytest.param(("high-1",), ("high-2",), {"mid"}, id="high-level-exhausted-falls-to-next"),
        pytest.param(("mid", "high-2"), ("high-1",), {"low"}, id="only-lowest-left"),
    ],
)
def test_priority_strictly_respected(down: tuple[str, ...], excluded: tuple[str, ...], allowed_first: set[str]) -> None:
    rng = random.Random(4)
    selector = GroupSelector(PRIORITISED)
    healthy = healthy_except(*down)
    for _ in range(2_000):
        chosen = selector.pick(healthy=healthy, excluded=excluded, rng=rng)
        assert chosen is not None
        assert chosen.id in allowed_first
        ordered = selector.order(healthy=healthy, excluded=excluded, rng=rng)
        assert ordered[0].id in allowed_first


def test_order_is_by_level_and_only_usable() -> None:
    rng = random.Random(5)
    for _ in range(500):
        order = order_candidates(PRIORITISED, healthy=healthy_except("mid"), excluded={"low"}, rng=rng)
        ids = [e.id for e in order]
        assert sorted(ids[:2]) == ["high-1", "high-2"]
        assert ids[2:] == []


def test_lower_levels_follow_in_descending_priority() -> None:
    order = order_candidates(PRIORITISED, healthy=all_healthy, excluded=(), rng=random.Random(6))
    assert [e.priority for e in order] == [5, 5, 3, 0]


@pytest.mark.parametrize(
    ("down", "excluded"),
    [
        pytest.param(("a", "b", "c"), (), id="all-unhealthy"),
        pytest.param((), ("a", "b", "c"), id="all-excluded"),
        pytest.param(("a",), ("b", "c"), id="mixed"),
    ],
)
def test_nothing_usable(down: tuple[str, ...], excluded: tuple[str, ...]) -> None:
    rng = random.Random(7)
    selector = GroupSelector(WEIGHTED)
    assert selector.pick(healthy=healthy_except(*down), excluded=excluded, rng=rng) is None
    assert order_candidates(WEIGHTED, healthy=healthy_except(*down), excluded=excluded, rng=rng) == []


def test_single_endpoint_group() -> None:
    only = ep("solo")
    selector = GroupSelector([only])
    rng = random.Random(8)
    assert selector.pick(healthy=all_healthy, rng=rng) is only
    assert selector.pick(healthy=all_healthy, excluded={"solo"}, rng=rng) is None
    assert selector.pick(healthy=healthy_except("solo"), rng=rng) is None


def test_same_seed_same_choices() -> None:
    selector = GroupSelector(WEIGHTED)

    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [e.id for e in (selector.pick(healthy=all_healthy, rng=rng) for _ in range(50)) if e]

    assert run(9) == run(9)
    assert run(9) != run(10)


def test_build_selectors_covers_every_group() -> None:
    config = parse_config(
        {
            "models": {
                "fast": [
                    {"name": "a", "base_url": "http://a:1/v1", "weight": 3},
                    {"name": "b", "base_url": "http://b:1/v1", "priority": 2},
                ],
                "balanced": [{"name": "d", "base_url": "http://d:1/v1"}],
            }
        },
        env={},
    )
    topology: Topology = build_topology(config, env={})
    selectors = build_selectors(topology)
    assert set(selectors) == {"fast", "balanced"}
    rng = random.Random(11)
    chosen = selectors["fast"].pick(healthy=all_healthy, rng=rng)
    assert chosen is not None
    assert chosen.id == "fast/b"  # priority 2 beats weight 3

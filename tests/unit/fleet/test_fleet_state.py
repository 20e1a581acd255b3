"""The pure side of shared state: `LocalState` on a fake clock, shared health verdicts,
`EndpointHealth.adopt`, and `SharedLimiter` over a `LocalState` (the same buckets as
`RateLimiter`, with the same verdicts)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from octoroute.core.state import Gcra, Take
from octoroute.fleet.health import EndpointHealth, SharedVerdicts, Transition
from octoroute.fleet.ratelimit import ClientLimits, LimitReason, RateLimiter, SharedLimiter
from octoroute.fleet.state import LocalState

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_buckets_refill_on_the_injected_clock() -> None:
    clock = Clock()
    store = LocalState(clock)
    bucket = Gcra(interval=2.0, capacity=2)
    take = (Take("k", bucket, 1),)
    assert [run(store.admit(take)).allowed for _ in range(3)] == [True, True, False]
    assert run(store.admit(take)).wait_seconds == pytest.approx(2.0)
    clock.now += 2.0
    assert run(store.admit(take)).allowed
    assert not run(store.admit(take)).allowed


def test_local_hashes_and_leases_expire_on_the_injected_clock() -> None:
    clock = Clock()
    store = LocalState(clock)
    run(store.incr_many("h", {"a": 2}, ttl_seconds=10))
    assert run(store.lease("l", 5))
    clock.now += 5
    assert run(store.read_many("h", ["a"])) == [2.0]
    assert run(store.lease("l", 5))  # the first lease ended
    clock.now += 5
    assert run(store.read_many("h", ["a"])) == [None]


def test_local_state_memory_is_bounded() -> None:
    clock = Clock()
    store = LocalState(clock, max_entries=100, sweep_seconds=3600)
    slow = Gcra(interval=3600.0, capacity=1)
    for i in range(1000):
        run(store.admit((Take(f"client:{i}", slow, 1),)))
        run(store.incr_many(f"usage:{i}", {"n": 1}))
    assert len(store._buckets) <= 100
    assert len(store._hashes) <= 100
    assert not run(store.admit((Take("client:999", slow, 1),))).allowed  # the newest are kept


def test_adopting_a_verdict_changes_state_once() -> None:
    health = EndpointHealth(failure_threshold=3)
    assert health.adopt(False, 5.0, "marked down elsewhere") is Transition.BECAME_UNHEALTHY
    assert (health.healthy, health.consecutive_failures, health.last_check_at) == (False, 3, 5.0)
    assert health.last_error == "marked down elsewhere"
    assert health.adopt(False, 6.0, "again") is None
    assert health.record_success(7.0, 1.0) is Transition.BECAME_HEALTHY  # one success revives it, as ever
    assert health.adopt(True, 8.0, "") is None


def test_shared_verdicts_adopt_only_newer_versions_and_never_their_own() -> None:
    verdicts = SharedVerdicts(["a", "b"])
    own = verdicts.publishing("a", False, 0.004)  # reached at the 4th millisecond: version 4
    assert own == 8.0
    assert verdicts.publishing("a", True, 0.001) == 11.0  # a later verdict of ours: version 5, never older
    assert verdicts.news(["a", "b"], [own, None]) == []  # our own verdicts are not news
    assert verdicts.news(["a", "b"], [13.0, 6.0]) == [("a", True), ("b", False)]  # v6 up, v3 down
    assert verdicts.news(["a", "b"], [13.0, 6.0]) == []
    assert verdicts.news(["a", "b"], [10.0, 6.0]) == []  # older than seen: ignored


def test_shared_limiter_gives_the_verdicts_of_the_in_process_limiter() -> None:
    clock = Clock()
    limits = ClientLimits(requests_per_second=1.0, burst=2, tokens_per_minute=600)
    local = RateLimiter(limits, {}, clock, idle_seconds=60, max_clients=10)
    shared = SharedLimiter(RateLimiter(limits, {}, clock, idle_seconds=60, max_clients=10), LocalState(clock))
    script = [("c", 100), ("c", 100), ("c", 100), ("d", 700), ("d", 550), ("d", 100)]
    for key, tokens in script:
        expected = local.check_request(key, estimated_tokens=tokens)
        got = run(shared.check_request(key, estimated_tokens=tokens))
        assert (got.allowed, got.reason) == (expected.allowed, expected.reason), (key, tokens)
        assert got.retry_after_seconds == pytest.approx(expected.retry_after_seconds)
    assert run(shared.check_request("d", estimated_tokens=700)).reason is LimitReason.TOO_LARGE
    clock.now += 2  # 20 tokens back: d still holds 530 of its 600
    assert run(shared.check_request("d", estimated_tokens=100)).reason is LimitReason.TOKENS
    run(shared.record_tokens("d", 0, reserved_tokens=550))  # the 550-token request failed: refunded
    assert run(shared.check_request("d", estimated_tokens=100)).allowed


def test_shared_limiter_peeks_give_the_in_process_verdicts_and_take_nothing() -> None:
    clock = Clock()
    limits = ClientLimits(requests_per_second=1.0, burst=2, tokens_per_minute=600)
    local = RateLimiter(limits, {}, clock, idle_seconds=60, max_clients=10)
    shared = SharedLimiter(RateLimiter(limits, {}, clock, idle_seconds=60, max_clients=10), LocalState(clock))
    script = [("c", 100), ("c", 450), ("c", 100), ("c", 100), ("d", 700), ("d", 0)]
    for key, tokens in script:
        expected = local.peek_request(key, estimated_tokens=tokens)
        for _ in range(2):  # a peek takes nothing: the second gives the same verdict
            got = run(shared.peek_request(key, estimated_tokens=tokens))
            assert (got.allowed, got.reason) == (expected.allowed, expected.reason), (key, tokens)
            assert got.retry_after_seconds == pytest.approx(expected.retry_after_seconds)
        checked = local.check_request(key, estimated_tokens=tokens)
        assert run(shared.check_request(key, estimated_tokens=tokens)).allowed == checked.allowed == expected.allowed


def test_a_reload_keeps_what_was_seen_of_the_endpoints_it_keeps() -> None:
    old = SharedVerdicts(["a", "gone"])
    assert old.news(["a", "gone"], [21.0, 31.0]) == [("a", True), ("gone", True)]  # a at v10
    new = SharedVerdicts(["a2", "fresh"])
    new.carry_over(old, {"a2": "a"})  # endpoint "a" is "a2" in the reloaded config
    assert new.news(["a2", "fresh"], [21.0, 4.0]) == [("fresh", False)]  # a2 had seen v10 already
    assert new.publishing("a2", True, 0.0) == 2 * 11 + 1  # newer than what was seen, whatever the clock says

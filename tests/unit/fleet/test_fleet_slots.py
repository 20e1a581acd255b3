"""Slot accounting, least-busy selection and plans that wait for a slot; pure, seeded."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from tests.support import endpoint_spec as ep

from octoroute.config import EndpointSpec, GroupSpec
from octoroute.config.models import RetryConfig
from octoroute.core.errors import UpstreamConnectError
from octoroute.fleet.policy import AttemptPlan, Blocked
from octoroute.fleet.selector import GroupSelector
from octoroute.fleet.slots import HELD, MAX_PASSED, PREFERRED, Claim, Grant, SlotBoard


def board_of(*eps: EndpointSpec) -> SlotBoard:
    return SlotBoard({e.id: e.max_concurrency for e in eps}, {e.id: e.weight for e in eps})


def all_healthy(_: str) -> bool:
    return True


# -- the board ------------------------------------------------------------------


def test_room_and_load_follow_in_flight_counts() -> None:
    board = board_of(ep("a", slots=2), ep("b", weight=4))
    assert board.has_room("a")
    assert (board.load("a"), board.load("b")) == (0.0, 0.0)
    board.acquire("a")
    board.acquire("b")
    assert (board.load("a"), board.load("b")) == (0.5, 0.25)
    board.acquire("a")
    assert not board.has_room("a")
    assert board.has_room("b")  # unbounded
    assert board.release("a") is None
    assert board.has_room("a")
    assert board.in_flight("a") == 1


def test_release_without_acquire_is_loud() -> None:
    board = board_of(ep("a", slots=1))
    with pytest.raises(RuntimeError):
        board.release("a")


def test_a_freed_slot_goes_to_the_first_waiter_that_may_use_it() -> None:
    board = board_of(ep("a", slots=1), ep("b", slots=1))
    board.acquire("a")
    board.acquire("b")
    only_b = board.join("fast", frozenset({"b"}), max_waiting=10)
    either = board.join("fast", frozenset({"a", "b"}), max_waiting=10)
    later = board.join("fast", frozenset({"a", "b"}), max_waiting=10)
    assert board.waiting("fast") == 3
    assert board.release("a") == Grant(either, "a")  # only_b cannot use a; either is next in line
    assert board.in_flight("a") == 1  # handed over, still counted: nobody can take it in between
    assert board.release("b") == Grant(only_b, "b")
    assert board.waiting("fast") == 1
    assert board.leave(later) == "fast"
    assert board.release("a") is None
    assert board.in_flight("a") == 0
    assert board.leave(later) is None


def test_the_line_is_bounded_per_group() -> None:
    board = board_of(ep("a", slots=1))
    assert board.join("fast", frozenset({"a"}), max_waiting=1) is not None
    assert board.join("fast", frozenset({"a"}), max_waiting=1) is None
    assert board.join("deep", frozenset({"a"}), max_waiting=1) is not None
    assert board.join("deep", frozenset({"a"}), max_waiting=0) is None


def test_more_slots_discovered_go_to_waiters_at_once() -> None:
    board = board_of(ep("a", slots=1))
    board.acquire("a")
    first = board.join("fast", frozenset({"a"}), max_waiting=10)
    second = board.join("fast", frozenset({"a"}), max_waiting=10)
    third = board.join("fast", frozenset({"a"}), max_waiting=10)
    assert board.set_capacity("a", 3) == [Grant(first, "a"), Grant(second, "a")]
    assert board.in_flight("a") == 3
    assert board.is_waiting(third)


def test_fewer_slots_than_in_flight_frees_nothing_until_under_the_limit() -> None:
    board = board_of(ep("a", slots=3))
    for _ in range(3):
        board.acquire("a")
    assert board.set_capacity("a", 1) == []
    waiter = board.join("fast", frozenset({"a"}), max_waiting=10)
    assert board.release("a") is None  # 3 → 2 in flight for 1 slot: still full
    assert board.release("a") is None  # 2 → 1: still full
    assert board.release("a") == Grant(waiter, "a")  # the one slot frees: it passes on


def test_claim_prefers_its_conversation_then_what_it_holds() -> None:
    board = board_of(ep("a", slots=1), ep("b", slots=1), ep("c", slots=2))
    board.acquire("a")
    board.acquire("c")
    claim = Claim(board, prefer="b")
    claim.held = "a"
    assert claim.has_room("a")  # full, but the slot is the claim's
    assert (claim.load("a"), claim.load("b"), claim.load("c")) == (HELD, PREFERRED, 0.5)
    assert Claim(board, least_busy=False).load("c") == 0.0


# -- least-busy selection ---------------------------------------------------------


def test_the_least_loaded_endpoint_wins_whatever_the_weights() -> None:
    eps = (ep("heavy", weight=1000), ep("light", weight=1))
    board = board_of(*eps)
    board.acquire("heavy")
    selector = GroupSelector(eps)
    rng = random.Random(1)
    picks = {selector.pick(healthy=all_healthy, rng=rng, load=board.load).id for _ in range(200)}
    assert picks == {"light"}


def test_equal_loads_keep_the_weighted_draw_and_its_random_sequence() -> None:
    eps = (ep("a", weight=1), ep("b", weight=2), ep("c", weight=7))
    board = board_of(*eps)
    selector = GroupSelector(eps)
    with_load = [selector.pick(healthy=all_healthy, rng=random.Random(i), load=board.load).id for i in range(500)]
    without = [selector.pick(healthy=all_healthy, rng=random.Random(i)).id for i in range(500)]
    assert with_load == without


def test_ties_among_the_least_loaded_are_drawn_by_weight() -> None:
    eps = (ep("busy", weight=100), ep("a", weight=1), ep("b", weight=3))
    board = board_of(*eps)
    board.acquire("busy")
    selector = GroupSelector(eps)
    rng = random.Random(7)
    counts = Counter(selector.pick(healthy=all_healthy, rng=rng, load=board.load).id for _ in range(8000))
    assert set(counts) == {"a", "b"}
    assert counts["b"] / 8000 == pytest.approx(0.75, abs=0.02)


def test_busy_fractions_compare_endpoints_of_different_sizes() -> None:
    eps = (ep("big", slots=4), ep("small", slots=1))
    board = board_of(*eps)
    board.acquire("big")  # 1/4 busy
    selector = GroupSelector(eps)
    assert selector.pick(healthy=all_healthy, rng=random.Random(0), load=board.load).id == "small"
    board.acquire("small")  # 1/1 busy
    assert selector.pick(healthy=all_healthy, rng=random.Random(0), load=board.load).id == "big"


def test_priority_still_comes_before_load() -> None:
    eps = (ep("primary", priority=2, slots=4), ep("spare", priority=1))
    board = board_of(*eps)
    for _ in range(3):
        board.acquire("primary")
    selector = GroupSelector(eps)
    assert selector.pick(healthy=all_healthy, rng=random.Random(0), load=board.load).id == "primary"


# -- plans with slots -------------------------------------------------------------


def plan_for(eps: tuple[EndpointSpec, ...], claim: Claim, *, fallback: tuple[EndpointSpec, ...] = ()) -> AttemptPlan:
    chain = [GroupSpec("fast", eps, "deep" if fallback else None)]
    selectors = {"fast": GroupSelector(eps)}
    if fallback:
        chain.append(GroupSpec("deep", fallback, None))
        selectors["deep"] = GroupSelector(fallback)
    return AttemptPlan(chain, selectors, all_healthy, RetryConfig(), random.Random(0), occupancy=claim)


def test_a_plan_whose_endpoints_are_all_full_is_blocked_not_moved_to_the_fallback() -> None:
    eps = (ep("a", slots=1), ep("b", slots=1))
    deep = (ep("d"),)
    board = board_of(*eps, *deep)
    board.acquire("a")
    board.acquire("b")
    claim = Claim(board)
    plan = plan_for(eps, claim, fallback=deep)
    assert plan.next_attempt() is None
    assert plan.blocked == Blocked("fast", frozenset({"a", "b"}))
    claim.held = "b"  # a slot of b was handed over
    attempt = plan.next_attempt()
    assert attempt is not None
    assert (attempt.endpoint.id, attempt.group) == ("b", "fast")
    assert plan.blocked is None


def test_full_endpoints_are_skipped_for_ones_with_room() -> None:
    eps = (ep("a", slots=1, weight=1000), ep("b", slots=1))
    board = board_of(*eps)
    board.acquire("a")
    attempt = plan_for(eps, Claim(board)).next_attempt()
    assert attempt is not None
    assert attempt.endpoint.id == "b"


def test_a_tried_endpoint_is_not_waited_for() -> None:
    eps = (ep("a", slots=1), ep("b", slots=1))
    board = board_of(*eps)
    claim = Claim(board)
    plan = plan_for(eps, claim)
    first = plan.next_attempt()
    assert first is not None
    board.acquire(first.endpoint.id)
    plan.record(refused(first.endpoint.id))
    other = "b" if first.endpoint.id == "a" else "a"
    board.acquire(other)  # someone else fills the other one
    assert plan.next_attempt() is None
    assert plan.blocked == Blocked("fast", frozenset({other}))


def test_the_conversations_endpoint_is_taken_while_it_has_room() -> None:
    eps = (ep("a", weight=1000), ep("b", weight=1))
    board = board_of(*eps)
    attempt = plan_for(eps, Claim(board, prefer="b")).next_attempt()
    assert attempt is not None
    assert attempt.endpoint.id == "b"


def refused(endpoint_id: str) -> UpstreamConnectError:
    return UpstreamConnectError(endpoint_id, "connection refused")


def test_a_freed_slot_goes_first_to_a_waiter_whose_conversation_lives_there() -> None:
    board = board_of(ep("a", slots=1), ep("b", slots=1))
    board.acquire("a")
    board.acquire("b")
    anyone = board.join("fast", frozenset({"a", "b"}), max_waiting=10)
    wants_b = board.join("fast", frozenset({"a", "b"}), max_waiting=10, prefer="b")
    wants_a = board.join("fast", frozenset({"a", "b"}), max_waiting=10, prefer="a")
    assert board.release("b") == Grant(wants_b, "b")  # ahead of `anyone`, who came first
    assert board.release("a") == Grant(wants_a, "a")
    assert board.release("a") == Grant(anyone, "a")


def test_a_waiter_is_passed_over_for_others_preferences_only_so_often() -> None:
    board = board_of(ep("a", slots=1), ep("b", slots=1))
    board.acquire("a")
    head = board.join("fast", frozenset({"a", "b"}), max_waiting=100)  # prefers nothing
    fans = [board.join("fast", frozenset({"a", "b"}), max_waiting=100, prefer="a") for _ in range(MAX_PASSED + 1)]
    for fan in fans[:MAX_PASSED]:
        assert board.release("a") == Grant(fan, "a")  # later, but its conversation lives on a
    assert board.release("a") == Grant(head, "a")  # passed over MAX_PASSED times: its turn now

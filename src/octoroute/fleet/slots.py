"""Slot accounting: how many requests each endpoint is serving, how many it can
serve at once, and who waits for a free slot. Pure state; the waiting itself
(futures, timeouts) is the service's (`octoroute.admission`).

An endpoint with `max_concurrency` has that many slots (a llama.cpp server
started with `-np 4` has 4); one without is unbounded. `load` is what
least-busy selection compares within a priority level: the busy fraction of
the slots (in flight / slots), or in flight / weight for an unbounded
endpoint, so equal loads (an idle fleet) leave the choice to the weights.

When every candidate endpoint of a request is full, the request joins the
waiting line of its group with the set of endpoints it may use (and the one
it prefers: its conversation's). A slot that frees goes straight to the first
waiter that prefers that endpoint, else to the first (FIFO) that may use it:
`release` returns that `Grant` and the slot stays counted, so no newcomer can
take it in between. Preferring keeps a busy fleet's conversations on the
servers that hold their prompts, instead of handing each turn to whichever
slot frees first; a waiter is passed over that way at most `MAX_PASSED`
times, then the next slot it may use is its own, so no one waits unboundedly
behind others' preferences.

    board = SlotBoard({"a": 2, "b": None}, {"a": 1.0, "b": 1.0})
    board.acquire("a"); board.acquire("a")
    token = board.join("fast", frozenset({"a"}), max_waiting=10)
    grant = board.release("a")          # Grant(token, "a"): the slot passes on
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

PREFERRED = -2.0  # the load a request's preferred endpoint (its conversation's) shows to selection
HELD = -1.0  # the load of an endpoint whose slot the request already holds (passed on from a release)
MAX_PASSED = 2  # times a waiter may see a slot it could use go to a later waiter that prefers it


@dataclass(frozen=True, slots=True)
class Grant:
    """A freed slot of `endpoint` handed to the waiter `token`."""

    token: int
    endpoint: str


@dataclass(frozen=True, slots=True)
class _Waiter:
    group: str
    allowed: frozenset[str]
    prefer: str | None


class SlotBoard:
    """In-flight counts, slot counts and the waiting lines of one worker."""

    __slots__ = ("_capacity", "_elsewhere", "_in_flight", "_passed", "_tokens", "_waiters", "_waiting", "_weight")

    def __init__(self, capacity: Mapping[str, int | None], weight: Mapping[str, float]) -> None:
        self._capacity: dict[str, int | None] = dict(capacity)
        self._weight = dict(weight)
        self._in_flight: dict[str, int] = dict.fromkeys(capacity, 0)
        self._elsewhere: dict[str, int] = {}  # other processes' in-flight counts (`fleet.inflight`)
        self._waiters: dict[int, _Waiter] = {}  # insertion order is arrival order
        self._passed: dict[int, int] = {}  # token → times a slot it could use went to a later waiter
        self._waiting: dict[str, int] = {}
        self._tokens = itertools.count(1)

    # -- reading -----------------------------------------------------------

    def in_flight(self, endpoint: str) -> int:
        return self._in_flight.get(endpoint, 0)

    def in_flight_elsewhere(self, endpoint: str) -> int:
        """Requests other workers and replicas had on `endpoint` when they last published."""
        return self._elsewhere.get(endpoint, 0)

    def counts(self) -> dict[str, int]:
        """This process's in-flight count per endpoint (what it publishes)."""
        return dict(self._in_flight)

    def set_elsewhere(self, counts: Mapping[str, int]) -> None:
        """The other processes' counts, as last read from the shared store."""
        self._elsewhere = {k: v for k, v in counts.items() if v > 0}

    def capacity(self, endpoint: str) -> int | None:
        """Slots of `endpoint`; None when unbounded."""
        return self._capacity.get(endpoint)

    def has_room(self, endpoint: str) -> bool:
        cap = self._capacity.get(endpoint)
        return cap is None or self._in_flight.get(endpoint, 0) < cap

    def load(self, endpoint: str) -> float:
        """Busy fraction of the slots, or in flight per unit of weight when unbounded; the
        requests other processes have on it count too (`has_room` counts this process's only:
        slots bound each process)."""
        n = self._in_flight.get(endpoint, 0) + self._elsewhere.get(endpoint, 0)
        cap = self._capacity.get(endpoint)
        if cap is not None:
            return n / cap
        return n / self._weight.get(endpoint, 1.0)

    def waiting(self, group: str) -> int:
        return self._waiting.get(group, 0)

    # -- slots -------------------------------------------------------------

    def acquire(self, endpoint: str) -> None:
        """Count one more request on `endpoint` (the caller checked `has_room`, or it is a
        call that is never queued, such as the router's judge)."""
        self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1

    def release(self, endpoint: str) -> Grant | None:
        """One request on `endpoint` is done. If a waiter may use the slot it passes to
        the first such waiter (returned; it stays counted), else it is freed."""
        if self._in_flight.get(endpoint, 0) <= 0:
            raise RuntimeError(f"release of {endpoint} without a matching acquire")
        cap = self._capacity.get(endpoint)
        if cap is None or self._in_flight[endpoint] <= cap:
            grant = self._grant(endpoint)
            if grant is not None:
                return grant
        self._in_flight[endpoint] -= 1
        return None

    def set_capacity(self, endpoint: str, capacity: int | None) -> list[Grant]:
        """New slot count (discovered from the server); slots it adds go to waiters."""
        self._capacity[endpoint] = capacity
        self._in_flight.setdefault(endpoint, 0)
        grants: list[Grant] = []
        while self.has_room(endpoint):
            grant = self._grant(endpoint)
            if grant is None:
                break
            self._in_flight[endpoint] += 1
            grants.append(grant)
        return grants

    def reweigh(self, weight: Mapping[str, float]) -> None:
        """New weights (a reloaded config); in-flight counts and waiters stay."""
        self._weight = dict(weight)

    def _grant(self, endpoint: str) -> Grant | None:
        """The waiter that gets a freed slot of `endpoint`: the first that prefers it, unless
        an earlier one that may use it has been passed over `MAX_PASSED` times; else the first."""
        skipped: list[int] = []
        chosen: int | None = None
        for token, waiter in self._waiters.items():
            if endpoint not in waiter.allowed:
                continue
            if waiter.prefer == endpoint or self._passed.get(token, 0) >= MAX_PASSED:
                chosen = token
                break
            skipped.append(token)
        if chosen is None:
            if not skipped:
                return None
            chosen = skipped.pop(0)
            skipped.clear()
        for token in skipped:
            self._passed[token] = self._passed.get(token, 0) + 1
        self._remove(chosen)
        return Grant(chosen, endpoint)

    # -- waiting -----------------------------------------------------------

    def join(self, group: str, allowed: frozenset[str], max_waiting: int, prefer: str | None = None) -> int | None:
        """Wait in `group`'s line for a slot of one of `allowed` (`prefer`'s first, if it
        frees); the token, or None when the line already holds `max_waiting` requests."""
        if self._waiting.get(group, 0) >= max_waiting:
            return None
        token = next(self._tokens)
        self._waiters[token] = _Waiter(group, allowed, prefer if prefer in allowed else None)
        self._waiting[group] = self._waiting.get(group, 0) + 1
        return token

    def leave(self, token: int) -> str | None:
        """A waiter gives up (timeout, client gone); its group, or None if it was not
        waiting any more (it has been granted a slot)."""
        if token not in self._waiters:
            return None
        return self._remove(token)

    def is_waiting(self, token: int) -> bool:
        return token in self._waiters

    def _remove(self, token: int) -> str:
        self._passed.pop(token, None)
        group = self._waiters.pop(token).group
        self._waiting[group] -= 1
        return group


class Claim:
    """What one request holds and prefers, as selection sees it (`Occupancy`).

    `held`: an endpoint whose slot the request already holds (a grant);
    `prefer`: its conversation's endpoint (affinity). Both count as having
    room (`prefer` only when it really has) and show the lowest loads, so
    least-busy selection takes them first within their priority level.
    `least_busy=False` leaves every other endpoint at load 0: weighted
    random among those with room, as octoroute 1.0 chose.
    """

    __slots__ = ("board", "held", "least_busy", "prefer")

    def __init__(self, board: SlotBoard, *, least_busy: bool = True, prefer: str | None = None) -> None:
        self.board = board
        self.least_busy = least_busy
        self.prefer = prefer
        self.held: str | None = None

    def has_room(self, endpoint: str) -> bool:
        return endpoint == self.held or self.board.has_room(endpoint)

    def load(self, endpoint: str) -> float:
        if endpoint == self.prefer:
            return PREFERRED
        if endpoint == self.held:
            return HELD
        return self.board.load(endpoint) if self.least_busy else 0.0

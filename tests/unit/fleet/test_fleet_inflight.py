"""`fleet.inflight.InflightShare` and the other processes' counts in `SlotBoard.load`:
the per-interval totals minus this process's own contribution, driven through the
in-process store with a fake clock (no sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from octoroute.fleet.inflight import InflightShare
from octoroute.fleet.slots import Claim, SlotBoard
from octoroute.fleet.state import LocalState

IDS = ["x", "y"]


class Process:
    """One gateway process's slot board and share, publishing into a store shared with others."""

    def __init__(self, store: LocalState, interval: float = 0.5) -> None:
        self.store = store
        self.board = SlotBoard({"x": 4, "y": 4}, {"x": 1.0, "y": 1.0})
        self.share = InflightShare(interval)

    async def sync(self, wall: float) -> None:
        """What `Gateway.sync_inflight` does at wall-clock time `wall`."""
        n = self.share.interval_of(wall)
        if not self.share.already_published(n):
            counts = {k: v for k, v in self.board.counts().items() if v > 0}
            if counts:
                await self.store.incr_many(self.share.key(n), counts, ttl_seconds=self.share.ttl_seconds)
            self.share.published(n, counts)
        totals = await self.store.read_many(self.share.key(n - 1), IDS)
        self.board.set_elsewhere(self.share.others(n - 1, IDS, totals))


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_another_process_s_requests_count_in_load_one_interval_later_and_stop_when_it_stops() -> None:
    now = [0.0]
    store = LocalState(lambda: now[0])
    a, b = Process(store), Process(store)
    for _ in range(3):
        a.board.acquire("x")

    async def scenario() -> None:
        await a.sync(100.05)
        await b.sync(100.05)
        assert b.board.in_flight_elsewhere("x") == 0  # interval 199 had nothing yet
        now[0] = 0.5
        await a.sync(100.55)
        await b.sync(100.55)
        assert b.board.in_flight_elsewhere("x") == 3
        assert a.board.in_flight_elsewhere("x") == 0  # its own requests are not "elsewhere"
        assert b.board.load("x") == pytest.approx(3 / 4)
        assert b.board.load("y") == 0.0
        assert b.board.has_room("x")  # slots stay per process
        assert Claim(b.board).load("x") > Claim(b.board).load("y")
        assert Claim(b.board, least_busy=False).load("x") == 0.0
        # a stops publishing (crashed) after 100.55: that publication counts one interval
        # more, then the totals lack it: gone within two intervals
        now[0] = 1.0
        await b.sync(101.05)
        assert b.board.in_flight_elsewhere("x") == 3
        now[0] = 1.5
        await b.sync(101.55)
        assert b.board.in_flight_elsewhere("x") == 0

    run(scenario())


def test_counts_of_two_others_add_up_and_a_second_sync_in_one_interval_does_not_count_twice() -> None:
    now = [0.0]
    store = LocalState(lambda: now[0])
    a, b, c = Process(store), Process(store), Process(store)
    a.board.acquire("x")
    b.board.acquire("x")
    b.board.acquire("y")
    c.board.acquire("x")

    async def scenario() -> None:
        for wall in (10.05, 10.3, 10.55, 10.6):
            for p in (a, b, c):
                await p.sync(wall)
        assert c.board.in_flight_elsewhere("x") == 2
        assert c.board.in_flight_elsewhere("y") == 1
        assert a.board.in_flight_elsewhere("x") == 2
        assert b.board.in_flight_elsewhere("y") == 0

    run(scenario())


def test_an_interval_s_hash_expires() -> None:
    now = [0.0]
    store = LocalState(lambda: now[0])
    a = Process(store)
    a.board.acquire("x")

    async def scenario() -> None:
        await a.sync(0.05)
        assert await store.read_many(a.share.key(0), ["x"]) == [1.0]
        now[0] = a.share.ttl_seconds
        assert await store.read_many(a.share.key(0), ["x"]) == [None]

    run(scenario())


@pytest.mark.parametrize(
    ("wall", "wait"),
    [(0.0, 0.05), (0.05, 0.5), (0.2, 0.35), (0.549, 0.001), (10.3, 0.25)],
)
def test_syncs_happen_a_tenth_into_each_interval(wall: float, wait: float) -> None:
    assert InflightShare(0.5).seconds_to_next(wall) == pytest.approx(wait)


def test_a_reloaded_gateway_keeps_what_it_published() -> None:
    old, new = InflightShare(0.5), InflightShare(0.5)
    old.published(7, {"x": 2})
    new.carry_over(old)
    assert new.already_published(7)
    assert new.others(7, ["x"], [5.0]) == {"x": 3}
    assert new.others(7, ["x"], [None]) == {"x": 0}

"""The usage ledger with a shared store: one increment per request off the response path,
totals read back for every known triple, a brief cache between reads."""

from __future__ import annotations

import asyncio

from octoroute.fleet.state import LocalState
from octoroute.observe.metrics import Recorder
from octoroute.observe.usage import USAGE_HASH, UsageLedger, fields_of, totals_of, usage_amounts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_amounts_and_totals_round_trip():
    amounts = usage_amounts("alice", "fast", "fast/a", 12, 5, reported=True)
    triples = [("alice", "fast", "fast/a"), ("bob", "fast", "fast/a")]
    values = [amounts.get(field) for field in fields_of(triples)]
    totals = totals_of(triples, values)
    assert totals.requests == {("alice", "fast", "fast/a", "reported"): 1}
    assert totals.tokens == {("alice", "fast", "fast/a", "input"): 12, ("alice", "fast", "fast/a", "output"): 5}
    assert totals.token_totals() == {("alice", "fast", "fast/a"): (12, 5)}


def test_two_ledgers_on_one_store_read_the_same_totals():
    async def scenario() -> None:
        clock = Clock()
        store = LocalState(clock)
        first, second = UsageLedger(Recorder(), clock), UsageLedger(Recorder(), clock)
        first.share(store, ["alice", "bob"])
        second.share(store, ["alice", "bob"])
        first.record("alice", "fast", "fast/a", 10, 3)
        second.record("alice", "fast", "fast/a", 7, 1)
        second.record(None, "fast", "fast/a", None, None)  # anonymous, no usage reported
        await first.drain()
        await second.drain()
        for ledger in (first, second):
            totals = await ledger.refresh([("fast", "fast/a")])
            assert totals is not None
            assert totals.requests == {
                ("alice", "fast", "fast/a", "reported"): 2,
                ("anonymous", "fast", "fast/a", "missing"): 1,
            }
            assert totals.token_totals()[("alice", "fast", "fast/a")] == (17, 4)
        # cached briefly: a new count shows once the cache is older than its lifetime
        first.record("bob", "fast", "fast/a", 1, 1)
        await first.drain()
        cached = await second.refresh([("fast", "fast/a")])
        assert cached is not None
        assert ("bob", "fast", "fast/a", "reported") not in cached.requests
        clock.now += 5
        fresh = await second.refresh([("fast", "fast/a")])
        assert fresh is not None
        assert fresh.requests[("bob", "fast", "fast/a", "reported")] == 1
        assert (await store.read_many(USAGE_HASH, fields_of([("bob", "fast", "fast/a")])))[2:] == [1.0, 1.0]

    asyncio.run(scenario())


def test_without_a_store_nothing_is_shared():
    async def scenario() -> None:
        ledger = UsageLedger(Recorder())
        ledger.record("alice", "fast", "fast/a", 1, 1)
        assert await ledger.refresh([("fast", "fast/a")]) is None
        assert ledger.shared is None

    asyncio.run(scenario())

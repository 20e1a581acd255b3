"""One contract for every `core.state.StateStore`: the in-process `LocalState`, the
workers' `SharedMemoryState` and `RedisState` against a real redis-server.

Buckets use intervals of minutes, so the seconds a test takes never change an
answer (Redis buckets read Redis's own clock); TTLs are checked by polling with a
deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.redis_server import RedisServer

from octoroute.core.state import Gcra, StateStore, Take
from octoroute.fleet.state import LocalState
from octoroute.state.redis_store import RedisState
from octoroute.state.shm import SharedMemoryState

SLOW = Gcra(interval=600.0, capacity=3)  # 3 at once, then one per 10 minutes
BACKENDS = ("local", "shm", "redis")

Factory = Callable[[], StateStore]


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Factory of stores that share state with each other (two workers, two replicas);
    for "local", the same object (one process)."""
    made: list[StateStore] = []
    server: RedisServer | None = None
    if request.param == "local":
        local = LocalState(time.monotonic)

        def make() -> StateStore:
            return local

    elif request.param == "shm":

        def make() -> StateStore:
            store = SharedMemoryState(str(tmp_path / "state.shm"))
            made.append(store)
            return store

    else:
        server = RedisServer(tmp_path)
        server.start()
        url = server.url

        def make() -> StateStore:
            store = RedisState(url, prefix=f"test{id(made)}:", timeout_seconds=2.0)
            made.append(store)
            return store

    yield make
    for store in made:
        if isinstance(store, SharedMemoryState):  # Redis stores are closed on their test's loop
            asyncio.run(store.close())
    if server is not None:
        server.stop()


def test_a_burst_is_admitted_then_refused_with_the_wait_until_one_fits(stores: Factory) -> None:
    async def body() -> None:
        store = stores()
        takes = (Take("client:a", SLOW, 1.0),)
        answers = [await store.admit(takes) for _ in range(5)]
        assert [a.allowed for a in answers] == [True, True, True, False, False]
        refused = answers[3]
        assert refused.short == 0
        assert 590 < refused.wait_seconds <= 600
        assert (await store.admit((Take("client:b", SLOW, 1.0),))).allowed  # buckets are per key
        await _close(store)

    asyncio.run(body())


def test_admission_is_all_or_nothing_and_names_the_short_bucket(stores: Factory) -> None:
    async def body() -> None:
        store = stores()
        tokens = Gcra(interval=600.0, capacity=100)  # 100 tokens, one more every 10 minutes
        assert (await store.admit((Take("r", SLOW, 1), Take("t", tokens, 90)))).allowed
        refused = await store.admit((Take("r", SLOW, 1), Take("t", tokens, 20)))
        assert not refused.allowed
        assert refused.short == 1
        # the refused call took nothing: the request bucket still has two, the token bucket 10
        assert (await store.admit((Take("r", SLOW, 1), Take("t", tokens, 10)))).allowed
        assert (await store.admit((Take("r", SLOW, 1), Take("t", tokens, 1)))).short == 1
        assert (await store.admit((Take("r", SLOW, 1), Take("t", tokens, 0)))).allowed
        assert (await store.admit((Take("r", SLOW, 1), Take("t", tokens, 0)))).short == 0
        await _close(store)

    asyncio.run(body())


def test_wait_answers_as_admit_would_and_takes_nothing(stores: Factory) -> None:
    async def body() -> None:
        store, other = stores(), stores()  # another worker or replica sees the same answer
        tokens = Gcra(interval=600.0, capacity=100)
        fits = (Take("w", SLOW, 1), Take("wt", tokens, 60))
        for _ in range(3):
            assert (await store.wait(fits)).allowed
        assert (await store.admit(fits)).allowed  # the waits took nothing: 40 tokens are left
        short = await other.wait((Take("w", SLOW, 1), Take("wt", tokens, 50)))
        assert (short.allowed, short.short) == (False, 1)
        refused = await store.admit((Take("w", SLOW, 1), Take("wt", tokens, 50)))
        assert (refused.allowed, refused.short) == (False, 1)
        assert abs(short.wait_seconds - refused.wait_seconds) < 5  # seconds of test time, at most
        await store.admit((Take("w", SLOW, 2),))  # the request bucket is empty now
        for _ in range(2):
            empty = await other.wait((Take("w", SLOW, 1), Take("wt", tokens, 0)))
            assert (empty.allowed, empty.short) == (False, 0)
            assert 590 < empty.wait_seconds <= 600  # a wait that took a unit would say 1200
        await _close(store)
        if other is not store:
            await _close(other)

    asyncio.run(body())


def test_charge_puts_a_bucket_in_debt_and_refunds_up_to_full(stores: Factory) -> None:
    async def body() -> None:
        store = stores()
        await store.charge("d", SLOW, 5)  # 2 units of debt past empty
        refused = await store.admit((Take("d", SLOW, 1),))
        assert not refused.allowed
        assert 1790 < refused.wait_seconds <= 1800
        await store.charge("d", SLOW, -100)  # refunds stop at full
        assert [(await store.admit((Take("d", SLOW, 1),))).allowed for _ in range(4)] == [True, True, True, False]
        await _close(store)

    asyncio.run(body())


def test_concurrent_admissions_from_two_stores_never_over_admit(stores: Factory) -> None:
    async def body() -> None:
        first, second = stores(), stores()
        burst = Gcra(interval=600.0, capacity=10)
        answers = await asyncio.gather(
            *(store.admit((Take("shared", burst, 1),)) for _ in range(25) for store in (first, second))
        )
        assert sum(a.allowed for a in answers) == 10
        await _close(first, second)

    asyncio.run(body())


def test_counters_add_up_across_stores_and_read_back(stores: Factory) -> None:
    async def body() -> None:
        first, second = stores(), stores()
        assert await first.incr_many("usage:alice", {"tokens_in": 120, "cost": 0.25}) == {
            "tokens_in": 120.0,
            "cost": 0.25,
        }
        await asyncio.gather(*(second.incr_many("usage:alice", {"tokens_in": 1, "tokens_out": 2}) for _ in range(50)))
        assert await first.read_many("usage:alice", ["tokens_in", "tokens_out", "cost", "missing"]) == [
            170.0,
            100.0,
            0.25,
            None,
        ]
        assert await first.read_many("usage:nobody", ["tokens_in"]) == [None]
        await second.put_many("health", {"a": 7.0, "b": 2.0})
        await first.put_many("health", {"a": 9.0})
        assert await second.read_many("health", ["a", "b"]) == [9.0, 2.0]
        await _close(first, second)

    asyncio.run(body())


def test_counters_and_leases_expire_after_their_ttl(stores: Factory) -> None:
    async def body() -> None:
        first, second = stores(), stores()
        await first.incr_many("day", {"tokens": 5}, ttl_seconds=0.2)
        assert await second.read_many("day", ["tokens"]) == [5.0]
        assert await first.lease("probe:a", 0.2)
        assert not await second.lease("probe:a", 0.2)  # one holder
        assert not await first.lease("probe:a", 0.2)  # the holder too, until it ends
        assert await second.lease("probe:b", 0.2)  # leases are per key
        deadline = time.monotonic() + 10
        while await second.read_many("day", ["tokens"]) != [None] or not await second.lease("probe:a", 60):
            assert time.monotonic() < deadline, "TTL never ended"
            await asyncio.sleep(0.01)
        assert await first.incr_many("day", {"tokens": 1}) == {"tokens": 1.0}  # starts from 0 again
        await _close(first, second)

    asyncio.run(body())


async def _close(*stores: StateStore) -> None:
    for store in stores:
        if isinstance(store, RedisState):
            await store.close()

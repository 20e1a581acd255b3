"""One contract for the Responses API's store in every backend: memory (one process),
a directory (the workers of one `serve --workers N`) and a real redis-server (workers
and replicas), each built the way `server.app.build_responses` builds it.

Two stores made by one factory share what they keep (two workers, two replicas);
for memory the factory gives the same store (one process). TTLs are checked by
polling with a deadline; everything else uses TTLs of an hour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from tests.redis_server import RedisServer

from octoroute.core.state import StateStore
from octoroute.fleet.state import LocalState
from octoroute.server.responses_store import Responses, ResponseStore, StoredResponse
from octoroute.state.documents import DirectoryDocuments
from octoroute.state.guard import GuardedState
from octoroute.state.redis_store import RedisState

BACKENDS = ("memory", "directory", "redis")
HOUR = 3600.0

Factory = Callable[[int, float], Responses]


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Factory, list[StateStore]]]:
    """(factory of stores that share what they keep, the state stores to close on the test's loop)."""
    opened: list[StateStore] = []
    server: RedisServer | None = None
    memory: dict[tuple[int, float], Responses] = {}
    if request.param == "memory":

        def make(max_entries: int, ttl: float) -> Responses:
            key = (max_entries, ttl)
            if key not in memory:
                memory[key] = Responses(ResponseStore(max_entries, ttl, time.monotonic))
            return memory[key]

    elif request.param == "directory":

        def make(max_entries: int, ttl: float) -> Responses:
            shared = DirectoryDocuments(str(tmp_path / "responses"))
            return Responses(ResponseStore(max_entries, ttl, time.monotonic), shared)

    else:
        server = RedisServer(tmp_path)
        server.start()
        url = server.url

        def make(max_entries: int, ttl: float) -> Responses:
            guarded = GuardedState(
                RedisState(url, prefix="contract:", timeout_seconds=2.0),
                LocalState(time.monotonic),
                timeout_seconds=2.0,
                retry_seconds=1.0,
            )
            opened.append(guarded)
            return Responses(ResponseStore(max_entries, ttl, time.monotonic), guarded, keep_local=True)

    yield make, opened
    if server is not None:
        server.stop()


def run(stores: tuple[Factory, list[StateStore]], body: Callable[[Factory], Awaitable[None]]) -> None:
    make, opened = stores

    async def main() -> None:
        try:
            await body(make)
        finally:
            for store in opened:
                await store.close()

    asyncio.run(main())


def stored(response_id: str, text: str = "hello") -> StoredResponse:
    response = {"id": response_id, "object": "response", "output": [{"type": "message", "content": text}]}
    return StoredResponse(response, [{"role": "user", "content": f"about {response_id}"}])


async def ids_found(store: Responses, *ids: str) -> list[str]:
    return [i for i in ids if await store.get(i) is not None]


def test_a_response_stored_by_one_is_read_back_whole_by_the_other(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(10, HOUR), make(10, HOUR)
        await first.put(stored("resp_a", "é ✓ \u2028"))
        found = await second.get("resp_a")
        assert found is not None
        assert found.response == stored("resp_a", "é ✓ \u2028").response
        assert list(found.items) == [{"role": "user", "content": "about resp_a"}]
        assert await second.get("resp_unknown") is None
        assert await second.get("../../etc/passwd") is None  # any id a client sends is only an id

    run(stores, body)


def test_a_large_conversation_round_trips(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(10, HOUR), make(10, HOUR)
        items = [{"role": "user", "content": f"{i:06d} " + "x" * 1000} for i in range(2000)]  # about 2 MB
        await first.put(StoredResponse({"id": "resp_big", "object": "response"}, items))
        found = await second.get("resp_big")
        assert found is not None
        assert list(found.items) == items

    run(stores, body)


def test_the_least_recently_used_goes_first_past_max_entries(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(2, HOUR), make(2, HOUR)
        await first.put(stored("resp_a"))
        await second.put(stored("resp_b"))
        assert await second.get("resp_a") is not None  # read: now the most recent
        await first.put(stored("resp_c"))
        assert await ids_found(second, "resp_a", "resp_b", "resp_c") == ["resp_a", "resp_c"]
        assert await ids_found(first, "resp_a", "resp_b", "resp_c") == ["resp_a", "resp_c"]

    run(stores, body)


def test_a_response_is_gone_after_its_ttl_even_when_read(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(10, 0.3), make(10, 0.3)
        await first.put(stored("resp_short"))
        deadline = time.monotonic() + 10
        while await second.get("resp_short") is not None:  # read again and again: still expires
            assert time.monotonic() < deadline, "the TTL never ended"
            await asyncio.sleep(0.01)
        assert await first.get("resp_short") is None
        assert await first.delete("resp_short") is False

    run(stores, body)


def test_delete_is_seen_by_the_other_and_says_whether_there_was_one(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(10, HOUR), make(10, HOUR)
        await first.put(stored("resp_a"))
        await first.put(stored("resp_b"))
        assert await second.delete("resp_a") is True
        assert await first.get("resp_a") is None
        assert await first.delete("resp_a") is False
        assert await second.delete("resp_never") is False
        assert await ids_found(first, "resp_b") == ["resp_b"]

    run(stores, body)


def test_zero_entries_stores_nothing(stores) -> None:
    async def body(make: Factory) -> None:
        first, second = make(0, HOUR), make(0, HOUR)
        await first.put(stored("resp_a"))
        assert await first.get("resp_a") is None
        assert await second.get("resp_a") is None

    run(stores, body)


def test_the_directory_prunes_in_batches_and_keeps_the_most_recent(tmp_path: Path) -> None:
    """Past `max_entries` the directory is pruned every `max_entries // 16` puts of a
    process: never more than that many extra files, and the newest always kept."""

    async def body() -> None:
        directory = tmp_path / "responses"
        workers = [Responses(ResponseStore(64, HOUR, time.monotonic), DirectoryDocuments(str(directory))) for _ in "ab"]
        for i in range(300):
            await workers[i % 2].put(stored(f"resp_{i:03d}"))
            assert len(list(directory.iterdir())) <= 64 + 2 * (64 // 16)  # each worker's batch at most
        newest = [f"resp_{i:03d}" for i in range(300 - 56, 300)]
        assert await ids_found(workers[0], *newest) == newest
        assert await workers[1].get("resp_000") is None

    asyncio.run(body())

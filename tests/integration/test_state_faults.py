"""`GuardedState` against real faults: a Redis that never answers (a loopback server
that reads and stays silent) and a real redis-server killed and started again.
Asserted by counts of calls and failures, never by how long anything took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.redis_server import RedisServer

from octoroute.core.state import Gcra, Take
from octoroute.fleet.state import LocalState
from octoroute.server.responses_store import Responses, ResponseStore, StoredResponse
from octoroute.state.guard import GuardedState
from octoroute.state.redis_store import RedisState

BURST = Gcra(interval=600.0, capacity=3)
TAKE = (Take("client:a", BURST, 1.0),)


class Events:
    def __init__(self) -> None:
        self.changes: list[bool] = []
        self.errors = 0

    def changed(self, up: bool, error: str) -> None:
        self.changes.append(up)

    def failed(self) -> None:
        self.errors += 1


def guarded(url: str, events: Events, timeout: float) -> GuardedState:
    return GuardedState(
        RedisState(url, prefix="f:", timeout_seconds=timeout),
        LocalState(time.monotonic),
        timeout_seconds=timeout,
        retry_seconds=0.05,
        on_change=events.changed,
        on_error=events.failed,
    )


async def until(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_silent_redis_costs_one_timeout_then_nothing_per_call() -> None:
    async def body() -> None:
        opened: list[asyncio.StreamReader] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            opened.append(reader)
            await reader.read()  # reads, never answers, until the client hangs up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        events = Events()
        store = guarded(f"redis://127.0.0.1:{port}/0", events, timeout=0.05)
        answers = [await store.admit(TAKE) for _ in range(50)]
        # the local fallback answered every call, with the same limits
        assert [a.allowed for a in answers] == [True] * 3 + [False] * 47
        assert events.errors == 1  # the circuit opened on the first timeout: no call waited after it
        assert events.changes == [False]
        assert not store.up
        assert store.name == "local"
        await store.close()
        server.close()
        await server.wait_closed()

    asyncio.run(body())


def test_a_killed_redis_is_used_again_once_it_is_back(redis_server: RedisServer) -> None:
    async def body() -> None:
        events = Events()
        store = guarded(redis_server.url, events, timeout=2.0)
        await store.start(2.0)
        assert (await store.incr_many("usage", {"n": 1})) == {"n": 1.0}
        redis_server.kill()
        assert (await store.incr_many("usage", {"n": 1})) == {"n": 1.0}  # from the local fallback
        assert (await store.incr_many("usage", {"n": 1})) == {"n": 2.0}
        assert events.changes == [False]
        assert events.errors == 1
        redis_server.start()  # an empty Redis: nothing persisted
        await until(lambda: store.up, "the circuit to close")
        assert events.changes == [False, True]
        assert (await store.incr_many("usage", {"n": 5})) == {"n": 5.0}  # Redis again, scripts reloaded
        assert store.name == "redis"
        await store.close()

    asyncio.run(body())


def test_stored_responses_survive_a_killed_redis_in_the_process_that_stored_them(redis_server: RedisServer) -> None:
    def stored(response_id: str) -> StoredResponse:
        return StoredResponse({"id": response_id, "object": "response"}, [{"role": "user", "content": "hi"}])

    async def body() -> None:
        events = Events()
        guards = [guarded(redis_server.url, events, timeout=2.0) for _ in range(2)]
        a, b = (Responses(ResponseStore(10, 3600, time.monotonic), g, keep_local=True) for g in guards)
        for guard in guards:
            await guard.start(2.0)
        await a.put(stored("resp_1"))
        assert await b.get("resp_1") is not None  # through Redis
        redis_server.kill()
        assert await a.get("resp_1") is not None  # this process's own copy; no exception
        assert await b.get("resp_1") is None  # the other process's: unknown, as for an expired id
        await a.put(stored("resp_2"))
        assert await a.get("resp_2") is not None
        assert events.changes == [False, False]  # each process's circuit opened once
        redis_server.start()  # an empty Redis: nothing persisted
        await until(lambda: all(g.up for g in guards), "the circuits to close")
        assert await a.get("resp_2") is not None  # stored during the outage: still found where it was made
        assert await b.get("resp_2") is None
        assert await a.get("resp_1") is None  # Redis answers again, and it lost everything
        assert await a.delete("resp_2") is True
        assert await a.get("resp_2") is None
        for guard in guards:
            await guard.close()

    asyncio.run(body())

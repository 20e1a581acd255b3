"""Waiting for a free slot: the asyncio side of `fleet.slots.SlotBoard`.

`Admission` owns one worker's board, the future each waiting request sleeps
on, and the metrics of both. A request waits only when every endpoint it may
use is full (`fleet.policy.Blocked`); a slot that frees is handed to the
first waiter that prefers that endpoint (its conversation's), else the first
that may use it, whose future is resolved at that moment, so
the wait ends without polling and no newcomer takes the slot in between. A
waiter that gives up (its wait ran out, its client went away) leaves the
line; if a slot had just been handed to it, the slot passes on.

Imports: fleet, observe, config, core (a layer of its own between the
service and those).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from octoroute.config.models import QueueConfig
from octoroute.core.errors import NoFreeSlot
from octoroute.fleet.slots import Grant, SlotBoard
from octoroute.observe.metrics import QueueOutcome, Recorder


class Admission:
    """Slots and their waiting lines for one worker (one event loop)."""

    def __init__(self, board: SlotBoard, queue: QueueConfig, metrics: Recorder) -> None:
        self.board = board
        self.queue = queue
        self.metrics = metrics
        self._futures: dict[int, tuple[str, asyncio.Future[str]]] = {}  # token → (group, future)

    def acquire(self, endpoint: str) -> None:
        self.board.acquire(endpoint)
        self.metrics.in_flight(endpoint, self.board.in_flight(endpoint))

    def release(self, endpoint: str) -> None:
        """One request on `endpoint` is done: its slot frees or passes to a waiter."""
        grant = self.board.release(endpoint)
        self.metrics.in_flight(endpoint, self.board.in_flight(endpoint))
        if grant is not None:
            self._hand_over([grant])

    def set_capacity(self, endpoint: str, capacity: int | None) -> None:
        """A slot count learnt from the server; new slots go to waiters at once."""
        if capacity == self.board.capacity(endpoint):
            return
        grants = self.board.set_capacity(endpoint, capacity)
        self.metrics.slots(endpoint, capacity)
        self.metrics.in_flight(endpoint, self.board.in_flight(endpoint))
        self._hand_over(grants)

    def _hand_over(self, grants: Iterable[Grant]) -> None:
        for grant in grants:
            group, future = self._futures.pop(grant.token)
            future.set_result(grant.endpoint)
            self.metrics.waiting(group, self.board.waiting(group))

    async def wait(self, group: str, allowed: frozenset[str], prefer: str | None = None) -> str:
        """Wait in `group`'s line for a slot of one of `allowed` (a freed slot of `prefer`
        goes to this request before earlier ones that do not prefer it); the endpoint
        whose slot the caller now holds (it must `release` it). Raises `NoFreeSlot`
        when the line is full or the wait runs past `max_wait_seconds`."""
        queue = self.queue
        token = self.board.join(group, allowed, queue.max_waiting, prefer)
        if token is None:
            self.metrics.queue_left(group, QueueOutcome.FULL, 0.0)
            raise NoFreeSlot(group, timed_out=False, waited_seconds=0.0, retry_after_seconds=queue.retry_after_seconds)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._futures[token] = (group, future)
        self.metrics.waiting(group, self.board.waiting(group))
        began = time.perf_counter()
        outcome = QueueOutcome.GONE
        try:
            async with asyncio.timeout(queue.max_wait_seconds):
                endpoint = await asyncio.shield(future)
            outcome = QueueOutcome.SERVED
            return endpoint
        except TimeoutError:
            outcome = QueueOutcome.TIMEOUT
            raise NoFreeSlot(
                group,
                timed_out=True,
                waited_seconds=queue.max_wait_seconds,
                retry_after_seconds=queue.retry_after_seconds,
            ) from None
        finally:
            if outcome is not QueueOutcome.SERVED:
                self._give_up(token, future, group)
            self.metrics.queue_left(group, outcome, time.perf_counter() - began)

    def _give_up(self, token: int, future: asyncio.Future[str], group: str) -> None:
        """A waiter stops waiting: out of the line, or, if a slot was handed to it in
        the meantime, that slot passes on."""
        if self.board.leave(token) is not None:
            self._futures.pop(token, None)
            self.metrics.waiting(group, self.board.waiting(group))
        elif future.done() and not future.cancelled():
            self.release(future.result())

"""Waiting for a free slot: the asyncio side of `fleet.slots.SlotBoard`.

`Admission` owns one worker's board, the future each waiting request sleeps
on, and the metrics of both. A request waits only when every endpoint it may
use is full (`fleet.policy.Blocked`); a slot that frees is handed to the
first waiter that prefers that endpoint (its conversation's), else the first
that may use it, whose future is resolved at that moment, so
the wait ends without polling and no newcomer takes the slot in between. A
waiter that gives up (its wait ran out, its client went away) leaves the
line; if a slot had just been handed to it, the slot passes on.

`Seat` is one request's side of it, which the attempt loop drives: the
`Claim` its plan selects with, the slot its current attempt holds, and its
conversation (affinity):

    seat = admission.seat(decision.group, call.body, call.anthropic_body, call.session)
    plan = AttemptPlan(..., occupancy=seat.claim)
    try:
        while True:
            attempt = plan.next_attempt()
            if attempt is None:
                if plan.blocked is None: break
                await seat.wait(plan.blocked)          # or NoFreeSlot (503)
                continue
            seat.take(attempt.endpoint.id)
            ...                                        # failed: seat.release(); continue
            release = seat.keep() if streaming else seat.release()
            affinity = seat.served(attempt.endpoint.id, attempt.group)
    finally:
        seat.close()

Imports: fleet, observe, config, core (a layer of its own between the
service and those).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from octoroute.config.models import QueueConfig
from octoroute.core.errors import NoFreeSlot
from octoroute.fleet.affinity import AffinityResult, AffinityTable, Conversation, classify, conversation_of
from octoroute.fleet.policy import Blocked
from octoroute.fleet.slots import Claim, Grant, SlotBoard
from octoroute.observe.metrics import QueueOutcome, Recorder


def _nothing() -> None:
    return None


class Admission:
    """Slots and their waiting lines for one worker (one event loop)."""

    def __init__(
        self,
        board: SlotBoard,
        queue: QueueConfig,
        metrics: Recorder,
        *,
        affinity: AffinityTable | None = None,
        least_busy: bool = True,
    ) -> None:
        self.board = board
        self.queue = queue
        self.metrics = metrics
        self.affinity = affinity
        self.least_busy = least_busy
        self._futures: dict[int, tuple[str, asyncio.Future[str]]] = {}  # token → (group, future)

    def seat(
        self,
        group: str,
        body: Mapping[str, Any],
        anthropic_body: Mapping[str, Any] | None = None,
        session: str | None = None,
    ) -> Seat:
        """One request's slots and conversation (see the module docstring). A conversation
        is remembered per routed `group`: an agent session whose background requests go to
        a small model and whose turns go to a large one keeps an endpoint in each."""
        table = self.affinity
        conversation = target = None
        if table is not None:
            found = conversation_of(body, anthropic_body, session)
            conversation = Conversation(f"{group}\x00{found.key}", found.follow_up)
            if conversation.follow_up:
                target = table.get(conversation.key)
        return Seat(self, Claim(self.board, least_busy=self.least_busy, prefer=target), conversation)

    def reconfigure(
        self,
        capacity: Mapping[str, int | None],
        weight: Mapping[str, float],
        queue: QueueConfig,
        *,
        affinity: AffinityTable | None,
        least_busy: bool,
    ) -> None:
        """A reloaded config: new slot counts, weights, queue limits and affinity table.
        Requests in flight and waiting keep their places: in-flight counts are by endpoint
        id, so an endpoint present before and after a reload is never over-filled, and
        slots a larger count adds go to waiters at once."""
        self.board.reweigh(weight)
        self.queue = queue
        self.affinity = affinity
        self.least_busy = least_busy
        for endpoint, slots in capacity.items():
            self.set_capacity(endpoint, slots)

    def learn_slots(self, endpoint: str, configured: int | None, total_slots: int | None) -> None:
        """A server said how many requests it runs at once (llama.cpp `/props`
        `total_slots`): that is the endpoint's limit unless `configured` (its
        `max_concurrency`) is set. Slots it adds go to waiting requests at once."""
        if configured is None and total_slots is not None and total_slots > 0:
            self.set_capacity(endpoint, total_slots)

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


class Seat:
    """One request's slots: the `claim` its plan selects with, the slot its current
    attempt holds, and its conversation. Made by `Admission.seat`; `close()` it."""

    __slots__ = ("_admission", "_conversation", "_holding", "claim")

    def __init__(self, admission: Admission, claim: Claim, conversation: Conversation | None) -> None:
        self._admission = admission
        self.claim = claim
        self._conversation = conversation
        self._holding: str | None = None

    async def wait(self, blocked: Blocked) -> None:
        """Every candidate is full: wait for a slot (raises `NoFreeSlot`); the plan's next
        pick may then use it (`claim.held`)."""
        self._drop_grant()
        claim = self.claim
        claim.held = await self._admission.wait(blocked.group, blocked.endpoints, claim.prefer)

    def take(self, endpoint: str) -> None:
        """Hold a slot of `endpoint` for the attempt about to start: the one handed over
        while waiting if it is that endpoint's, else a new one (the handed one passes on)."""
        if self.claim.held == endpoint:
            self.claim.held = None
        else:
            self._drop_grant()
            self._admission.acquire(endpoint)
        self._holding = endpoint

    def release(self) -> Callable[[], None]:
        """The attempt is over (failed, or its whole answer is in): its slot frees now."""
        if self._holding is not None:
            endpoint, self._holding = self._holding, None
            self._admission.release(endpoint)
        return _nothing

    def keep(self) -> Callable[[], None]:
        """The attempt committed a stream: its slot stays taken until the returned
        function is called (by the relay, when the stream ends; once, however often)."""
        endpoint, self._holding = self._holding, None
        if endpoint is None:
            return _nothing
        admission = self._admission
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                admission.release(endpoint)

        return release

    def served(self, endpoint: str, group: str) -> AffinityResult | None:
        """`endpoint` (of `group`) served the request: remember it for the conversation;
        whether the request kept its endpoint (None with affinity off)."""
        table = self._admission.affinity
        if table is None or self._conversation is None:
            return None
        result = classify(self.claim.prefer, endpoint)
        table.remember(self._conversation.key, endpoint)
        self._admission.metrics.affinity(group, result.value)
        return result

    def close(self) -> None:
        """The request is done with slots: free whatever it still holds (an attempt cut
        short by cancellation, a slot handed over but not used)."""
        self.release()
        self._drop_grant()

    def _drop_grant(self) -> None:
        claim = self.claim
        if claim.held is not None:
            held, claim.held = claim.held, None
            self._admission.release(held)

"""The waiting line's asyncio side: hand-over on release, giving up, refusals."""

from __future__ import annotations

import asyncio

import pytest

from octoroute.admission import Admission
from octoroute.config.models import QueueConfig
from octoroute.core.errors import NoFreeSlot
from octoroute.fleet.slots import SlotBoard
from octoroute.observe.metrics import Recorder


def admission(slots: int = 1, **queue: object) -> Admission:
    return Admission(SlotBoard({"a": slots}, {"a": 1.0}), QueueConfig.model_validate(queue), Recorder())


def test_a_released_slot_wakes_the_first_waiter_with_it() -> None:
    async def run() -> list[str]:
        adm = admission()
        adm.acquire("a")
        order: list[str] = []

        async def wait(name: str) -> None:
            endpoint = await adm.wait("fast", frozenset({"a"}))
            order.append(f"{name}:{endpoint}")
            adm.release(endpoint)

        tasks = [asyncio.ensure_future(wait(n)) for n in ("first", "second")]
        await asyncio.sleep(0)
        assert adm.board.waiting("fast") == 2
        adm.release("a")
        await asyncio.gather(*tasks)
        assert adm.board.in_flight("a") == 0
        return order

    assert asyncio.run(run()) == ["first:a", "second:a"]


def test_a_full_line_is_refused_at_once_with_retry_after() -> None:
    async def run() -> NoFreeSlot:
        adm = admission(max_waiting=0, retry_after_seconds=9)
        adm.acquire("a")
        with pytest.raises(NoFreeSlot) as caught:
            await adm.wait("fast", frozenset({"a"}))
        return caught.value

    error = asyncio.run(run())
    assert (error.status, error.code, error.retry_after) == (503, "queue_full", 9)


def test_a_wait_that_runs_out_leaves_the_line() -> None:
    async def run() -> tuple[NoFreeSlot, int]:
        adm = admission(max_wait_seconds=0.01)
        adm.acquire("a")
        with pytest.raises(NoFreeSlot) as caught:
            await adm.wait("fast", frozenset({"a"}))
        return caught.value, adm.board.waiting("fast")

    error, waiting = asyncio.run(run())
    assert (error.code, waiting) == ("queue_timeout", 0)


def test_a_waiter_cancelled_after_its_slot_was_handed_over_passes_it_on() -> None:
    async def run() -> tuple[str, int]:
        adm = admission()
        adm.acquire("a")
        gone = asyncio.ensure_future(adm.wait("fast", frozenset({"a"})))
        stays = asyncio.ensure_future(adm.wait("fast", frozenset({"a"})))
        await asyncio.sleep(0)
        adm.release("a")  # handed to `gone`, which has not run yet
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        endpoint = await stays
        return endpoint, adm.board.in_flight("a")

    assert asyncio.run(run()) == ("a", 1)

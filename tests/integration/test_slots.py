"""Slots, least-busy selection and the waiting line, over real HTTP: the gateway
in front of llama.cpp-like fixture servers (`demo.slotted.SlottedUpstream`) whose
answers the tests hold and release."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import aiohttp
import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.conftest import LoopThread
from tests.support import eventually, fleet_config

from octoroute.demo.slotted import SlottedUpstream

HTTP = urllib3.PoolManager()
HELLO = [{"role": "user", "content": "hello there"}]


async def _call(fn: Callable[..., object], *args: object) -> None:
    fn(*args)


@pytest.fixture
def release(loop_thread: LoopThread) -> Callable[..., None]:
    """`release(up, n=1)`: let `up`'s n longest-held answers go; `release(up, None)`: all, and stop holding."""

    def run(up: SlottedUpstream, count: int | None = 1) -> None:
        loop_thread.run(_call(up.release_all) if count is None else _call(up.release, count))

    return run


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def ep(up: SlottedUpstream, **extra: object) -> dict[str, object]:
    return {"name": up.label, "id": up.label, "base_url": up.base_url, **extra}


def chat(url: str, messages: list[dict[str, str]] = HELLO, *, stream: bool = False, **headers: str):
    body = {"model": "fast", "messages": messages, "stream": stream}
    return HTTP.request(
        "POST",
        f"{url}/v1/chat/completions",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )


def metrics_json(url: str) -> dict:
    return orjson.loads(HTTP.request("GET", f"{url}/metrics.json").data)


def metric(url: str, line_start: str) -> float:
    text = HTTP.request("GET", f"{url}/metrics").data.decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics")


def test_least_busy_endpoint_is_chosen_over_a_heavier_weight(slotted, gateway, loop_thread, pool, release):
    heavy, light = slotted("heavy"), slotted("light")
    heavy.hold = light.hold = True
    gw = gateway(fleet_config({"fast": [ep(heavy, weight=1000), ep(light, weight=1)]}))
    first = pool.submit(chat, gw.url)
    loop_thread.run(heavy.wait_held(1))  # weight 1000:1 sends the first to heavy
    second = pool.submit(chat, gw.url)
    loop_thread.run(light.wait_held(1))  # heavy is busy: the idle one takes it, whatever the weights
    release(heavy, None)
    release(light, None)
    assert first.result(30).headers["X-Octoroute-Endpoint"] == "heavy"
    assert second.result(30).headers["X-Octoroute-Endpoint"] == "light"


def test_bounded_endpoints_compare_busy_fractions(slotted, gateway, loop_thread, pool, release):
    big, small = slotted("big", slots=4), slotted("small", slots=1)
    big.hold = small.hold = True
    gw = gateway(
        fleet_config({"fast": [ep(big, max_concurrency=4, weight=1), ep(small, max_concurrency=1, weight=1000)]})
    )
    replies = [pool.submit(chat, gw.url)]
    loop_thread.run(small.wait_held(1))  # both idle: the weights decide (1000:1)
    replies += [pool.submit(chat, gw.url) for _ in range(4)]
    loop_thread.run(big.wait_held(4))  # small is full (1/1): big takes the next four
    assert small.arrived == 1
    assert gw.gateway.slots.board.in_flight("big") == 4
    release(big, None)
    release(small, None)
    assert [r.result(30).status for r in replies] == [200] * 5
    assert (big.max_active, small.max_active) == (4, 1)


def test_full_endpoints_queue_and_a_freed_slot_serves_the_first_waiter(slotted, gateway, loop_thread, pool, release):
    up = slotted("only")
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}))
    first = pool.submit(chat, gw.url, [{"role": "user", "content": "first"}])
    loop_thread.run(up.wait_held(1))
    second = pool.submit(chat, gw.url, [{"role": "user", "content": "second"}])
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="the second waiting")
    third = pool.submit(chat, gw.url, [{"role": "user", "content": "third"}], stream=True)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 2, what="two requests waiting")
    assert up.arrived == 1  # the server was not overloaded: the others wait in the gateway
    assert metric(gw.url, 'octoroute_queue_waiting{group="fast"}') == 2
    assert metric(gw.url, 'octoroute_endpoint_in_flight{endpoint="only"}') == 1
    release(up)  # the first answers; its slot goes to the second, in arrival order
    loop_thread.run(up.wait_held(1))
    assert first.result(30).status == 200
    assert up.arrived == 2
    assert not second.done()
    assert not third.done()
    release(up)
    loop_thread.run(up.wait_held(1))
    assert second.result(30).status == 200
    release(up)
    reply = third.result(30)
    assert reply.status == 200
    assert b"data: [DONE]" in reply.data
    assert up.max_active == 1
    assert [s.prompt_tokens > 0 for s in up.served] == [True] * 3
    eventually(lambda: gw.gateway.slots.board.in_flight("only") == 0, what="the stream's slot freed")
    snapshot = metrics_json(gw.url)
    assert snapshot["queue"]["waiting"] == {"fast": 0}
    assert snapshot["queue"]["served"] == 2
    assert [e["in_flight"] for e in snapshot["endpoints"]] == [0]
    assert [e["max_concurrency"] for e in snapshot["endpoints"]] == [1]


@pytest.mark.parametrize("stream", [False, True])
def test_queue_full_is_503_with_retry_after_for_openai_clients(
    slotted, gateway, loop_thread, pool, release, sdk_clients, stream
):
    up = slotted("only")
    up.hold = True
    gw = gateway(
        fleet_config({"fast": [ep(up, max_concurrency=1)]}, queue={"max_waiting": 1, "retry_after_seconds": 7})
    )
    first = pool.submit(chat, gw.url)
    loop_thread.run(up.wait_held(1))
    second = pool.submit(chat, gw.url)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="one request waiting")
    client = sdk_clients.openai(gw)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fast", messages=HELLO, stream=stream)
    error = caught.value
    assert error.status_code == 503
    assert error.response.headers["Retry-After"] == "7"
    assert error.code == "queue_full"
    assert "busy" in error.message
    assert error.response.headers["X-Octoroute-Tier"] == "fast"
    release(up, None)
    assert first.result(30).status == 200
    assert second.result(30).status == 200
    assert up.arrived == 2
    assert metric(gw.url, 'octoroute_queue_wait_seconds_count{group="fast",outcome="full"}') == 1
    refused = metrics_json(gw.url)["refusals"]
    assert (refused["total"], refused["by_reason"]["queue_full"]) == (1, 1)


@pytest.mark.parametrize("stream", [False, True])
def test_queue_full_is_503_with_retry_after_for_anthropic_clients(
    slotted, gateway, loop_thread, pool, release, sdk_clients, stream
):
    up = slotted("only")
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}, queue={"max_waiting": 0}))
    first = pool.submit(chat, gw.url)
    loop_thread.run(up.wait_held(1))
    client = sdk_clients.anthropic(gw)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="fast", max_tokens=10, messages=HELLO, stream=stream)
    error = caught.value
    assert error.status_code == 503
    assert error.response.headers["Retry-After"] == "5"  # the default
    body = error.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "busy" in body["error"]["message"]
    release(up, None)
    assert first.result(30).status == 200


def test_a_wait_past_its_limit_is_503(slotted, gateway, loop_thread, pool, release, sdk_clients):
    up = slotted("only")
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}, queue={"max_wait_seconds": 0.05}))
    first = pool.submit(chat, gw.url)
    loop_thread.run(up.wait_held(1))  # and it stays held while the next one waits
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_clients.anthropic(gw).messages.create(model="fast", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["Retry-After"] == "5"
    assert "no slot freed within 0.05s" in caught.value.response.json()["error"]["message"]
    assert gw.gateway.slots.board.waiting("fast") == 0
    release(up, None)
    assert first.result(30).status == 200
    assert up.arrived == 1
    assert metric(gw.url, 'octoroute_queue_wait_seconds_count{group="fast",outcome="timeout"}') == 1
    refused = metrics_json(gw.url)["refusals"]
    assert (refused["total"], refused["by_reason"]["queue_timeout"]) == (1, 1)


def test_a_client_that_leaves_while_waiting_leaves_the_line(slotted, gateway, loop_thread, pool, release):
    up = slotted("only")
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}))
    first = pool.submit(chat, gw.url, [{"role": "user", "content": "first"}])
    loop_thread.run(up.wait_held(1))

    async def post() -> None:
        async with aiohttp.ClientSession() as session:
            body = {"model": "fast", "messages": [{"role": "user", "content": "gone"}]}
            await session.post(f"{gw.url}/v1/chat/completions", json=body)

    leaving = asyncio.run_coroutine_threadsafe(post(), loop_thread.loop)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="the second waiting")
    leaving.cancel()  # the client goes away: its connection closes and the gateway's handler is cancelled
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 0, what="the waiter gone")
    third = pool.submit(chat, gw.url, [{"role": "user", "content": "third"}])
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="the third waiting")
    release(up)  # the slot goes to the third: the one who left is not served
    loop_thread.run(up.wait_held(1))
    release(up, None)
    assert first.result(30).status == 200
    assert third.result(30).status == 200
    assert up.arrived == 2
    assert metric(gw.url, 'octoroute_queue_wait_seconds_count{group="fast",outcome="gone"}') == 1


def test_full_is_not_failed_the_request_waits_instead_of_falling_back(slotted, gateway, loop_thread, pool, release):
    fast, balanced = slotted("fast-1"), slotted("balanced-1")
    fast.hold = True
    gw = gateway(fleet_config({"fast": [ep(fast, max_concurrency=1)], "balanced": [ep(balanced)]}))
    first = pool.submit(chat, gw.url)
    loop_thread.run(fast.wait_held(1))
    second: Future = pool.submit(chat, gw.url)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="waiting in fast's line")
    release(fast, None)
    assert first.result(30).headers["X-Octoroute-Endpoint"] == "fast-1"
    assert second.result(30).headers["X-Octoroute-Endpoint"] == "fast-1"
    assert balanced.arrived == 0


def test_without_least_busy_the_weights_alone_decide(slotted, gateway, loop_thread, pool, release):
    heavy, light = slotted("heavy"), slotted("light")
    heavy.hold = True
    gw = gateway(
        fleet_config({"fast": [ep(heavy, weight=1_000_000), ep(light, weight=1)]}, selection={"least_busy": False})
    )
    first = pool.submit(chat, gw.url)
    loop_thread.run(heavy.wait_held(1))
    second = pool.submit(chat, gw.url)
    loop_thread.run(heavy.wait_arrived(2))  # octoroute 1.0's weighted random: the busy one again
    release(heavy, None)
    assert first.result(30).status == second.result(30).status == 200
    assert light.arrived == 0


def test_slots_discovered_from_the_server_limit_an_endpoint_without_max_concurrency(
    slotted, gateway, loop_thread, pool, release
):
    up = slotted("llama", slots=1)  # its GET /props says total_slots 1, as llama-server -np 1 does
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up)]}, health={"discover": True}))
    assert gw.gateway.slots.board.capacity("llama") == 1
    assert metric(gw.url, 'octoroute_endpoint_slots{endpoint="llama"}') == 1
    first = pool.submit(chat, gw.url)
    loop_thread.run(up.wait_held(1))
    second = pool.submit(chat, gw.url)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="the second waiting in the gateway")
    assert up.arrived == 1

    async def restarted_with_two_slots() -> None:  # what a later discovery would learn
        gw.gateway.learn_slots(gw.gateway.topology.endpoints["llama"], 2)

    loop_thread.run(restarted_with_two_slots())  # the added slot goes to the waiter at once
    loop_thread.run(up.wait_arrived(2))
    release(up, None)
    assert first.result(30).status == 200
    assert second.result(30).status == 200


def test_a_configured_max_concurrency_wins_over_the_servers_slots(slotted, gateway):
    up = slotted("llama", slots=4)
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}, health={"discover": True}))
    assert gw.gateway.context.facts("llama").total_slots == 4  # discovered
    assert gw.gateway.slots.board.capacity("llama") == 1  # configured


def test_an_anthropic_stream_waits_for_a_slot_and_is_served(slotted, gateway, loop_thread, pool, release, sdk_clients):
    up = slotted("only")
    up.hold = True
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}))
    first = pool.submit(chat, gw.url)
    loop_thread.run(up.wait_held(1))

    def stream_messages() -> list[str]:
        with sdk_clients.anthropic(gw).messages.stream(model="fast", max_tokens=20, messages=HELLO) as stream:
            return [event.type for event in stream]

    queued = pool.submit(stream_messages)
    eventually(lambda: gw.gateway.slots.board.waiting("fast") == 1, what="the stream waiting for the slot")
    assert up.arrived == 1
    release(up)
    loop_thread.run(up.wait_held(1))
    release(up, None)
    assert first.result(30).status == 200
    events = queued.result(30)
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert up.max_active == 1


def test_a_stream_whose_client_leaves_frees_its_slot_for_the_next_request(slotted, gateway, loop_thread, pool):
    up = slotted("only", reply_tokens=200, token_delay=0.2)  # a 40 s answer, unless its client leaves
    gw = gateway(fleet_config({"fast": [ep(up, max_concurrency=1)]}))

    async def read_first_event_and_leave() -> bytes:
        async with aiohttp.ClientSession() as session:
            body = {"model": "fast", "messages": HELLO, "stream": True}
            async with session.post(f"{gw.url}/v1/chat/completions", json=body) as response:
                return await response.content.readline()  # then the connection closes mid-stream

    assert loop_thread.run(read_first_event_and_leave()).startswith(b"data: ")
    eventually(lambda: gw.gateway.slots.board.in_flight("only") == 0, what="the left stream's slot freed")
    up.token_delay = 0.0
    assert chat(gw.url).status == 200

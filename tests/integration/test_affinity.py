"""Conversation affinity over real HTTP: the turns of a conversation go to the
endpoint that holds its prompt in a slot's cache (llama.cpp-like fixtures that
report `timings.cache_n`), and `X-Octoroute-Affinity` says whether they did."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import urllib3
from tests.support import fleet_config

from octoroute.demo.slotted import SlottedUpstream

HTTP = urllib3.PoolManager()
SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 40}


async def _call(fn: Callable[[], object]) -> None:
    fn()


def ep(up: SlottedUpstream, **extra: object) -> dict[str, object]:
    return {"name": up.label, "id": up.label, "base_url": up.base_url, **extra}


class Conversation:
    """A multi-turn chat through the openai SDK; each turn keeps the answer and adds a question."""

    def __init__(self, client, model: str = "fast", **create: object) -> None:
        self.client = client
        self.model = model
        self.create = create
        self.messages: list[dict[str, str]] = [SYSTEM]

    def turn(self, question: str) -> tuple[str, str]:
        """(X-Octoroute-Affinity, X-Octoroute-Endpoint) of the turn."""
        self.messages.append({"role": "user", "content": question})
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.model, messages=self.messages, **self.create
        )
        completion = raw.parse()
        if self.create.get("stream"):
            text = "".join(c.choices[0].delta.content or "" for c in completion if c.choices)
        else:
            text = completion.choices[0].message.content
        self.messages.append({"role": "assistant", "content": text.strip()})
        return raw.headers["X-Octoroute-Affinity"], raw.headers["X-Octoroute-Endpoint"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_stays_on_its_endpoint_and_reuses_its_cache(slotted, gateway, sdk_clients, stream):
    a, b = slotted("a"), slotted("b")
    gw = gateway(fleet_config({"fast": [ep(a), ep(b)]}))
    chat = Conversation(sdk_clients.openai(gw), stream=stream)
    first, home = chat.turn("Write a haiku about tea.")
    assert first == "new"
    turns = [chat.turn(f"Now make it about coffee, take {i}.") for i in range(5)]
    assert turns == [("hit", home)] * 5
    server = a if home == "a" else b
    later = server.served[1:]
    assert len(later) == 5
    # each later turn processed only what was new: the cached prompt was reused
    assert all(s.cache_n > s.prompt_n for s in later)
    other = b if server is a else a
    assert other.arrived == 0
    text = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    assert 'octoroute_affinity_total{group="fast",result="hit"} 5.0' in text
    assert 'octoroute_affinity_total{group="fast",result="new"} 1.0' in text
    snapshot = orjson.loads(HTTP.request("GET", f"{gw.url}/metrics.json").data)
    assert snapshot["affinity"] == {"hit": 5, "new": 1, "broken": 0}


def test_a_full_endpoint_breaks_affinity_and_the_conversation_moves(slotted, gateway, sdk_clients, loop_thread):
    a, b = slotted("a"), slotted("b")
    gw = gateway(fleet_config({"fast": [ep(a, max_concurrency=1), ep(b, max_concurrency=1)]}))
    client = sdk_clients.openai(gw)
    chat = Conversation(client)
    _, home = chat.turn("Name three rivers.")
    server = a if home == "a" else b
    server.hold = True
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.chat.completions.create, model=home, messages=[{"role": "user", "content": "occupy"}])
        loop_thread.run(server.wait_held(1))
        moved = chat.turn("And three lakes?")
        loop_thread.run(_call(server.release_all))
        assert busy.result(30).choices[0].message.content
    other = "b" if home == "a" else "a"
    assert moved == ("broken", other)
    assert chat.turn("And three seas?") == ("hit", other)  # it now lives where it moved


def test_an_unreachable_endpoint_breaks_affinity(slotted, gateway, sdk_clients, loop_thread):
    a, b = slotted("a"), slotted("b")
    gw = gateway(fleet_config({"fast": [ep(a), ep(b)]}))
    chat = Conversation(sdk_clients.openai(gw))
    _, home = chat.turn("Name three rivers.")
    loop_thread.run((a if home == "a" else b).stop())
    raw = chat.client.chat.completions.with_raw_response.create(
        model="fast", messages=[*chat.messages, {"role": "user", "content": "More?"}]
    )
    assert raw.headers["X-Octoroute-Affinity"] == "broken"
    assert raw.headers["X-Octoroute-Endpoint"] != home
    assert raw.headers["X-Octoroute-Attempts"] == "2"


def test_an_explicit_session_key_keeps_unrelated_prompts_together(slotted, gateway, sdk_clients):
    a, b = slotted("a"), slotted("b")
    gw = gateway(fleet_config({"fast": [ep(a), ep(b)]}))
    client = sdk_clients.openai(gw)
    seen = []
    for i in range(6):
        raw = client.chat.completions.with_raw_response.create(
            model="fast",
            messages=[{"role": "user", "content": f"unrelated question {i}"}],
            extra_headers={"X-Octoroute-Session": "agent-42"},
        )
        seen.append((raw.headers["X-Octoroute-Affinity"], raw.headers["X-Octoroute-Endpoint"]))
    home = seen[0][1]
    assert seen == [("new", home)] + [("hit", home)] * 5


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_metadata_user_id_is_the_session(slotted, gateway, sdk_clients, stream):
    a, b = slotted("a"), slotted("b")
    gw = gateway(fleet_config({"fast": [ep(a), ep(b)]}))
    client = sdk_clients.anthropic(gw)
    seen = []
    for i in range(6):
        raw = client.messages.with_raw_response.create(
            model="fast",
            max_tokens=20,
            messages=[{"role": "user", "content": f"question {i}"}],
            metadata={"user_id": "user_abc_account__session_1234"},
            stream=stream,
        )
        reply = raw.parse()
        if stream:
            assert [e.type for e in reply][-1] == "message_stop"
        seen.append((raw.headers["X-Octoroute-Affinity"], raw.headers["X-Octoroute-Endpoint"]))
    home = seen[0][1]
    assert seen == [("new", home)] + [("hit", home)] * 5


def test_affinity_off_sends_no_header(slotted, gateway, sdk_clients):
    a = slotted("a")
    gw = gateway(fleet_config({"fast": [ep(a)]}, affinity={"enabled": False}))
    chat = Conversation(sdk_clients.openai(gw))
    with pytest.raises(KeyError):
        chat.turn("hello")
    assert a.arrived == 1


def test_a_session_keeps_an_endpoint_in_each_group_it_uses(slotted, gateway, sdk_clients):
    """Claude Code sends its background requests (small model) and its turns (large
    model) with one metadata.user_id: each group keeps its own endpoint for the session."""
    f1, f2, d1, d2 = slotted("f1"), slotted("f2"), slotted("d1"), slotted("d2")
    gw = gateway(fleet_config({"fast": [ep(f1), ep(f2)], "deep": [ep(d1), ep(d2)]}))
    client = sdk_clients.anthropic(gw)
    seen: dict[str, list[tuple[str, str]]] = {"fast": [], "deep": []}
    for i in range(4):
        for model in ("deep", "fast"):
            raw = client.messages.with_raw_response.create(
                model=model,
                max_tokens=10,
                messages=[{"role": "user", "content": f"{model} request {i}"}],
                metadata={"user_id": "user_abc_account__session_42"},
            )
            raw.parse()
            seen[model].append((raw.headers["X-Octoroute-Affinity"], raw.headers["X-Octoroute-Endpoint"]))
    for turns in seen.values():
        home = turns[0][1]
        assert turns == [("new", home)] + [("hit", home)] * 3

"""Conversation keys and the affinity table (fake clock)."""

from __future__ import annotations

import pytest

from octoroute.fleet.affinity import AffinityResult, AffinityTable, classify, conversation_of, session_of

SYSTEM = {"role": "system", "content": "be brief"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def body(*messages: dict[str, str], **extra: object) -> dict[str, object]:
    return {"model": "auto", "messages": list(messages), **extra}


def test_later_turns_share_the_first_turns_key_and_are_follow_ups() -> None:
    first = conversation_of(body(SYSTEM, {"role": "user", "content": "hi"}))
    later = conversation_of(
        body(
            SYSTEM,
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "more"},
        )
    )
    assert first.key == later.key
    assert (first.follow_up, later.follow_up) == (False, True)


@pytest.mark.parametrize(
    "other",
    [
        body(SYSTEM, {"role": "user", "content": "bye"}),
        body({"role": "system", "content": "be long"}, {"role": "user", "content": "hi"}),
        body(SYSTEM, {"role": "user", "content": "hi"}, tools=[{"type": "function", "function": {"name": "f"}}]),
    ],
)
def test_a_different_beginning_is_another_conversation(other: dict[str, object]) -> None:
    assert conversation_of(other).key != conversation_of(body(SYSTEM, {"role": "user", "content": "hi"})).key


def test_explicit_keys_win_in_order_and_are_follow_ups() -> None:
    b = body({"role": "user", "content": "hi"}, user="alice")
    anthropic = {"metadata": {"user_id": "session-1"}}
    by_session = conversation_of(b, anthropic, session="s-1")
    by_user_id = conversation_of(b, anthropic)
    by_user = conversation_of(b)
    assert len({by_session.key, by_user_id.key, by_user.key}) == 3
    assert all(c.follow_up for c in (by_session, by_user_id, by_user))
    assert conversation_of(body({"role": "user", "content": "other"}), session="s-1").key == by_session.key


def test_keys_hold_no_prompt_or_user_text() -> None:
    key = conversation_of(body({"role": "user", "content": "my secret plan"}), session=None).key
    assert "secret" not in key
    assert len(key) < 40


def test_session_header() -> None:
    assert session_of({"X-Octoroute-Session": " abc "}) == "abc"
    assert session_of({"X-Session-Id": "x"}) == "x"
    assert session_of({"X-Session-Id": "  "}) is None
    assert session_of({}) is None


def test_table_forgets_after_ttl_and_keeps_the_most_recent_when_full() -> None:
    clock = Clock()
    table = AffinityTable(max_entries=2, ttl_seconds=10, clock=clock)
    table.remember("k1", "a")
    table.remember("k2", "b")
    assert table.get("k1") == "a"
    table.remember("k3", "c")  # over the bound: the least recently used (k1) goes
    assert (table.get("k1"), table.get("k2"), table.get("k3")) == (None, "b", "c")
    clock.now = 10.5
    assert table.get("k2") is None
    table.remember("k3", "a")  # refreshed
    clock.now = 20
    assert table.get("k3") == "a"
    assert len(table) == 1


def test_forget_an_endpoint() -> None:
    table = AffinityTable(max_entries=10, ttl_seconds=10, clock=Clock())
    table.remember("k1", "a")
    table.remember("k2", "b")
    table.forget("a")
    assert (table.get("k1"), table.get("k2")) == (None, "b")


def test_classify() -> None:
    assert classify(None, "a") is AffinityResult.NEW
    assert classify("a", "a") is AffinityResult.HIT
    assert classify("a", "b") is AffinityResult.BROKEN

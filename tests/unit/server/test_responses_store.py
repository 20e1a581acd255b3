"""The bounded store of recent responses: count bound (least recently used first out) and age."""

from __future__ import annotations

from octoroute.server.responses_store import ResponseStore, StoredResponse


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stored(response_id: str) -> StoredResponse:
    return StoredResponse({"id": response_id, "object": "response"}, [{"role": "user", "content": response_id}])


def test_least_recently_used_goes_first() -> None:
    store = ResponseStore(2, 60, Clock())
    store.put(_stored("a"))
    store.put(_stored("b"))
    assert store.get("a") is not None  # a is now the most recent
    store.put(_stored("c"))
    assert store.get("b") is None
    assert [store.get(k) is not None for k in ("a", "c")] == [True, True]
    assert len(store) == 2


def test_entries_expire_even_when_read_since() -> None:
    clock = Clock()
    store = ResponseStore(10, 60, clock)
    store.put(_stored("old"))
    clock.now = 30
    store.put(_stored("young"))
    assert store.get("old") is not None  # moves "old" behind "young"
    clock.now = 61
    assert store.get("old") is None
    assert store.get("young") is not None
    clock.now = 91
    assert store.get("young") is None
    assert len(store) == 0


def test_zero_entries_stores_nothing_and_delete_says_whether_it_had_one() -> None:
    off = ResponseStore(0, 60, Clock())
    off.put(_stored("a"))
    assert off.get("a") is None
    store = ResponseStore(5, 60, Clock())
    store.put(_stored("a"))
    assert store.delete("a") is True
    assert store.delete("a") is False

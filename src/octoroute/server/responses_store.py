"""Recent Responses API answers, kept so a client can continue a conversation
with `previous_response_id` or read one back with `GET /v1/responses/{id}`.

    store = ResponseStore(max_entries=1000, ttl_seconds=3600, clock=time.monotonic)
    store.put(StoredResponse(response, items))
    store.get("resp_...")    # None when unknown, expired or evicted

Bounded by entry count (least recently used goes first) and age (`[responses]`).
In memory, per worker process: with `--workers N` a follow-up may reach a worker
that never saw the first response, and gets the same 400 as for an expired id.
The clock is passed in; nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A finished response, and the conversation that led to it: every input item
    of its request (history included) followed by its output items."""

    response: dict[str, Any]
    items: Sequence[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.response["id"])


class ResponseStore:
    __slots__ = ("_clock", "_entries", "max_entries", "ttl_seconds")

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StoredResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, stored: StoredResponse) -> None:
        if self.max_entries == 0:
            return
        now = self._clock()
        self._entries[stored.id] = (now, stored)
        self._entries.move_to_end(stored.id)
        self._expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        now = self._clock()
        self._expire(now)
        found = self._entries.get(response_id)
        if found is None:
            return None
        if now - found[0] >= self.ttl_seconds:  # read recently, so not at the front, but too old
            del self._entries[response_id]
            return None
        self._entries.move_to_end(response_id)
        return found[1]

    def delete(self, response_id: str) -> bool:
        self._expire(self._clock())
        return self._entries.pop(response_id, None) is not None

    def _expire(self, now: float) -> None:
        """Drop expired entries from the front (least recently used), up to the first
        live one; an expired entry read since is caught by `get` itself, and the
        count bound holds whatever the ages."""
        while self._entries:
            key, (stored_at, _) = next(iter(self._entries.items()))
            if now - stored_at < self.ttl_seconds:
                break
            del self._entries[key]

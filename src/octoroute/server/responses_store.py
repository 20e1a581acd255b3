"""Recent Responses API answers, kept so a client can continue a conversation
with `previous_response_id` or read one back with `GET /v1/responses/{id}`,
whichever worker or replica answers.

    store = Responses(ResponseStore(max_entries=1000, ttl_seconds=3600, clock=time.monotonic))
    await store.put(StoredResponse(response, items))
    await store.get("resp_...")    # None when unknown, expired or evicted

Bounded by entry count (least recently used goes first) and age since stored
(`[responses]`), the same in every backend. `Responses` is what the handlers
use; it keeps them where everything else that is shared lives
(`server.app.build_responses`):

- one process: `ResponseStore`, in memory (the clock is passed in; no I/O, no
  suspension);
- `--workers N` without Redis: `state.documents.DirectoryDocuments`, one file
  per response in the workers' private directory;
- `[state] backend = "redis"`: Redis through `state.guard.GuardedState`, with
  this process's own `ResponseStore` beside it. While Redis is unreachable the
  circuit is open and this process answers from its copy: what it stored
  itself (before or during the outage) is found, other processes' responses
  are a 400 / 404 as if unknown. What was stored during the outage stays
  readable here after Redis is back (it never reached Redis).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from octoroute.core.state import DocumentStore
from octoroute.state.guard import StateUnavailable

log = logging.getLogger("octoroute.responses")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A finished response, and the conversation that led to it: every input item
    of its request (history included) followed by its output items."""

    response: dict[str, Any]
    items: Sequence[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.response["id"])

    def encode(self) -> bytes:
        return orjson.dumps({"response": self.response, "items": self.items})

    @classmethod
    def decode(cls, document: bytes) -> StoredResponse:
        parsed = orjson.loads(document)
        return cls(parsed["response"], parsed["items"])


class ResponseStore:
    """In memory: an `OrderedDict` in least recently used order, each entry with the
    instant it was stored."""

    __slots__ = ("_entries", "clock", "max_entries", "ttl_seconds")

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, StoredResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, stored: StoredResponse) -> None:
        if self.max_entries == 0:
            return
        now = self.clock()
        self._entries[stored.id] = (now, stored)
        self._entries.move_to_end(stored.id)
        self._expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        now = self.clock()
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
        self._expire(self.clock())
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


class Responses:
    """The store the handlers use (see the module docstring): `local` alone, or `shared`
    (a `DocumentStore`) with, when `keep_local` (Redis), `local` as this process's copy
    for when the shared store cannot be reached."""

    def __init__(self, local: ResponseStore, shared: DocumentStore | None = None, *, keep_local: bool = False) -> None:
        self.max_entries = local.max_entries
        self.ttl_seconds = local.ttl_seconds
        self._local = local
        self._shared = shared
        self._keep_local = keep_local
        # stored while the shared store could not be reached: found here only
        self._unshared = ResponseStore(local.max_entries, local.ttl_seconds, local.clock)

    async def put(self, stored: StoredResponse) -> None:
        if self._shared is None or self.max_entries == 0:
            self._local.put(stored)
            return
        if self._keep_local:
            self._local.put(stored)
        try:
            await self._shared.put_document(stored.id, stored.encode(), self.ttl_seconds, self.max_entries)
        except StateUnavailable:
            self._unshared.put(stored)
        except OSError as error:  # a full or broken disk: the answer itself was fine
            log.warning("could not store response %s (%s): a follow-up naming it gets a 400", stored.id, error)

    async def get(self, response_id: str) -> StoredResponse | None:
        if self._shared is None:
            return self._local.get(response_id)
        try:
            found = await self._shared.get_document(response_id, self.ttl_seconds)
        except StateUnavailable:
            return self._local.get(response_id) if self._keep_local else None
        if found is None:
            return self._unshared.get(response_id)
        return StoredResponse.decode(found)

    async def delete(self, response_id: str) -> bool:
        """False when there was no live response with this id."""
        if self._shared is None:
            return self._local.delete(response_id)
        deleted = self._unshared.delete(response_id)
        try:
            deleted = await self._shared.delete_document(response_id, self.ttl_seconds) or deleted
        except StateUnavailable:
            deleted = self._local.delete(response_id) or deleted
        else:
            self._local.delete(response_id)
        return deleted

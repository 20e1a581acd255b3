"""The shared-state interface: what the gateway keeps that workers and replicas must agree on.

Three implementations, all with the same behaviour (one contract test suite runs
against each, `tests/integration/test_state_contract.py`):

- `fleet.state.LocalState`: in-process dicts, the default; no extra service.
- `state.shm.SharedMemoryState`: a memory-mapped file shared by the processes of
  `octoroute serve --workers N` without Redis.
- `state.redis_store.RedisState`: Redis (`[state] backend = "redis"`), shared by
  every worker of every replica; `state.guard.GuardedState` puts it in front of
  a `LocalState` to fall back on while Redis is down or slow.

The interface is deliberately small and numeric, so that each operation is one
atomic step in every backend (one Lua script, one locked section, one dict
update):

- `admit` / `wait` / `charge`: GCRA buckets (rate limits, token-per-minute budgets).
- `incr_many` / `read_many` / `put_many`: hashes of float counters under a key
  (usage and cost accounting, UTC day/month token budgets, health verdicts).
- `lease`: a named lease held for a time by one holder (one active probe per
  endpoint per interval across replicas).

Beside it, `DocumentStore`: whole byte documents by id with a TTL and a count
bound (the Responses API's stored responses), for the backends that share
state between processes (the in-process default is the server's own memory
store).

Keys are plain strings without the backend's prefix; each backend adds its own
namespace. Every value is a float (an integer count is exact up to 2**53).

    store: StateStore = LocalState(time.monotonic)
    verdict = await store.admit((Take("rl:req:client:alice", Gcra(0.2, 10), 1.0),))
    if verdict.allowed: ...
    await store.incr_many("usage:alice", {"tokens_in": 120, "tokens_out": 30, "cost": 0.0004})

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# A request is never refused for less than this: float noise in clock arithmetic.
GCRA_SLACK_SECONDS = 1e-6


@dataclass(frozen=True, slots=True)
class Gcra:
    """A bucket of the generic cell rate algorithm: `capacity` units at once, one more
    every `interval` seconds. Stored as one number, the instant it is full again."""

    interval: float  # seconds for one unit to come back
    capacity: float  # units the full bucket holds (a burst)

    @property
    def span(self) -> float:
        """Seconds an empty bucket takes to fill."""
        return self.interval * self.capacity


@dataclass(frozen=True, slots=True)
class Take:
    """Take `cost` units from the bucket `key` (whose shape is `bucket`)."""

    key: str
    bucket: Gcra
    cost: float


@dataclass(frozen=True, slots=True)
class Admission:
    """`allowed`, or the seconds until the same takes would fit and which take was short
    (index into the sequence given to `admit`; the one with the longest wait)."""

    allowed: bool
    wait_seconds: float = 0.0
    short: int = -1


ADMITTED = Admission(allowed=True)


def gcra_wait(full_at: float, now: float, bucket: Gcra, cost: float) -> float:
    """Seconds until `cost` units fit in a bucket full again at `full_at` (<= 0: now).

    The one formula every backend applies (the Redis Lua script spells it the same way)."""
    return max(full_at - now, 0.0) + cost * bucket.interval - bucket.span


def gcra_charge(full_at: float, now: float, bucket: Gcra, cost: float) -> float:
    """The bucket's new full-again instant after taking `cost` (negative: a refund, up to full)."""
    return max(max(full_at, now) + cost * bucket.interval, now)


def shortfall(full_at: Sequence[float], now: float, takes: Sequence[Take]) -> Admission:
    """`admit`'s answer for buckets full again at `full_at` (one per take), taking nothing."""
    worst, short = 0.0, -1
    for i, (full, take) in enumerate(zip(full_at, takes, strict=True)):
        wait = gcra_wait(full, now, take.bucket, take.cost)
        if wait > GCRA_SLACK_SECONDS and wait > worst:
            worst, short = wait, i
    return ADMITTED if short < 0 else Admission(False, worst, short)


class StateStore(Protocol):
    """Shared state (see the module docstring). Every method is atomic in every backend."""

    @property
    def name(self) -> str:
        """The backend actually answering: "local", "shm" or "redis" (for logs and metrics)."""
        ...

    async def admit(self, takes: Sequence[Take]) -> Admission:
        """All or nothing: take every `Take` if each fits now, else take none and say how long to wait."""
        ...

    async def wait(self, takes: Sequence[Take]) -> Admission:
        """What `admit` would answer now, taking nothing (a request refused from its head
        before it is committed to: `fleet.ratelimit.SharedLimiter.peek_request`)."""
        ...

    async def charge(self, key: str, bucket: Gcra, cost: float) -> None:
        """Take `cost` unconditionally (may leave the bucket in debt); a negative cost refunds, up to full."""
        ...

    async def incr_many(
        self, key: str, amounts: Mapping[str, float], ttl_seconds: float | None = None
    ) -> dict[str, float]:
        """Add each amount to its field of hash `key` (missing fields start at 0) and return the
        new values. `ttl_seconds`: the whole hash expires that long after this call."""
        ...

    async def read_many(self, key: str, fields: Sequence[str]) -> list[float | None]:
        """The values of `fields` of hash `key`, None for a missing one."""
        ...

    async def put_many(self, key: str, values: Mapping[str, float], ttl_seconds: float | None = None) -> None:
        """Set fields of hash `key` (others are kept)."""
        ...

    async def lease(self, key: str, ttl_seconds: float) -> bool:
        """True when this caller now holds lease `key` for `ttl_seconds` (nobody held it);
        False while someone (this caller included) holds it."""
        ...

    async def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...


class DocumentStore(Protocol):
    """Byte documents by id, shared like the rest of `[state]` (the Responses API's stored
    responses): `state.documents.DirectoryDocuments` between the workers of one host,
    `state.redis_store.RedisState` (behind `state.guard.GuardedState`) between replicas.

    Every backend keeps the same bounds: a document is gone `ttl_seconds` after it was
    written, however often it is read, and past `max_entries` the least recently read or
    written go first (approximately: a backend may prune in batches)."""

    @property
    def name(self) -> str: ...

    async def put_document(self, doc_id: str, document: bytes, ttl_seconds: float, max_entries: int) -> None:
        """Store `document` under `doc_id` (replacing any), then enforce the bounds."""
        ...

    async def get_document(self, doc_id: str, ttl_seconds: float) -> bytes | None:
        """The document, None when unknown, expired or evicted; reading it makes it recent."""
        ...

    async def delete_document(self, doc_id: str, ttl_seconds: float) -> bool:
        """Forget the document; False when there was no live one."""
        ...

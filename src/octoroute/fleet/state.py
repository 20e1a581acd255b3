"""`LocalState`: the in-process `core.state.StateStore`, the default backend.

Plain dicts in one process; the clock (monotonic seconds) is injected. Every
method finishes without suspending, so awaiting it costs a coroutine call and
nothing else. It is also what `state.guard.GuardedState` falls back on while
Redis cannot be reached.

Memory stays bounded: a bucket that is full again and a hash past its TTL are
gone for good (a full bucket is the same as no bucket), swept at most once per
`sweep_seconds`; past `max_entries` the oldest entries are dropped first (which
forgives a bucket's debt, like `fleet.ratelimit.RateLimiter`'s cap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from octoroute.core.state import (
    ADMITTED,
    Admission,
    Gcra,
    Take,
    gcra_charge,
    shortfall,
)

Clock = Callable[[], float]


class LocalState:
    """The in-process store (see the module docstring and `core.state.StateStore`)."""

    name = "local"

    def __init__(self, clock: Clock, *, max_entries: int = 200_000, sweep_seconds: float = 60.0) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._sweep_seconds = sweep_seconds
        self._next_sweep = -math.inf
        self._buckets: dict[str, float] = {}  # key -> instant the bucket is full again
        self._hashes: dict[str, tuple[float, dict[str, float]]] = {}  # key -> (expires at, fields)
        self._leases: dict[str, float] = {}  # key -> held until

    async def admit(self, takes: Sequence[Take]) -> Admission:
        return self.admit_now(takes)

    def admit_now(self, takes: Sequence[Take]) -> Admission:
        """`admit` without the coroutine, for callers that know the store is local."""
        now = self._clock()
        self._maybe_sweep(now)
        verdict = shortfall([self._buckets.get(take.key, now) for take in takes], now, takes)
        if not verdict.allowed:
            return verdict
        for take in takes:
            self._buckets[take.key] = gcra_charge(self._buckets.get(take.key, now), now, take.bucket, take.cost)
        return ADMITTED

    async def wait(self, takes: Sequence[Take]) -> Admission:
        now = self._clock()
        return shortfall([self._buckets.get(take.key, now) for take in takes], now, takes)

    async def charge(self, key: str, bucket: Gcra, cost: float) -> None:
        now = self._clock()
        self._buckets[key] = gcra_charge(self._buckets.get(key, now), now, bucket, cost)

    async def incr_many(
        self, key: str, amounts: Mapping[str, float], ttl_seconds: float | None = None
    ) -> dict[str, float]:
        fields = self._fields(key, ttl_seconds)
        for field, amount in amounts.items():
            fields[field] = fields.get(field, 0.0) + amount
        return {field: fields[field] for field in amounts}

    async def read_many(self, key: str, fields: Sequence[str]) -> list[float | None]:
        entry = self._hashes.get(key)
        if entry is None or entry[0] <= self._clock():
            return [None] * len(fields)
        return [entry[1].get(field) for field in fields]

    async def put_many(self, key: str, values: Mapping[str, float], ttl_seconds: float | None = None) -> None:
        self._fields(key, ttl_seconds).update(values)

    async def lease(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock()
        if self._leases.get(key, -math.inf) > now:
            return False
        self._leases[key] = now + ttl_seconds
        return True

    async def close(self) -> None:
        return None

    def _fields(self, key: str, ttl_seconds: float | None) -> dict[str, float]:
        """The live fields of hash `key` (created empty), its expiry moved to now + ttl."""
        now = self._clock()
        self._maybe_sweep(now)
        entry = self._hashes.get(key)
        fields = entry[1] if entry is not None and entry[0] > now else {}
        self._hashes[key] = (math.inf if ttl_seconds is None else now + ttl_seconds, fields)
        return fields

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep and len(self._buckets) + len(self._hashes) <= self._max_entries:
            return
        self._next_sweep = now + self._sweep_seconds
        self._buckets = {k: v for k, v in self._buckets.items() if v > now}
        self._hashes = {k: v for k, v in self._hashes.items() if v[0] > now}
        self._leases = {k: v for k, v in self._leases.items() if v > now}
        for table in (self._buckets, self._hashes):
            excess = len(table) - self._max_entries // 2
            for stale in list(table)[: max(excess, 0)]:  # insertion order: oldest first
                del table[stale]

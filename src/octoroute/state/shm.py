"""`SharedMemoryState`: `core.state.StateStore` in a memory-mapped file, for the workers
of one `octoroute serve --workers N` without Redis.

Why a file and not a Redis-compatible socket in the parent: every operation is a
lock, a few `struct` reads and writes and an unlock in the worker's own
address space (microseconds, no round trip, no extra process to supervise),
and the workers already share a private temporary directory (the metrics
directory), which holds the file and goes away with it.

Layout: `SLOTS` slots of 32 bytes (key hash: u64, 0 = empty; value: f64;
expires at: f64, monotonic seconds; spare), an open-addressing table with
linear probing over at most `PROBE` slots. A key is the first 8 bytes of its
BLAKE2b digest (collisions are negligible at these counts). Every operation
holds an exclusive `fcntl.flock` on the file for its whole read-modify-write,
so it is atomic across processes; asyncio never yields inside one. The clock
is `time.monotonic`, which on Linux is one clock for every process.

Buckets expire when full again, hash fields and leases when their TTL ends
(the TTL is per field, set by the call that wrote it). An expired slot is
reused; when a probe window has no free slot, the one expiring first is taken
(for a bucket, which forgives its debt: the table holds 65,536 slots, far more
than the live clients of one machine).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from octoroute.core.state import (
    ADMITTED,
    Admission,
    Gcra,
    Take,
    gcra_charge,
    shortfall,
)

SLOTS = 65_536
PROBE = 32
_SLOT = struct.Struct("<Qdd8x")
SIZE = SLOTS * _SLOT.size


def _hash(kind: str, key: str, field: str = "") -> int:
    digest = hashlib.blake2b(f"{kind}\0{key}\0{field}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1  # never 0, which marks an empty slot


class SharedMemoryState:
    """The workers' shared store (see the module docstring). `path` is created if missing."""

    name = "shm"

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked_fd():
            if os.fstat(self._fd).st_size < SIZE:
                os.ftruncate(self._fd, SIZE)
        self._map = mmap.mmap(self._fd, SIZE)

    @contextmanager
    def _locked_fd(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, h: int, now: float) -> tuple[int, float | None]:
        """The slot offset for hash `h` and its live value (None: absent or expired; the
        offset is then where to write it)."""
        start = h % SLOTS
        free = -1
        oldest, oldest_at = -1, math.inf
        for i in range(PROBE):
            offset = ((start + i) % SLOTS) * _SLOT.size
            key, value, expires = _SLOT.unpack_from(self._map, offset)
            if key == h:
                return offset, (value if expires > now else None)
            if key == 0:
                return (free if free >= 0 else offset), None
            if free < 0 and expires <= now:
                free = offset
            if expires < oldest_at:
                oldest, oldest_at = offset, expires
        return (free if free >= 0 else oldest), None

    def _write(self, offset: int, h: int, value: float, expires: float) -> None:
        _SLOT.pack_into(self._map, offset, h, value, expires)

    async def admit(self, takes: Sequence[Take]) -> Admission:
        with self._locked_fd():
            now = self._clock()
            verdict = self._shortfall(takes, now)
            if not verdict.allowed:
                return verdict
            for take in takes:  # found again: an earlier write may have taken a free slot
                h = _hash("b", take.key)
                offset, full_at = self._find(h, now)
                new = gcra_charge(now if full_at is None else full_at, now, take.bucket, take.cost)
                self._write(offset, h, new, new)
        return ADMITTED

    async def wait(self, takes: Sequence[Take]) -> Admission:
        with self._locked_fd():
            return self._shortfall(takes, self._clock())

    def _shortfall(self, takes: Sequence[Take], now: float) -> Admission:
        """`shortfall` of the buckets as stored (a missing one is full); the lock is held."""
        found = [self._find(_hash("b", take.key), now)[1] for take in takes]
        return shortfall([now if full_at is None else full_at for full_at in found], now, takes)

    async def charge(self, key: str, bucket: Gcra, cost: float) -> None:
        h = _hash("b", key)
        with self._locked_fd():
            now = self._clock()
            offset, full_at = self._find(h, now)
            new = gcra_charge(now if full_at is None else full_at, now, bucket, cost)
            self._write(offset, h, new, new)

    async def incr_many(
        self, key: str, amounts: Mapping[str, float], ttl_seconds: float | None = None
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._locked_fd():
            now = self._clock()
            expires = math.inf if ttl_seconds is None else now + ttl_seconds
            for field, amount in amounts.items():
                h = _hash("h", key, field)
                offset, value = self._find(h, now)
                out[field] = (value or 0.0) + amount
                self._write(offset, h, out[field], expires)
        return out

    async def read_many(self, key: str, fields: Sequence[str]) -> list[float | None]:
        with self._locked_fd():
            now = self._clock()
            return [self._find(_hash("h", key, field), now)[1] for field in fields]

    async def put_many(self, key: str, values: Mapping[str, float], ttl_seconds: float | None = None) -> None:
        with self._locked_fd():
            now = self._clock()
            expires = math.inf if ttl_seconds is None else now + ttl_seconds
            for field, value in values.items():
                h = _hash("h", key, field)
                self._write(self._find(h, now)[0], h, value, expires)

    async def lease(self, key: str, ttl_seconds: float) -> bool:
        h = _hash("l", key)
        with self._locked_fd():
            now = self._clock()
            offset, held = self._find(h, now)
            if held is not None:
                return False
            self._write(offset, h, 1.0, now + ttl_seconds)
        return True

    async def close(self) -> None:
        self._map.close()
        os.close(self._fd)

"""Recent records (routing decisions, upstream errors) in fixed-size slots, and
percentiles over them.

A `SlotRing` keeps the last `capacity` records of one process in a buffer of
fixed-size slots: a `bytearray` for a single process, or a memory-mapped file
per worker when several share the port, so that whichever worker answers
`/metrics.json` reads every worker's window (`read_ring_files`). Adding is
O(1), never allocates beyond the record's own bytes and never grows memory.

Slot layout: 8-byte sequence number, 4-byte length, then the record (JSON
bytes). The writer zeroes the sequence, writes the record, then sets the
sequence, so a reader that finds the same non-zero sequence before and after
copying a record knows it is whole. Records hold ids, names, enums and numbers,
never prompt or completion text.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

_HEADER = struct.Struct("<QI")
PERCENTILES = (50, 90, 99)
DECISION_SLOT = 768
ERROR_SLOT = 1024  # room for the longest endpoint id (385 characters) and a 400-character message


class SlotRing:
    """The last `capacity` records, each at most `slot_size - 12` bytes."""

    __slots__ = ("_buffer", "_next", "capacity", "slot_size")

    def __init__(self, buffer: bytearray | mmap.mmap, slot_size: int) -> None:
        if slot_size <= _HEADER.size or len(buffer) < slot_size:
            raise ValueError(f"a buffer of {len(buffer)} bytes cannot hold slots of {slot_size} bytes")
        self._buffer = buffer
        self.slot_size = slot_size
        self.capacity = len(buffer) // slot_size
        self._next = 0

    @classmethod
    def in_memory(cls, capacity: int, slot_size: int) -> SlotRing:
        _check_capacity(capacity)
        return cls(bytearray(capacity * slot_size), slot_size)

    @classmethod
    def in_file(cls, path: Path, capacity: int, slot_size: int) -> SlotRing:
        """A ring in a new file at `path` (replaced if it exists), shared by mapping it."""
        _check_capacity(capacity)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, capacity * slot_size)
            mapped = mmap.mmap(fd, capacity * slot_size)
        finally:
            os.close(fd)
        return cls(mapped, slot_size)

    @property
    def max_record(self) -> int:
        return self.slot_size - _HEADER.size

    def add(self, record: bytes) -> bool:
        """Store `record` over the oldest one; False (nothing stored) when it does not fit a slot."""
        if len(record) > self.max_record:
            return False
        sequence = self._next + 1
        start = (self._next % self.capacity) * self.slot_size
        buf = self._buffer
        buf[start : start + 8] = b"\0" * 8
        buf[start + 8 : start + _HEADER.size] = len(record).to_bytes(4, "little")
        buf[start + _HEADER.size : start + _HEADER.size + len(record)] = record
        buf[start : start + 8] = sequence.to_bytes(8, "little")
        self._next = sequence
        return True

    def records(self) -> list[bytes]:
        """Every whole record, oldest first."""
        return [record for _, record in sorted(read_slots(bytes(self._buffer), self.slot_size))]

    def close(self) -> None:
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()


def read_slots(data: bytes, slot_size: int) -> Iterator[tuple[int, bytes]]:
    """(sequence, record) for every whole slot of a ring's bytes, in slot order."""
    for start in range(0, len(data) - slot_size + 1, slot_size):
        sequence, length = _HEADER.unpack_from(data, start)
        if sequence == 0 or length > slot_size - _HEADER.size:
            continue
        yield sequence, data[start + _HEADER.size : start + _HEADER.size + length]


def read_ring_files(paths: Iterable[Path], slot_size: int) -> list[bytes]:
    """The records of several workers' ring files (those still readable), in no particular order."""
    out: list[bytes] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:  # a worker's file removed while we listed the directory
            continue
        out.extend(record for _, record in read_slots(data, slot_size))
    return out


def _check_capacity(capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p90 and p99 (nearest rank: every result is an observed value) and the count.

    For p in (0, 100] over n sorted values the result is the value at 1-based rank
    ceil(p * n / 100); with no values the percentiles are None.
    """
    ordered = sorted(values)
    out: dict[str, float | int | None] = {f"p{p}": nearest_rank(ordered, p) for p in PERCENTILES}
    out["count"] = len(ordered)
    return out


def nearest_rank(ordered: Sequence[float], p: float) -> float | None:
    if not (0 < p <= 100):
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    if not ordered:
        return None
    # p * n / 100, not p / 100 * n: for integer p the product is exact, so an
    # exact rank (7 * 100 / 100) is not pushed past an integer by rounding.
    rank = math.ceil(p * len(ordered) / 100)
    value = ordered[max(rank, 1) - 1]
    return round(value, 3) if isinstance(value, float) else value

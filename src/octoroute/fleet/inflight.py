"""In-flight counts shared between processes without a store call on the request path.

Least-busy selection (`fleet.slots.SlotBoard.load`) compares how busy each
endpoint is. With several workers or replicas each process only counts its own
requests, so this module adds what the others publish, the cheap way (issue 14,
item 2): wall-clock time is cut into intervals of `interval` seconds; once per
interval every process adds its own per-endpoint in-flight counts into the
interval's hash `inflight:<n>` (`incr_many`, expiring after a few intervals),
and reads the previous interval's hash, whose totals minus its own
contribution are the others' counts (`SlotBoard.set_elsewhere`).

No process needs to know the others: a process that stops publishing (crashed,
killed, shut down) is simply absent from the next interval's totals, so its
share stops counting at most two intervals after its last publication. Totals
are read a whole interval after they were written, which leaves that much room
for replicas' clocks to disagree.

Pure: the caller passes the wall-clock time and does the store calls.

    share = InflightShare(0.5)
    n = share.interval_of(time.time())
    share.published(n, board.counts())      # after incr_many(share.key(n), counts)
    elsewhere = share.others(n - 1, totals)  # totals = read_many(share.key(n - 1), ids)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

KEY_PREFIX = "inflight:"
OFFSET = 0.1  # publish and read this far (a fraction of an interval) into each interval
KEEP_INTERVALS = 4  # an interval's hash expires this many intervals after its last write


class InflightShare:
    """What this process published per interval, to subtract from the totals it reads."""

    __slots__ = ("_mine", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._mine: dict[int, dict[str, float]] = {}

    def interval_of(self, wall: float) -> int:
        return math.floor(wall / self.interval)

    def key(self, n: int) -> str:
        return f"{KEY_PREFIX}{n}"

    @property
    def ttl_seconds(self) -> float:
        return self.interval * KEEP_INTERVALS

    def seconds_to_next(self, wall: float) -> float:
        """Seconds from `wall` until the next publication instant (`OFFSET` into an interval)."""
        target = (self.interval_of(wall - OFFSET * self.interval) + 1 + OFFSET) * self.interval
        return max(target - wall, 0.0)

    def already_published(self, n: int) -> bool:
        return n in self._mine

    def published(self, n: int, counts: Mapping[str, int]) -> None:
        """This process added `counts` to interval `n`'s totals; older intervals are forgotten."""
        self._mine[n] = {k: float(v) for k, v in counts.items()}
        for old in [m for m in self._mine if m < n - 1]:
            del self._mine[old]

    def others(self, n: int, ids: Sequence[str], totals: Sequence[float | None]) -> dict[str, int]:
        """Per endpoint, what the other processes published for interval `n` (never negative)."""
        mine = self._mine.get(n, {})
        return {
            endpoint: max(round((total or 0.0) - mine.get(endpoint, 0.0)), 0)
            for endpoint, total in zip(ids, totals, strict=True)
        }

    def carry_over(self, old: InflightShare) -> None:
        """A reloaded gateway keeps what its predecessor published (it must still be subtracted)."""
        self._mine = old._mine

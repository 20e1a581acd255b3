"""Recent routing decisions and latencies, kept in memory for a JSON snapshot.

Both are fixed-size windows: adding is O(1) and never grows memory; the
snapshot (`DecisionLog.recent`, `LatencyWindow.percentiles`) does the work, on
demand. Records hold ids, names, enums and numbers, never prompt or completion
text. Nothing here reads the clock: the caller passes each record's time.

    log = DecisionLog(capacity=200)
    log.add(DecisionRecord(time=time.time(), request_id=rid, model="auto", tier="fast",
                           endpoint="fast/qwen", strategy=Strategy.RULE,
                           reason=RouteReason.RULE_CASUAL_SHORT, status=200, latency_ms=41.7))
    snapshot = {"decisions": log.recent(50), "latency_ms": window.percentiles()}
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice

from octoroute.core.types import RouteReason, Strategy

JsonScalar = str | int | float | None
PERCENTILES = (50, 90, 99)


def _check_capacity(capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One routed request: where it went, why, and how it ended.

    `time` is wall-clock seconds since the epoch (passed in); `tier` is the group
    routing chose (a tier or an alias); `endpoint` is the one that answered, None
    when none did.
    """

    time: float
    request_id: str
    model: str
    tier: str
    endpoint: str | None
    strategy: Strategy
    reason: RouteReason
    status: int
    latency_ms: float

    def to_json(self) -> dict[str, JsonScalar]:
        """A JSON-ready dict: enums as their string values, floats rounded for display."""
        return {
            "time": round(self.time, 3),
            "request_id": self.request_id,
            "model": self.model,
            "tier": self.tier,
            "endpoint": self.endpoint,
            "strategy": self.strategy.value,
            "reason": self.reason.value,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
        }


class DecisionLog:
    """The last `capacity` decisions; older ones fall off as new ones are added."""

    __slots__ = ("_records", "capacity")

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self._records: deque[DecisionRecord] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: DecisionRecord) -> None:
        """O(1); drops the oldest record when full."""
        self._records.append(record)

    def recent(self, limit: int | None = None) -> list[dict[str, JsonScalar]]:
        """Up to `limit` records (all when None), newest first, as JSON-ready dicts."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        return [record.to_json() for record in islice(reversed(self._records), limit)]


class LatencyWindow:
    """The last `capacity` latencies (ms), with percentiles computed on demand.

    Percentiles use the nearest-rank method: for p in (0, 100] over n sorted
    values, the value at 1-based rank ceil(p * n / 100). Every result is a
    latency that was actually observed (no interpolation); with one value, every
    percentile is that value; with none, percentiles are None.
    """

    __slots__ = ("_values",)

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self._values: deque[float] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._values)

    def add(self, latency_ms: float) -> None:
        """O(1); drops the oldest value when full. Negative or non-finite values are refused."""
        if not (latency_ms >= 0 and math.isfinite(latency_ms)):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        self._values.append(latency_ms)

    def percentile(self, p: float) -> float | None:
        """The nearest-rank `p`th percentile, or None when empty."""
        return _nearest_rank(sorted(self._values), p)

    def percentiles(self) -> dict[str, float | None]:
        """p50, p90 and p99 from one sort: `{"p50": ..., "p90": ..., "p99": ...}`."""
        ordered = sorted(self._values)
        return {f"p{p}": _nearest_rank(ordered, p) for p in PERCENTILES}


def _nearest_rank(ordered: list[float], p: float) -> float | None:
    if not (0 < p <= 100):
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    if not ordered:
        return None
    # p * n / 100, not p / 100 * n: for integer p the product is exact, so an
    # exact rank (7 * 100 / 100) is not pushed past an integer by rounding.
    rank = math.ceil(p * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]

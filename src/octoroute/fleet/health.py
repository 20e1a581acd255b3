"""Per-endpoint health: a small state machine fed by request outcomes and probes.

An endpoint starts healthy. `failure_threshold` consecutive failures make it
unhealthy; a single success makes it healthy again. Passive observations (real
requests) and active probes go through the same two methods and count the same:
a failed probe is one more consecutive failure, a successful probe brings an
unhealthy endpoint back. Since selection skips unhealthy endpoints, active
probes are what revives them.

Nothing here reads the clock: every method takes `now` (monotonic seconds).

    board = HealthBoard(topology, failure_threshold=config.health.failure_threshold)
    if board.record_failure("fast/qwen", now=clock(), error="HTTP 503") is Transition.BECAME_UNHEALTHY:
        log.warning(...)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from octoroute.config.topology import Topology

MAX_ERROR_CHARS = 200


class Transition(enum.StrEnum):
    """A change of health state, returned so callers can log it once."""

    BECAME_HEALTHY = "became_healthy"
    BECAME_UNHEALTHY = "became_unhealthy"


def _short(error: str) -> str:
    """One line, at most MAX_ERROR_CHARS: errors end up in logs and status pages."""
    line = " ".join(error.split())
    if len(line) > MAX_ERROR_CHARS:
        return line[: MAX_ERROR_CHARS - 1] + "…"
    return line


class EndpointHealth:
    """Mutable health of one endpoint."""

    __slots__ = (
        "consecutive_failures",
        "failure_threshold",
        "healthy",
        "last_check_at",
        "last_error",
        "last_latency_ms",
        "total_failures",
        "total_successes",
    )

    def __init__(self, failure_threshold: int = 3) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.healthy = True
        self.consecutive_failures = 0
        self.last_check_at: float | None = None
        self.last_latency_ms: float | None = None
        self.last_error: str | None = None
        self.total_successes = 0
        self.total_failures = 0

    def record_success(self, now: float, latency_ms: float) -> Transition | None:
        """A request or probe succeeded: healthy again, failure streak and last error cleared."""
        self.last_check_at = now
        self.last_latency_ms = latency_ms
        self.last_error = None
        self.consecutive_failures = 0
        self.total_successes += 1
        if self.healthy:
            return None
        self.healthy = True
        return Transition.BECAME_HEALTHY

    def record_failure(self, now: float, error: str) -> Transition | None:
        """A request or probe failed; the threshold-th failure in a row makes it unhealthy."""
        self.last_check_at = now
        self.last_error = _short(error)
        self.consecutive_failures += 1
        self.total_failures += 1
        if self.healthy and self.consecutive_failures >= self.failure_threshold:
            self.healthy = False
            return Transition.BECAME_UNHEALTHY
        return None

    def note_error(self, error: str) -> None:
        """An answer that says something went wrong without counting as a failure (a 429,
        refused credentials): shown as `last_error` until the next success."""
        self.last_error = _short(error)

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        return f"<EndpointHealth {state} consecutive_failures={self.consecutive_failures}>"


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint's health at a point in time, for status pages and the CLI."""

    id: str
    group: str
    name: str
    base_url: str
    healthy: bool
    consecutive_failures: int
    last_check_age_seconds: float | None  # None: never checked
    last_latency_ms: float | None
    last_error: str | None
    successes: int
    failures: int


class HealthBoard:
    """Health of every endpoint of a topology, keyed by endpoint id."""

    __slots__ = ("_health", "_topology")

    def __init__(self, topology: Topology, failure_threshold: int = 3) -> None:
        self._topology = topology
        self._health = {ep_id: EndpointHealth(failure_threshold) for ep_id in topology.endpoints}

    def get(self, endpoint_id: str) -> EndpointHealth:
        """The state object for `endpoint_id`; KeyError if the topology has no such endpoint."""
        return self._health[endpoint_id]

    def is_healthy(self, endpoint_id: str) -> bool:
        return self._health[endpoint_id].healthy

    def carry_over(self, old: HealthBoard, pairs: Mapping[str, str]) -> None:
        """After a reload: each endpoint in `pairs` ({id here: id on `old`}) keeps its health
        object, so a verdict reached before the reload stands, and outcomes of requests still
        running on the old config keep counting. It takes this board's failure threshold."""
        for new_id, old_id in pairs.items():
            health = old._health[old_id]
            health.failure_threshold = self._health[new_id].failure_threshold
            self._health[new_id] = health

    def any_healthy(self) -> bool:
        return any(h.healthy for h in self._health.values())

    def record_success(self, endpoint_id: str, now: float, latency_ms: float) -> Transition | None:
        return self._health[endpoint_id].record_success(now, latency_ms)

    def record_failure(self, endpoint_id: str, now: float, error: str) -> Transition | None:
        return self._health[endpoint_id].record_failure(now, error)

    def snapshot(self, now: float) -> list[EndpointStatus]:
        """Every endpoint's status, in topology order."""
        out = []
        for ep_id, spec in self._topology.endpoints.items():
            h = self._health[ep_id]
            age = None if h.last_check_at is None else max(0.0, now - h.last_check_at)
            out.append(
                EndpointStatus(
                    id=ep_id,
                    group=spec.group,
                    name=spec.name,
                    base_url=spec.base_url,
                    healthy=h.healthy,
                    consecutive_failures=h.consecutive_failures,
                    last_check_age_seconds=age,
                    last_latency_ms=h.last_latency_ms,
                    last_error=h.last_error,
                    successes=h.total_successes,
                    failures=h.total_failures,
                )
            )
        return out

"""Prometheus metrics, on a registry owned by each app (no module-level state).

Label values come only from enums (`DegradationKind`), so cardinality is
bounded whatever clients send. With several workers each keeps its own
registry: a scrape sees the worker that answered it.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from octoroute.core.types import DegradationKind

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The gateway's metrics; `exposition()` renders the text format for GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.degradations = Counter(
            "octoroute_degradations",
            "Request fields or capabilities a translation or the serving endpoint could not honour, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in DegradationKind:  # every series exists from the start, at 0
            self.degradations.labels(kind=kind.value)

    def record_degradations(self, kinds: Iterable[str]) -> None:
        for kind in kinds:
            self.degradations.labels(kind=DegradationKind(kind).value).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

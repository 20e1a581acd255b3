"""The request path writes counters and histograms past prometheus_client's per-call
checks (`metrics._Counts`, `metrics._Histograms`): what it exposes must be what the
library's own `inc` and `observe` give for the same values. Multiprocess mode
(`--workers N`) needs the environment set before prometheus_client is imported; the
`--workers 2` tests of tests/integration/test_prometheus.py cover it."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from octoroute.core.types import Strategy
from octoroute.observe.metrics import HTTP_BUCKETS_S, ROUTING_BUCKETS_MS, UPSTREAM_BUCKETS_S, PrometheusRecorder

# every bound itself, just above and below one, zero, a negative, huge, infinite and NaN
SECONDS = [0.0, -0.5, 0.001, 0.0010001, 0.0049, 0.005, 0.3, 2.5, 30, 299.9, 300, 301, 1e9, math.inf, math.nan]


def samples(metrics: PrometheusRecorder, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `family` but `_created`, NaN sums made comparable."""
    found = {}
    for metric in metrics.collect():
        if metric.name == family:
            for s in metric.samples:
                if not s.name.endswith("_created"):
                    value = -1.0 if math.isnan(s.value) else s.value
                    found[s.name, tuple(sorted(s.labels.items()))] = value
    assert found, f"no {family} samples"
    return found


def reference(name: str, labels: dict[str, str], buckets: tuple[float, ...], values: list[float]) -> dict:
    """The same observations through prometheus_client's public Histogram API."""
    registry = CollectorRegistry()
    histogram = Histogram(name, "reference", list(labels), buckets=buckets, registry=registry)
    child = histogram.labels(**labels)
    for value in values:
        child.observe(value)
    found = {}
    for metric in registry.collect():
        for s in metric.samples:
            if not s.name.endswith("_created"):
                found[s.name, tuple(sorted(s.labels.items()))] = -1.0 if math.isnan(s.value) else s.value
    return found


@pytest.fixture
def metrics() -> PrometheusRecorder:
    return PrometheusRecorder(["g/a"], ["g"], client_keys=["alice"])


def test_histograms_match_observe_for_every_bucket_edge(metrics: PrometheusRecorder) -> None:
    for seconds in SECONDS:
        metrics.http_finished("/v1/chat/completions", "POST", 200, seconds)
        metrics.attempt_finished("g/a", None, seconds)
        metrics.routed("g", Strategy.RULE, seconds * 1000)
    route = {"route": "/v1/chat/completions"}
    assert samples(metrics, "octoroute_http_request_duration_seconds") == reference(
        "octoroute_http_request_duration_seconds", route, HTTP_BUCKETS_S, SECONDS
    )
    assert samples(metrics, "octoroute_upstream_request_duration_seconds") == reference(
        "octoroute_upstream_request_duration_seconds", {"endpoint": "g/a"}, UPSTREAM_BUCKETS_S, SECONDS
    )
    routing = samples(metrics, "octoroute_routing_duration_ms")
    rule = {k: v for k, v in routing.items() if ("strategy", "rule") in k[1]}
    assert rule == reference(
        "octoroute_routing_duration_ms", {"strategy": "rule"}, ROUTING_BUCKETS_MS, [s * 1000 for s in SECONDS]
    )


def test_counters_count_what_inc_would(metrics: PrometheusRecorder) -> None:
    for _ in range(3):
        metrics.http_started()
        metrics.attempt_started("g")
        metrics.attempt_finished("g/a", None, None)
        metrics.tokens("g/a", 12, 0)
        metrics.usage("alice", "g", "g/a", 12, 0, reported=True)
        metrics.affinity("g", "new")
        metrics.routed("g", Strategy.DIRECT, 0.01)
        metrics.http_finished("/v1/models", "GET", 200, 0.01)
    metrics.http_started()  # one still open
    metrics.usage("anonymous", "g", "g/a", 0, 0, reported=False)

    def value(family: str, **labels: str) -> float:
        wanted = tuple(sorted(labels.items()))
        return next(
            v for (name, lbl), v in samples(metrics, family).items() if lbl == wanted and name.endswith("_total")
        )

    assert value("octoroute_http_requests", route="/v1/models", method="GET", status="200") == 3
    assert value("octoroute_model_invocations", tier="g") == 3
    assert value("octoroute_upstream_attempts", endpoint="g/a", outcome="ok") == 3
    assert value("octoroute_tokens", endpoint="g/a", direction="input") == 36
    assert value("octoroute_tokens", endpoint="g/a", direction="output") == 0
    assert value("octoroute_requests", tier="g", strategy="direct") == 3
    assert value("octoroute_affinity", group="g", result="new") == 3
    assert value("octoroute_usage_requests", client="alice", group="g", endpoint="g/a", usage="reported") == 3
    assert value("octoroute_usage_tokens", client="alice", group="g", endpoint="g/a", direction="input") == 36
    assert value("octoroute_usage_tokens", client="alice", group="g", endpoint="g/a", direction="output") == 0
    assert value("octoroute_usage_requests", client="anonymous", group="g", endpoint="g/a", usage="missing") == 1
    # both directions show from the first request, even at 0
    assert value("octoroute_usage_tokens", client="anonymous", group="g", endpoint="g/a", direction="input") == 0
    active = samples(metrics, "octoroute_active_connections")
    assert sum(active.values()) == 1


def test_a_second_recorder_counts_on_its_own() -> None:
    """Values are bound per recorder (a test builds many apps): one never moves another's."""
    first, second = PrometheusRecorder(["g/a"], ["g"]), PrometheusRecorder(["g/a"], ["g"])
    first.attempt_started("g")
    first.http_finished("/health", "GET", 200, 0.01)
    assert samples(second, "octoroute_model_invocations")[("octoroute_model_invocations_total", (("tier", "g"),))] == 0
    assert not any(m.name == "octoroute_http_request_duration_seconds" and m.samples for m in second.collect())


def test_counter_reference_is_what_inc_gives() -> None:
    """The reference itself: prometheus_client's Counter.inc adds what it is given."""
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["x"], registry=registry)
    counter.labels("y").inc(2)
    assert registry.get_sample_value("c_total", {"x": "y"}) == 2

"""The recent-decisions ring buffer and the latency percentile window."""

from __future__ import annotations

import json

import pytest

from octoroute.core.types import RouteReason, Strategy
from octoroute.observe.decisions import DecisionLog, DecisionRecord, LatencyWindow


def record(n: int, **changes: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "time": 1_700_000_000.0 + n,
        "request_id": f"req-{n}",
        "model": "auto",
        "tier": "fast",
        "endpoint": "fast/qwen",
        "strategy": Strategy.RULE,
        "reason": RouteReason.RULE_CASUAL_SHORT,
        "status": 200,
        "latency_ms": 12.5,
    }
    fields.update(changes)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


def ids(rows: list[dict[str, object]]) -> list[object]:
    return [row["request_id"] for row in rows]


# --- DecisionLog ------------------------------------------------------------


def test_recent_is_newest_first() -> None:
    log = DecisionLog(capacity=10)
    for n in range(3):
        log.add(record(n))
    assert ids(log.recent()) == ["req-2", "req-1", "req-0"]


def test_capacity_keeps_only_the_newest() -> None:
    log = DecisionLog(capacity=3)
    for n in range(10):
        log.add(record(n))
    assert len(log) == 3
    assert log.capacity == 3
    assert ids(log.recent()) == ["req-9", "req-8", "req-7"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        pytest.param(None, ["req-4", "req-3", "req-2", "req-1", "req-0"], id="all"),
        pytest.param(2, ["req-4", "req-3"], id="fewer"),
        pytest.param(50, ["req-4", "req-3", "req-2", "req-1", "req-0"], id="more-than-held"),
        pytest.param(0, [], id="zero"),
    ],
)
def test_recent_limit(limit: int | None, expected: list[str]) -> None:
    log = DecisionLog(capacity=10)
    for n in range(5):
        log.add(record(n))
    assert ids(log.recent(limit)) == expected


def test_an_empty_log() -> None:
    log = DecisionLog(capacity=5)
    assert len(log) == 0
    assert log.recent() == []


def test_recent_rows_are_json_ready() -> None:
    log = DecisionLog(capacity=5)
    log.add(record(1, endpoint=None, status=502, latency_ms=1234.56789, time=1_700_000_000.123456))
    log.add(record(2, tier="deep", strategy=Strategy.HYBRID, reason=RouteReason.LLM_CLASSIFIED, model="gpt-4o-mini"))
    rows = log.recent()
    assert json.loads(json.dumps(rows)) == rows  # plain JSON types all the way down
    assert rows[0] == {
        "time": 1_700_000_002.0,
        "request_id": "req-2",
        "model": "gpt-4o-mini",
        "tier": "deep",
        "endpoint": "fast/qwen",
        "strategy": "hybrid",
        "reason": "llm_classified",
        "status": 200,
        "latency_ms": 12.5,
    }
    assert type(rows[0]["strategy"]) is str  # the enum's value, not the enum
    assert type(rows[0]["reason"]) is str
    assert rows[1]["endpoint"] is None
    assert rows[1]["status"] == 502
    assert rows[1]["latency_ms"] == 1234.57
    assert rows[1]["time"] == 1_700_000_000.123


def test_records_carry_no_prompt_text() -> None:
    fields = set(DecisionRecord.__dataclass_fields__)
    assert fields == {
        "time",
        "request_id",
        "model",
        "tier",
        "endpoint",
        "strategy",
        "reason",
        "status",
        "latency_ms",
    }


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_recent_rejects_a_bad_limit(bad: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        DecisionLog(capacity=3).recent(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("capacity", [0, -5, 2.0, True])
@pytest.mark.parametrize("cls", [DecisionLog, LatencyWindow])
def test_capacity_must_be_a_positive_int(cls: type[DecisionLog | LatencyWindow], capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity"):
        cls(capacity)  # type: ignore[arg-type]


# --- LatencyWindow ----------------------------------------------------------


def window_of(values: list[float], capacity: int = 1000) -> LatencyWindow:
    window = LatencyWindow(capacity)
    for value in values:
        window.add(value)
    return window


def test_empty_window_has_no_percentiles() -> None:
    window = LatencyWindow(10)
    assert len(window) == 0
    assert window.percentiles() == {"p50": None, "p90": None, "p99": None}
    assert window.percentile(50) is None


def test_one_value_is_every_percentile() -> None:
    assert window_of([42.0]).percentiles() == {"p50": 42.0, "p90": 42.0, "p99": 42.0}


def test_percentiles_of_1_to_100() -> None:
    window = window_of([float(v) for v in range(100, 0, -1)])  # order of arrival does not matter
    assert window.percentiles() == {"p50": 50.0, "p90": 90.0, "p99": 99.0}


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        # nearest rank = ceil(p * n / 100), 1-based, over the sorted values
        pytest.param([15, 20, 35, 40, 50], 5, 15, id="wikipedia-p5"),
        pytest.param([15, 20, 35, 40, 50], 30, 20, id="wikipedia-p30"),
        pytest.param([15, 20, 35, 40, 50], 40, 20, id="wikipedia-p40"),
        pytest.param([15, 20, 35, 40, 50], 50, 35, id="wikipedia-p50"),
        pytest.param([15, 20, 35, 40, 50], 100, 50, id="wikipedia-p100"),
        pytest.param([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 25, 7, id="ten-p25"),
        pytest.param([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 50, 8, id="ten-p50"),
        pytest.param([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 75, 15, id="ten-p75"),
        pytest.param([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 90, 16, id="ten-p90-exact-rank"),
        pytest.param([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 99, 20, id="ten-p99"),
        pytest.param([1, 2], 50, 1, id="two-p50-lower"),
        pytest.param(list(range(1, 101)), 7, 7, id="exact-rank-not-pushed-up-by-rounding"),
        pytest.param([5, 1], 0.001, 1, id="tiny-p-is-the-minimum"),
    ],
)
def test_nearest_rank_percentiles(values: list[float], p: float, expected: float) -> None:
    assert window_of([float(v) for v in values]).percentile(p) == expected


def test_percentiles_cover_only_the_last_capacity_values() -> None:
    window = window_of([1000.0] * 50 + [float(v) for v in range(1, 11)], capacity=10)
    assert len(window) == 10
    assert window.percentiles() == {"p50": 5.0, "p90": 9.0, "p99": 10.0}


@pytest.mark.parametrize("p", [0, -1, 100.5, float("nan")])
def test_percentile_must_be_in_range(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        window_of([1.0]).percentile(p)


@pytest.mark.parametrize("latency", [-0.1, float("nan"), float("inf")])
def test_bad_latencies_are_refused(latency: float) -> None:
    window = LatencyWindow(10)
    with pytest.raises(ValueError, match="latency_ms"):
        window.add(latency)
    assert len(window) == 0

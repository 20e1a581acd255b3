"""The health state machine, driven by scripted outcomes and a fake clock."""

from __future__ import annotations

import pytest
from tests.support import FakeClock

from octoroute.config import Topology, build_topology, parse_config
from octoroute.fleet.health import EndpointHealth, EndpointStatus, HealthBoard, Transition

S, F = "success", "failure"
UP, DOWN = Transition.BECAME_HEALTHY, Transition.BECAME_UNHEALTHY


def drive(health: EndpointHealth, script: list[str], clock: FakeClock) -> list[tuple[Transition | None, bool]]:
    out = []
    for step in script:
        clock.advance(1.0)
        if step == S:
            transition = health.record_success(clock(), latency_ms=12.5)
        else:
            transition = health.record_failure(clock(), error="HTTP 503")
        out.append((transition, health.healthy))
    return out


@pytest.mark.parametrize(
    ("threshold", "script", "expected"),
    [
        pytest.param(1, [F], [(DOWN, False)], id="threshold-1-one-failure-trips"),
        pytest.param(1, [F, F, S], [(DOWN, False), (None, False), (UP, True)], id="threshold-1-recovery"),
        pytest.param(
            3,
            [F, F, F, F],
            [(None, True), (None, True), (DOWN, False), (None, False)],
            id="threshold-3-trips-on-third-and-reports-once",
        ),
        pytest.param(
            3,
            [F, F, S, F, F, S],
            [(None, True)] * 6,
            id="threshold-3-interleaved-success-resets-streak",
        ),
        pytest.param(
            3,
            [F, F, F, S, F, F, F],
            [(None, True), (None, True), (DOWN, False), (UP, True), (None, True), (None, True), (DOWN, False)],
            id="threshold-3-recovery-needs-full-streak-again",
        ),
        pytest.param(
            1,
            [F, S, F, S],
            [(DOWN, False), (UP, True), (DOWN, False), (UP, True)],
            id="threshold-1-flapping-reports-every-transition",
        ),
        pytest.param(3, [S, S], [(None, True), (None, True)], id="success-while-healthy-is-quiet"),
    ],
)
def test_state_machine(threshold: int, script: list[str], expected: list[tuple[Transition | None, bool]]) -> None:
    assert drive(EndpointHealth(threshold), script, FakeClock()) == expected


def test_starts_healthy_and_never_checked() -> None:
    h = EndpointHealth()
    assert h.healthy
    assert (h.consecutive_failures, h.last_check_at, h.last_latency_ms, h.last_error) == (0, None, None, None)


def test_counters_and_last_fields() -> None:
    h = EndpointHealth(failure_threshold=3)
    h.record_success(10.0, latency_ms=40.0)
    h.record_failure(11.0, error="connect refused")
    h.record_failure(12.0, error="first_byte timeout after 5s")
    assert (h.total_successes, h.total_failures, h.consecutive_failures) == (1, 2, 2)
    assert (h.last_check_at, h.last_error) == (12.0, "first_byte timeout after 5s")
    assert h.last_latency_ms == 40.0  # a failure has no latency to report

    h.record_success(13.0, latency_ms=55.0)
    assert (h.last_check_at, h.last_latency_ms, h.last_error, h.consecutive_failures) == (13.0, 55.0, None, 0)


def test_error_is_one_short_line() -> None:
    h = EndpointHealth()
    h.record_failure(1.0, error="bad gateway\n" + "x" * 1000)
    assert h.last_error is not None
    assert "\n" not in h.last_error
    assert len(h.last_error) <= 200
    assert h.last_error.startswith("bad gateway x")


def test_threshold_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        EndpointHealth(0)


def _topology() -> Topology:
    config = parse_config(
        {
            "models": {
                "fast": [
                    {"name": "a", "base_url": "http://a:1/v1"},
                    {"name": "b", "base_url": "http://b:1/v1"},
                ],
                "balanced": [{"name": "c", "base_url": "http://c:1/v1", "id": "big"}],
            }
        },
        env={},
    )
    return build_topology(config, env={})


@pytest.fixture
def board() -> HealthBoard:
    return HealthBoard(_topology(), failure_threshold=2)


def test_board_tracks_every_endpoint(board: HealthBoard) -> None:
    assert all(board.is_healthy(i) for i in ("fast/a", "fast/b", "big"))
    assert board.record_failure("fast/a", 1.0, "HTTP 500") is None
    assert board.record_failure("fast/a", 2.0, "HTTP 500") is DOWN
    assert not board.is_healthy("fast/a")
    assert board.is_healthy("fast/b")
    assert board.get("fast/a").consecutive_failures == 2
    assert board.record_success("fast/a", 3.0, latency_ms=9.0) is UP
    assert board.is_healthy("fast/a")


def test_board_unknown_endpoint_is_an_error(board: HealthBoard) -> None:
    with pytest.raises(KeyError):
        board.is_healthy("nope")


def test_any_healthy(board: HealthBoard) -> None:
    for ep_id in ("fast/a", "fast/b"):
        board.record_failure(ep_id, 1.0, "refused")
        board.record_failure(ep_id, 2.0, "refused")
    assert board.any_healthy()
    board.record_failure("big", 3.0, "refused")
    board.record_failure("big", 4.0, "refused")
    assert not board.any_healthy()
    board.record_success("big", 5.0, latency_ms=1.0)
    assert board.any_healthy()


def test_snapshot(board: HealthBoard) -> None:
    clock = FakeClock(100.0)
    board.record_success("fast/a", clock(), latency_ms=30.0)
    clock.advance(5.0)
    board.record_failure("fast/b", clock(), "HTTP 502")
    board.record_failure("fast/b", clock(), "HTTP 502")
    clock.advance(2.5)

    assert board.snapshot(clock()) == [
        EndpointStatus(
            id="fast/a",
            group="fast",
            name="a",
            base_url="http://a:1/v1",
            healthy=True,
            consecutive_failures=0,
            last_check_age_seconds=7.5,
            last_latency_ms=30.0,
            last_error=None,
            successes=1,
            failures=0,
        ),
        EndpointStatus(
            id="fast/b",
            group="fast",
            name="b",
            base_url="http://b:1/v1",
            healthy=False,
            consecutive_failures=2,
            last_check_age_seconds=2.5,
            last_latency_ms=None,
            last_error="HTTP 502",
            successes=0,
            failures=2,
        ),
        EndpointStatus(
            id="big",
            group="balanced",
            name="c",
            base_url="http://c:1/v1",
            healthy=True,
            consecutive_failures=0,
            last_check_age_seconds=None,
            last_latency_ms=None,
            last_error=None,
            successes=0,
            failures=0,
        ),
    ]


def test_snapshot_age_never_negative(board: HealthBoard) -> None:
    board.record_success("big", 50.0, latency_ms=1.0)
    (status,) = [s for s in board.snapshot(49.0) if s.id == "big"]
    assert status.last_check_age_seconds == 0.0


def test_a_noted_error_is_shown_without_counting_and_cleared_by_success() -> None:
    health = EndpointHealth(failure_threshold=1)
    health.note_error("HTTP 429:   Rate limit\nreached " + "x" * 500)
    assert health.healthy
    assert (health.consecutive_failures, health.total_failures, health.last_check_at) == (0, 0, None)
    assert health.last_error is not None
    assert health.last_error.startswith("HTTP 429: Rate limit reached x")
    assert len(health.last_error) == 200
    health.record_success(1.0, 3.0)
    assert health.last_error is None

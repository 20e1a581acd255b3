"""`fleet.rotation`: Retry-After parsing, back-pressure classification, cooldowns and
refused credentials, with explicit clocks."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from random import Random

import pytest

from octoroute.config import EndpointSpec, GroupSpec, ResolvedTimeouts
from octoroute.config.models import RetryConfig
from octoroute.core.errors import (
    AllEndpointsFailed,
    EndpointsCoolingDown,
    NoHealthyEndpoint,
    Pressure,
    UpstreamError,
    UpstreamStatusError,
)
from octoroute.fleet.policy import AttemptPlan
from octoroute.fleet.rotation import (
    MAX_COOLDOWN_SECONDS,
    Rotation,
    cooldown_seconds,
    loading_backoff,
    parse_retry_after,
    pressure_of,
    retry_after_header,
    unserved_error,
)
from octoroute.fleet.selector import GroupSelector

WALL = 1_800_000_000.0  # a wall-clock "now"
AT_WALL = format_datetime(datetime.fromtimestamp(WALL, UTC), usegmt=True)


def http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(WALL + offset, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("5", 5.0, id="seconds"),
        pytest.param(" 12 ", 12.0, id="spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("-3", 0.0, id="negative-is-now"),
        pytest.param(http_date(30), 30.0, id="http-date"),
        pytest.param(http_date(-30), 0.0, id="http-date-past"),
        pytest.param("Wed, 21 Oct 2015 07:28:00", None, id="date-without-zone"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="unreadable"),
        pytest.param("inf", None, id="infinite"),
        pytest.param("nan", None, id="nan"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, WALL) == expected


def test_cooldown_uses_retry_after_else_the_default_and_is_capped() -> None:
    assert cooldown_seconds("7", WALL, default=5.0) == 7.0
    assert cooldown_seconds(None, WALL, default=5.0) == 5.0
    assert cooldown_seconds("garbage", WALL, default=2.5) == 2.5
    assert cooldown_seconds("86400", WALL, default=5.0) == MAX_COOLDOWN_SECONDS
    assert cooldown_seconds(AT_WALL, WALL, default=5.0) == 0.0


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        pytest.param(429, "Rate limit reached", Pressure.RATE_LIMITED, id="429"),
        pytest.param(429, "", Pressure.RATE_LIMITED, id="429-no-body"),
        pytest.param(503, "Loading model", Pressure.LOADING, id="llama.cpp-loading"),
        pytest.param(
            503, "server busy, please try again.  maximum pending requests exceeded", Pressure.BUSY, id="ollama-busy"
        ),
        pytest.param(503, "Server overloaded, please retry shortly", Pressure.BUSY, id="overloaded"),
        pytest.param(529, "Overloaded", Pressure.BUSY, id="anthropic-529"),
        pytest.param(503, "upstream connect error", None, id="other-503"),
        pytest.param(500, "Loading model", None, id="500-is-a-failure"),
        pytest.param(401, "Invalid API Key", None, id="401"),
    ],
)
def test_pressure_of(status: int, message: str, expected: Pressure | None) -> None:
    assert pressure_of(status, message) is expected


def test_loading_backoff_doubles_to_eight_times_the_first() -> None:
    assert [loading_backoff(n, 0.5) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert loading_backoff(10_000, 1.0) == 8.0


@pytest.mark.parametrize(("seconds", "header"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (29.5, 30)])
def test_retry_after_header_rounds_up_to_at_least_one(seconds: float, header: int) -> None:
    assert retry_after_header(seconds) == header


def test_cooldowns_run_out_and_the_longer_one_wins() -> None:
    rotation = Rotation()
    assert not rotation.engaged
    assert rotation.in_rotation("a", 0.0)
    assert rotation.cool_down("a", 10.0, 5.0) == 15.0
    assert rotation.cool_down("a", 11.0, 1.0) == 15.0  # a shorter one does not cut it short
    assert not rotation.in_rotation("a", 14.9)
    assert rotation.cooldown_left("a", 12.0) == 3.0
    assert rotation.cool_down("a", 12.0, 10.0) == 22.0  # a longer one extends it
    assert rotation.engaged
    assert rotation.cooldown_left("a", 22.0) == 0.0
    assert rotation.in_rotation("a", 22.0)
    assert not rotation.engaged  # an expired cooldown is forgotten once asked about


def test_shortest_cooldown_among_the_candidates() -> None:
    rotation = Rotation()
    rotation.cool_down("a", 0.0, 9.0)
    rotation.cool_down("b", 0.0, 4.0)
    rotation.cool_down("c", 0.0, 1.0)
    assert rotation.shortest_cooldown(["a", "b"], 1.0) == 3.0
    assert rotation.shortest_cooldown(["a", "b", "c"], 2.0) == 2.0  # c is over: not counted
    assert rotation.shortest_cooldown(["c", "d"], 2.0) is None


def test_refused_until_restored_and_reported_once() -> None:
    rotation = Rotation()
    assert rotation.refuse("a", 5.0, "HTTP 401: Invalid API Key") is True
    assert rotation.refuse("a", 6.0, "HTTP 401: Invalid API Key") is False  # already out: no second log line
    assert rotation.refused_since("a") == 6.0
    assert rotation.refusal("a") == "HTTP 401: Invalid API Key"
    assert not rotation.in_rotation("a", 1000.0)  # time alone does not bring it back
    assert rotation.engaged
    assert rotation.restore("a") is True
    assert not rotation.engaged
    assert rotation.restore("a") is False
    assert rotation.in_rotation("a", 1000.0)
    assert (rotation.refused_since("a"), rotation.refusal("a")) == (None, None)


def test_a_refused_endpoint_is_retested_once_per_interval() -> None:
    rotation = Rotation()
    assert rotation.retest_due("a", 100.0, 10.0) is False  # not refused: nothing to re-test
    rotation.refuse("a", 0.0, "HTTP 403")
    assert rotation.retest_due("a", 9.9, 10.0) is False
    assert rotation.retest_due("a", 10.0, 10.0) is True
    assert rotation.retest_due("a", 10.0, 10.0) is False  # one request per interval, not every concurrent one
    assert rotation.retest_due("a", 19.9, 10.0) is False
    assert rotation.retest_due("a", 20.0, 10.0) is True
    assert not rotation.in_rotation("a", 20.0)  # still refused until a request succeeds


# -- what a client whose request was not served is told -----------------------


def _endpoint(ep_id: str) -> EndpointSpec:
    timeouts = ResolvedTimeouts(connect=1.0, first_byte=5.0, total=30.0)
    return EndpointSpec(ep_id, "fast", ep_id, f"http://{ep_id}/v1", 1.0, 1, None, None, None, timeouts)


FAST = GroupSpec("fast", (_endpoint("a"), _endpoint("b")), None)
IDS = ("a", "b")


def _status(code: int, message: str = "nope", retry_after: str | None = None) -> UpstreamStatusError:
    return UpstreamStatusError("x", code, b"", None, retry_after, detail=message)


def _run(outcomes: dict[str, UpstreamError | None], usable: set[str]) -> AttemptPlan:
    plan = AttemptPlan([FAST], {"fast": GroupSelector(FAST.endpoints)}, usable.__contains__, RetryConfig(), Random(0))
    while (attempt := plan.next_attempt()) is not None:
        plan.record(outcomes[attempt.endpoint.id])
    return plan


def test_every_attempt_rate_limited_is_a_429_with_the_shortest_cooldown() -> None:
    rotation = Rotation()
    rotation.cool_down("a", 100.0, 30.0)
    rotation.cool_down("b", 100.0, 6.5)
    plan = _run({"a": _status(429), "b": _status(503, "server busy, please try again")}, {"a", "b"})
    error = unserved_error(plan, rotation, IDS, 101.0, 10.0)
    assert isinstance(error, EndpointsCoolingDown)
    assert (error.status, error.retry_after, len(error.attempts)) == (429, 6, 2)


def test_nothing_tried_while_cooling_is_a_429() -> None:
    rotation = Rotation()
    rotation.cool_down("b", 0.0, 3.0)
    error = unserved_error(_run({}, set()), rotation, IDS, 1.0, 10.0)
    assert isinstance(error, EndpointsCoolingDown)
    assert error.retry_after == 2


def test_a_mix_of_failures_is_still_a_502() -> None:
    rotation = Rotation()
    rotation.cool_down("a", 0.0, 30.0)
    plan = _run({"a": _status(429), "b": _status(500)}, {"a", "b"})
    error = unserved_error(plan, rotation, IDS, 1.0, 10.0)
    assert isinstance(error, AllEndpointsFailed)
    assert error.status == 502


def test_a_passed_through_4xx_stays_what_it_is() -> None:
    plan = _run({"a": _status(400), "b": _status(400)}, {"a", "b"})
    assert unserved_error(plan, Rotation(), IDS, 0.0, 10.0) is plan.final_error


@pytest.mark.parametrize(
    ("refused", "says"),
    [(("a", "b"), "every endpoint refused octoroute's credentials"), (("a",), None)],
)
def test_nothing_tried_is_a_503_with_retry_after(refused: tuple[str, ...], says: str | None) -> None:
    rotation = Rotation()
    for ep_id in refused:
        rotation.refuse(ep_id, 0.0, "HTTP 401")
    error = unserved_error(_run({}, set()), rotation, IDS, 1.0, 7.5)
    assert isinstance(error, NoHealthyEndpoint)
    assert (error.status, error.retry_after) == (503, 8)
    assert (says in str(error)) if says else ("refused" not in str(error))

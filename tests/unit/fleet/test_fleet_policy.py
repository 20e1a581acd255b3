"""The attempt plan, driven the way the service drives it, with scripted upstream outcomes."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest
from tests.support import endpoint_spec as ep

from octoroute.config import GroupSpec, Topology
from octoroute.config.models import RetryConfig
from octoroute.core.errors import (
    AllEndpointsFailed,
    ErrorType,
    NoHealthyEndpoint,
    TimeoutPhase,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from octoroute.fleet.health import HealthBoard
from octoroute.fleet.policy import Attempt, AttemptPlan, backoff_seconds, most_likely_recovered
from octoroute.fleet.selector import GroupSelector

Outcome = Callable[[str], UpstreamError | None]


def ok(_: str) -> None:
    return None


def status(code: int) -> Outcome:
    return lambda ep_id: UpstreamStatusError(ep_id, code, b'{"error": {"message": "nope"}}', "application/json")


def timeout(ep_id: str) -> UpstreamError:
    return UpstreamTimeout(ep_id, TimeoutPhase.FIRST_BYTE, 5.0)


def refused(ep_id: str) -> UpstreamError:
    return UpstreamConnectError(ep_id, "connection refused")


def garbled(ep_id: str) -> UpstreamError:
    return UpstreamProtocolError(ep_id, "invalid JSON")


class MidStreamError(UpstreamError):
    error_type = ErrorType.MID_STREAM


# Priorities make the order inside a group deterministic: f1, f2, f3; then b1, b2; then d1.
FAST = GroupSpec("fast", (ep("f1", "fast", priority=3), ep("f2", "fast", priority=2), ep("f3", "fast")), "balanced")
BALANCED = GroupSpec("balanced", (ep("b1", "balanced", priority=2), ep("b2", "balanced")), "deep")
DEEP = GroupSpec("deep", (ep("d1", "deep"),), None)
GROUPS = {g.name: g for g in (FAST, BALANCED, DEEP)}
SELECTORS = {name: GroupSelector(g.endpoints) for name, g in GROUPS.items()}
CHAIN = (FAST, BALANCED, DEEP)


@dataclass
class Run:
    plan: AttemptPlan
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def tried(self) -> list[str]:
        return [a.endpoint.id for a in self.attempts]


def drive(
    script: Mapping[str, Outcome],
    *,
    chain: tuple[GroupSpec, ...] = CHAIN,
    healthy: Callable[[str], bool] = lambda _: True,
    retry: RetryConfig | None = None,
    seed: int = 0,
) -> Run:
    """The service's attempt loop; an endpoint missing from `script` answers 500."""
    plan = AttemptPlan(
        chain,
        selectors=SELECTORS,
        healthy=healthy,
        retry=retry or RetryConfig(max_attempts=10),
        rng=random.Random(seed),
    )
    run = Run(plan)
    while (attempt := plan.next_attempt()) is not None:
        run.attempts.append(attempt)
        plan.record(script.get(attempt.endpoint.id, status(500))(attempt.endpoint.id))
    return run


@pytest.mark.parametrize(
    ("script", "tried", "succeeded", "fallback_used"),
    [
        pytest.param({"f1": ok}, ["f1"], True, None, id="success-first-try"),
        pytest.param({"f2": ok}, ["f1", "f2"], True, None, id="500-then-other-endpoint-same-group"),
        pytest.param({"b1": ok}, ["f1", "f2", "f3", "b1"], True, "balanced", id="fast-all-fail-balanced-serves"),
        pytest.param({"d1": ok}, ["f1", "f2", "f3", "b1", "b2", "d1"], True, "deep", id="whole-chain-walked"),
        pytest.param({}, ["f1", "f2", "f3", "b1", "b2", "d1"], False, "deep", id="chain-exhausted"),
        pytest.param({"f1": status(429), "f2": ok}, ["f1", "f2"], True, None, id="429-retried"),
        pytest.param({"f1": timeout, "f2": ok}, ["f1", "f2"], True, None, id="timeout-retried"),
        pytest.param({"f1": refused, "f2": ok}, ["f1", "f2"], True, None, id="connect-error-retried"),
        pytest.param({"f1": garbled, "f2": ok}, ["f1", "f2"], True, None, id="protocol-error-retried"),
        pytest.param({"f1": status(503), "f2": status(502), "f3": ok}, ["f1", "f2", "f3"], True, None, id="5xx"),
    ],
)
def test_scripted_outcomes(
    script: Mapping[str, Outcome], tried: list[str], succeeded: bool, fallback_used: str | None
) -> None:
    run = drive(script)
    assert run.tried == tried
    assert run.plan.succeeded is succeeded
    assert run.plan.fallback_used == fallback_used
    assert run.plan.attempts_made == len(tried)
    assert [a.number for a in run.attempts] == list(range(1, len(tried) + 1))
    assert [a.is_fallback for a in run.attempts] == [a.group != "fast" for a in run.attempts]
    assert [a.group for a in run.attempts] == [a.endpoint.group for a in run.attempts]
    assert len(run.plan.errors) == len(tried) - succeeded
    assert run.plan.final_error is None


def test_fallback_attempt_is_marked() -> None:
    run = drive({"b1": ok})
    last = run.attempts[-1]
    assert (last.endpoint.id, last.group, last.is_fallback, last.number) == ("b1", "balanced", True, 4)


def test_all_failed_keeps_every_error_in_order() -> None:
    run = drive({"f1": refused, "f2": status(502), "f3": timeout}, chain=(FAST,))
    err = run.plan.exhausted_error()
    assert isinstance(err, AllEndpointsFailed)
    assert err.group == "fast"
    assert err.status == 502
    assert [(e.endpoint_id, e.error_type) for e in err.attempts] == [
        ("f1", ErrorType.CONNECT),
        ("f2", ErrorType.HTTP_5XX),
        ("f3", ErrorType.TIMEOUT),
    ]


def test_all_timeouts_is_504() -> None:
    run = drive(dict.fromkeys(["f1", "f2", "f3"], timeout), chain=(FAST,))
    err = run.plan.exhausted_error()
    assert isinstance(err, AllEndpointsFailed)
    assert err.status == 504


@pytest.mark.parametrize("code", [401, 403])
def test_endpoint_credentials_refused_is_retried_elsewhere(code: int) -> None:
    run = drive({"f1": status(code), "f2": ok})
    assert run.tried == ["f1", "f2"]
    assert run.plan.succeeded
    assert [e.error_type for e in run.plan.errors] == [ErrorType.HTTP_AUTH]


@pytest.mark.parametrize("code", [400, 404, 413, 422])
def test_client_error_from_upstream_is_not_retried(code: int) -> None:
    run = drive({"f1": status(code), "f2": ok})
    assert run.tried == ["f1"]
    assert not run.plan.succeeded
    assert isinstance(run.plan.final_error, UpstreamStatusError)
    assert run.plan.final_error.status == code
    assert run.plan.errors == ()
    assert run.plan.exhausted_error() is run.plan.final_error
    assert run.plan.next_attempt() is None


def test_failure_after_commit_point_is_terminal() -> None:
    run = drive({"f1": lambda ep_id: MidStreamError(ep_id, "connection reset mid-stream"), "f2": ok})
    assert run.tried == ["f1"]
    assert isinstance(run.plan.final_error, MidStreamError)


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_max_attempts_cap(max_attempts: int) -> None:
    run = drive({}, retry=RetryConfig(max_attempts=max_attempts))
    assert len(run.tried) == max_attempts
    err = run.plan.exhausted_error()
    assert isinstance(err, AllEndpointsFailed)
    assert len(err.attempts) == max_attempts
    assert err.group == "fast"


def test_unhealthy_endpoints_are_skipped() -> None:
    run = drive({"f3": ok, "b1": ok}, healthy=lambda ep_id: ep_id not in {"f1", "f2"})
    assert run.tried == ["f3"]
    assert run.attempts[0].backoff_seconds == 0.0


def test_unhealthy_group_falls_back_on_first_attempt() -> None:
    run = drive({"b2": ok}, healthy=lambda ep_id: not ep_id.startswith("f") and ep_id != "b1")
    assert run.tried == ["b2"]
    first = run.attempts[0]
    assert (first.number, first.is_fallback, first.backoff_seconds) == (1, True, 0.0)
    assert run.plan.fallback_used == "balanced"


def test_health_changes_during_the_request_are_seen() -> None:
    topology = Topology(groups={"fast": FAST}, endpoints={e.id: e for e in FAST.endpoints})
    board = HealthBoard(topology, failure_threshold=1)
    plan = AttemptPlan(
        (FAST,), selectors=SELECTORS, healthy=board.is_healthy, retry=RetryConfig(), rng=random.Random(0)
    )
    first = plan.next_attempt()
    assert first is not None
    assert first.endpoint.id == "f1"
    board.record_failure("f1", 1.0, "HTTP 500")
    board.record_failure("f2", 1.0, "probe failed")  # the prober marks f2 down meanwhile
    plan.record(status(500)("f1"))
    second = plan.next_attempt()
    assert second is not None
    assert second.endpoint.id == "f3"


@pytest.mark.parametrize(
    "healthy",
    [
        pytest.param(lambda _: False, id="nothing-healthy"),
        pytest.param(lambda ep_id: ep_id == "x", id="healthy-endpoint-outside-chain"),
    ],
)
def test_nothing_healthy_is_no_healthy_endpoint(healthy: Callable[[str], bool]) -> None:
    run = drive({"f1": ok}, healthy=healthy)
    assert run.tried == []
    assert run.plan.nothing_tried
    err = run.plan.exhausted_error()
    assert isinstance(err, NoHealthyEndpoint)
    assert err.status == 503
    assert err.group == "fast"


def test_fallback_used_reports_last_group_tried_even_on_failure() -> None:
    run = drive({}, chain=(FAST, BALANCED))
    assert run.plan.fallback_used == "balanced"
    assert run.tried == ["f1", "f2", "f3", "b1", "b2"]


def test_requested_group_is_the_chain_head() -> None:
    run = drive({"d1": ok}, chain=(BALANCED, DEEP))
    assert run.plan.requested_group == "balanced"
    assert [a.is_fallback for a in run.attempts] == [False, False, True]


BACKOFF = RetryConfig(max_attempts=20, backoff_base_ms=100, backoff_max_ms=300)


@pytest.mark.parametrize(
    ("number", "low_ms", "high_ms"),
    [
        (1, 0, 0),
        (2, 50, 100),
        (3, 100, 200),
        (4, 150, 300),  # 400 capped at 300
        (5, 150, 300),
        (20, 150, 300),
    ],
)
def test_backoff_bounds(number: int, low_ms: float, high_ms: float) -> None:
    rng = random.Random(12)
    waits = [backoff_seconds(number, BACKOFF, rng) * 1000 for _ in range(1000)]
    assert all(low_ms <= w <= high_ms for w in waits)
    if high_ms:
        assert max(waits) - min(waits) > (high_ms - low_ms) * 0.9  # jitter spreads over the range


def test_backoff_zero_base_never_waits() -> None:
    rng = random.Random(13)
    retry = RetryConfig(backoff_base_ms=0)
    assert [backoff_seconds(n, retry, rng) for n in range(1, 6)] == [0.0] * 5


def test_plan_backoff_sequence_is_seeded_and_bounded() -> None:
    run = drive({"d1": ok}, retry=BACKOFF, seed=14)
    waits_ms = [a.backoff_seconds * 1000 for a in run.attempts]
    assert waits_ms[0] == 0.0
    bounds = [(50, 100), (100, 200), (150, 300), (150, 300), (150, 300)]
    assert all(lo <= w <= hi for w, (lo, hi) in zip(waits_ms[1:], bounds, strict=True))
    assert waits_ms == [a.backoff_seconds * 1000 for a in drive({"d1": ok}, retry=BACKOFF, seed=14).attempts]


def test_protocol_misuse_is_loud() -> None:
    plan = AttemptPlan(CHAIN, selectors=SELECTORS, healthy=lambda _: True, retry=RetryConfig(), rng=random.Random())
    with pytest.raises(RuntimeError, match="without a pending attempt"):
        plan.record(None)
    assert plan.next_attempt() is not None
    with pytest.raises(RuntimeError, match="before asking for the next"):
        plan.next_attempt()
    plan.record(None)
    assert plan.next_attempt() is None
    with pytest.raises(RuntimeError, match="succeeded"):
        plan.exhausted_error()


def test_empty_chain_is_rejected() -> None:
    with pytest.raises(ValueError, match="chain"):
        AttemptPlan((), SELECTORS, lambda _: True, RetryConfig(), random.Random())


def test_weighted_choice_inside_group_without_repeats() -> None:
    group = GroupSpec("g", tuple(ep(f"g{i}", "g", weight=i + 1) for i in range(4)), None)
    selectors = {"g": GroupSelector(group.endpoints)}
    for seed in range(200):
        plan = AttemptPlan(
            (group,),
            selectors=selectors,
            healthy=lambda _: True,
            retry=RetryConfig(max_attempts=10),
            rng=random.Random(seed),
        )
        seen = []
        while (attempt := plan.next_attempt()) is not None:
            seen.append(attempt.endpoint.id)
            plan.record(refused(attempt.endpoint.id))
        assert sorted(seen) == ["g0", "g1", "g2", "g3"]


# -- fail-open ---------------------------------------------------------------


def drive_fail_open(
    script: Mapping[str, Outcome], pick: Callable[[list[str]], str | None], healthy: Callable[[str], bool]
) -> tuple[Run, list[list[str]]]:
    """`drive` with a fail-open function that sees the chain's endpoint ids and names one."""
    offered: list[list[str]] = []

    def fail_open(endpoints):
        offered.append([e.id for e in endpoints])
        chosen = pick([e.id for e in endpoints])
        return next((e for e in endpoints if e.id == chosen), None)

    plan = AttemptPlan(CHAIN, SELECTORS, healthy, RetryConfig(max_attempts=10), random.Random(0), fail_open)
    run = Run(plan)
    while (attempt := plan.next_attempt()) is not None:
        run.attempts.append(attempt)
        plan.record(script.get(attempt.endpoint.id, status(500))(attempt.endpoint.id))
    return run, offered


def test_nothing_healthy_fails_open_to_the_one_endpoint_the_function_names() -> None:
    run, offered = drive_fail_open({"b2": ok}, lambda ids: "b2", healthy=lambda _: False)
    assert run.tried == ["b2"]
    assert offered == [["f1", "f2", "f3", "b1", "b2", "d1"]]  # the whole chain, in order
    (attempt,) = run.attempts
    assert attempt.fail_open
    assert (attempt.group, attempt.is_fallback, attempt.number) == ("balanced", True, 1)
    assert run.plan.succeeded


def test_a_failed_fail_open_attempt_is_the_only_one() -> None:
    run, offered = drive_fail_open({}, lambda ids: ids[0], healthy=lambda _: False)
    assert run.tried == ["f1"]
    assert len(offered) == 1
    err = run.plan.exhausted_error()
    assert isinstance(err, AllEndpointsFailed)
    assert [e.endpoint_id for e in err.attempts] == ["f1"]


def test_fail_open_naming_nothing_is_no_healthy_endpoint() -> None:
    run, _ = drive_fail_open({}, lambda ids: None, healthy=lambda _: False)
    assert run.tried == []
    assert isinstance(run.plan.exhausted_error(), NoHealthyEndpoint)


def test_no_fail_open_once_something_was_tried() -> None:
    run, offered = drive_fail_open({}, lambda ids: "d1", healthy=lambda ep_id: ep_id == "f1")
    assert run.tried == ["f1"]
    assert offered == []
    assert not run.attempts[0].fail_open


def test_fail_open_is_never_consulted_while_something_is_healthy() -> None:
    run, offered = drive_fail_open({"f1": ok}, lambda ids: "d1", healthy=lambda _: True)
    assert run.tried == ["f1"]
    assert offered == []


@pytest.mark.parametrize(
    ("failed_at", "expected"),
    [
        pytest.param({"f1": 30.0, "f2": 10.0, "f3": 20.0}, "f2", id="oldest-failure"),
        pytest.param({"f1": 30.0, "f2": 10.0, "f3": None}, "f3", id="never-failed-first"),
        pytest.param({"f1": 10.0, "f2": 10.0, "f3": 20.0}, "f1", id="tie-config-order"),
    ],
)
def test_most_likely_recovered(failed_at: dict[str, float | None], expected: str) -> None:
    assert most_likely_recovered(FAST.endpoints, failed_at.__getitem__) is not None
    assert most_likely_recovered(FAST.endpoints, failed_at.__getitem__).id == expected  # type: ignore[union-attr]
    assert most_likely_recovered((), failed_at.__getitem__) is None

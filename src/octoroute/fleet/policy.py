"""Retry and fallback for one request, as a small state object the service drives.

The plan answers "which endpoint next, after how long" and is told each outcome,
in the manner of httpx's `auth_flow`:

    plan = AttemptPlan(chain, selectors=selectors, healthy=board.is_healthy, retry=config.retry, rng=rng)
    while (attempt := plan.next_attempt()) is not None:
        await asyncio.sleep(attempt.backoff_seconds)
        try:
            response = await send(attempt.endpoint, request)   # up to the commit point
        except UpstreamError as exc:
            plan.record(exc)
            continue
        plan.record(None)
        return response
    raise plan.exhausted_error()

Rules:

- Within the current group the next endpoint is a healthy one not yet tried in
  this request (priority, then weight). When the group has none left the plan
  moves to the next group of the chain (the requested group, then its
  fallbacks) and never comes back. Tried endpoints stay excluded everywhere.
- Only healthy endpoints are tried in the normal course. If nothing in the whole
  chain is usable at the first call, the plan may *fail open*: given a
  `fail_open` function, it asks it for the one endpoint most likely to have
  recovered (`most_likely_recovered`: the oldest last failure) and makes that
  one attempt, marked `Attempt.fail_open`; otherwise (or when it names none)
  `next_attempt()` returns None, `nothing_tried` is True and `exhausted_error()`
  is `NoHealthyEndpoint` (503). One attempt, not a retry storm: a request
  still gets its answer when every endpoint was marked down by a blip, without
  piling requests onto servers that are really down.
- A non-retryable error (an upstream 4xx other than 429, or a failure after the
  commit point) stops the plan: `final_error` holds it and the service passes
  it through. Retryable errors are kept in order in `errors`.
- With an `Occupancy` (slots, `fleet.slots.Claim`), an endpoint must also have
  a free slot, and the least loaded of a priority level goes first. When the
  current group has healthy, untried endpoints but every one is full,
  `next_attempt()` returns None without moving on and `blocked` names the
  group and those endpoints: the service waits for a slot, then asks again.
  Full is not failed: it never moves the request to a fallback group.
- At most `RetryConfig.max_attempts` attempts. Attempt n >= 2 waits
  `base_ms * 2**(n-2)` capped at `max_ms`, with equal jitter (half fixed, half
  random), so the wait is in [cap/2, cap].
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from octoroute.config.models import RetryConfig
from octoroute.config.topology import EndpointSpec, GroupSpec
from octoroute.core.errors import (
    AllEndpointsFailed,
    ErrorType,
    NoHealthyEndpoint,
    OctorouteError,
    UpstreamError,
)
from octoroute.fleet.selector import GroupSelector, HealthyFn


@dataclass(frozen=True, slots=True)
class Attempt:
    """Try `endpoint` (of `group`) after waiting `backoff_seconds`."""

    endpoint: EndpointSpec
    group: str
    number: int  # 1-based within the request
    backoff_seconds: float
    is_fallback: bool  # group is not the requested group
    fail_open: bool = False  # every endpoint was unusable; this one is tried as the likeliest to have recovered


FailOpenFn = Callable[[Sequence[EndpointSpec]], EndpointSpec | None]


def most_likely_recovered(
    endpoints: Sequence[EndpointSpec], failed_at: Callable[[str], float | None]
) -> EndpointSpec | None:
    """The endpoint whose last failure is oldest (never failed counts as oldest; config
    order breaks ties), or None for no endpoints. `failed_at` gives monotonic seconds."""
    best: EndpointSpec | None = None
    best_at = 0.0
    for ep in endpoints:
        at = failed_at(ep.id)
        at = float("-inf") if at is None else at
        if best is None or at < best_at:
            best, best_at = ep, at
    return best


@dataclass(frozen=True, slots=True)
class Blocked:
    """Every healthy, untried endpoint of `group` is full: wait for a slot of one of `endpoints`."""

    group: str
    endpoints: frozenset[str]


class Occupancy(Protocol):
    """Slots as one request sees them (`fleet.slots.Claim`)."""

    def has_room(self, endpoint: str) -> bool: ...

    def load(self, endpoint: str) -> float: ...


def backoff_seconds(number: int, retry: RetryConfig, rng: random.Random) -> float:
    """Wait before attempt `number` (1-based): 0 for the first, then capped exponential
    with equal jitter. `backoff_seconds(3, RetryConfig(backoff_base_ms=25), rng)` is in [0.025, 0.05]."""
    if number <= 1:
        return 0.0
    cap_ms = min(retry.backoff_max_ms, retry.backoff_base_ms * 2.0 ** (number - 2))
    half = cap_ms / 2
    return (half + rng.uniform(0.0, half)) / 1000.0


class AttemptPlan:
    """The attempts for one request across the fallback chain; see the module docstring."""

    __slots__ = (
        "_blocked",
        "_chain",
        "_errors",
        "_fail_open",
        "_final_error",
        "_group_index",
        "_healthy",
        "_last_group",
        "_occupancy",
        "_pending",
        "_retry",
        "_rng",
        "_selectors",
        "_succeeded",
        "_tried",
        "_usable",
    )

    def __init__(
        self,
        chain: Sequence[GroupSpec],
        selectors: Mapping[str, GroupSelector],
        healthy: HealthyFn,
        retry: RetryConfig,
        rng: random.Random,
        fail_open: FailOpenFn | None = None,
        occupancy: Occupancy | None = None,
    ) -> None:
        if not chain:
            raise ValueError("chain must name at least the requested group")
        self._chain = tuple(chain)
        self._selectors = [selectors[g.name] for g in self._chain]
        self._healthy = healthy
        self._retry = retry
        self._rng = rng
        self._group_index = 0
        self._tried: set[str] = set()
        self._errors: list[UpstreamError] = []
        self._final_error: UpstreamError | None = None
        self._pending: Attempt | None = None
        self._last_group: str | None = None
        self._succeeded = False
        self._fail_open = fail_open
        self._occupancy = occupancy
        self._blocked: Blocked | None = None
        if occupancy is None:
            self._usable = healthy
        else:
            room = occupancy.has_room
            self._usable = lambda endpoint_id: healthy(endpoint_id) and room(endpoint_id)

    @property
    def requested_group(self) -> str:
        return self._chain[0].name

    @property
    def attempts_made(self) -> int:
        return len(self._tried)

    @property
    def nothing_tried(self) -> bool:
        return not self._tried

    @property
    def succeeded(self) -> bool:
        return self._succeeded

    @property
    def errors(self) -> tuple[UpstreamError, ...]:
        """Retryable errors of failed attempts, in order."""
        return tuple(self._errors)

    @property
    def final_error(self) -> UpstreamError | None:
        """The non-retryable error that stopped the plan, to pass through to the client."""
        return self._final_error

    @property
    def fallback_used(self) -> str | None:
        """The group that served (or was last tried) when it is not the requested one."""
        if self._last_group is None or self._last_group == self.requested_group:
            return None
        return self._last_group

    @property
    def blocked(self) -> Blocked | None:
        """Set when the last `next_attempt()` returned None only because every candidate is full."""
        return self._blocked

    def next_attempt(self) -> Attempt | None:
        """The next attempt, or None when the plan is over (success, terminal error,
        attempt cap or no candidate left) or, see `blocked`, must wait for a slot.
        `record` the previous attempt first."""
        if self._pending is not None:
            raise RuntimeError("record() the outcome of the previous attempt before asking for the next")
        self._blocked = None
        if self._succeeded or self._final_error is not None or len(self._tried) >= self._retry.max_attempts:
            return None
        occupancy = self._occupancy
        load = occupancy.load if occupancy is not None else None
        while self._group_index < len(self._chain):
            selector = self._selectors[self._group_index]
            endpoint = selector.pick(healthy=self._usable, excluded=self._tried, rng=self._rng, load=load)
            if endpoint is not None:
                return self._start(endpoint, self._chain[self._group_index].name)
            if occupancy is not None:
                full = frozenset(
                    ep.id for ep in selector.endpoints if ep.id not in self._tried and self._healthy(ep.id)
                )
                if full:
                    self._blocked = Blocked(self._chain[self._group_index].name, full)
                    return None
            self._group_index += 1
        if self._fail_open is not None and not self._tried:
            return self._start_fail_open(self._fail_open)
        return None

    def _start_fail_open(self, fail_open: FailOpenFn) -> Attempt | None:
        self._fail_open = None  # once per request
        endpoint = fail_open([ep for group in self._chain for ep in group.endpoints])
        if endpoint is None:
            return None
        group = next(g.name for g in self._chain if endpoint in g.endpoints)
        return self._start(endpoint, group, fail_open=True)

    def _start(self, endpoint: EndpointSpec, group: str, *, fail_open: bool = False) -> Attempt:
        number = len(self._tried) + 1
        attempt = Attempt(
            endpoint=endpoint,
            group=group,
            number=number,
            backoff_seconds=backoff_seconds(number, self._retry, self._rng),
            is_fallback=group != self.requested_group,
            fail_open=fail_open,
        )
        self._tried.add(endpoint.id)
        self._last_group = group
        self._pending = attempt
        return attempt

    def record(self, outcome: UpstreamError | None) -> None:
        """The outcome of the attempt last returned: None for success, else its error.

        An error after the commit point (`ErrorType.MID_STREAM`) is terminal
        whatever its `retryable` says: bytes already reached the client.
        """
        if self._pending is None:
            raise RuntimeError("record() called without a pending attempt")
        self._pending = None
        if outcome is None:
            self._succeeded = True
        elif outcome.retryable and outcome.error_type is not ErrorType.MID_STREAM:
            self._errors.append(outcome)
        else:
            self._final_error = outcome

    def exhausted_error(self) -> OctorouteError:
        """What to raise when `next_attempt()` returned None without a success:
        the terminal upstream error if one stopped the plan, `NoHealthyEndpoint`
        if nothing could be tried, else `AllEndpointsFailed` with every error."""
        if self._succeeded:
            raise RuntimeError("the plan succeeded; there is no error to raise")
        if self._final_error is not None:
            return self._final_error
        if not self._tried:
            return NoHealthyEndpoint(self.requested_group)
        return AllEndpointsFailed(self.requested_group, self._errors)

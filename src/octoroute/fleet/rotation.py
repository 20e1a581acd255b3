"""Taking endpoints out of rotation for reasons other than ill health.

Health (`health.py`) counts failures. Some upstream answers are not failures
of the server but instructions or verdicts, and count nowhere in health:

- **429** (and Ollama's 503 "server busy"): the upstream asks us to back off.
  The endpoint *cools down* for its `Retry-After` (seconds or an HTTP date),
  else a configured default, capped at `MAX_COOLDOWN_SECONDS`. Selection skips
  it until then; when every candidate is cooling down the client is told to
  retry after the shortest remaining cooldown.
- **503 while loading a model** (llama.cpp `{"error": {"message": "Loading
  model", "type": "unavailable_error"}}`): the server is alive and will answer
  soon; the service waits for it (`loading_backoff`) within the attempt's
  deadline instead of moving on or counting a failure.
- **401/403**: the endpoint refused octoroute's credentials, which no retry of
  ours fixes. It is *refused*: out of rotation except for one real request
  every re-test interval (`retest_due`), until such a request succeeds or the
  process restarts with a new config. A health probe does not bring it back:
  llama.cpp answers `GET /v1/models` without checking the key.

Pure: every method takes `now` (monotonic seconds) or a wall-clock time.

    rotation = Rotation()
    rotation.cool_down("fast/a", now, cooldown_seconds(error.retry_after, time.time(), default=5.0))
    rotation.in_rotation("fast/a", now)  # False for the next 5 s
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime

from octoroute.core.errors import (
    COOLDOWN_PRESSURES,
    EndpointsCoolingDown,
    NoHealthyEndpoint,
    OctorouteError,
    Pressure,
    UpstreamError,
    UpstreamStatusError,
)
from octoroute.fleet.policy import AttemptPlan

MAX_COOLDOWN_SECONDS = 3600.0  # a Retry-After of a day is a misconfigured upstream, not a plan
LOADING_BACKOFF_CAP = 8  # waits while a model loads grow to at most this many times the first


def pressure_of(status: int, message: str) -> Pressure | None:
    """Whether an upstream error status is back-pressure rather than a failure.

    `message` is the upstream's own text (see `protocols.openai.normalised_error`):
    llama.cpp answers 503 "Loading model" while it loads; Ollama 503 "server busy,
    please try again. maximum pending requests exceeded" when its queue is full;
    Anthropic 529 `overloaded_error`.
    """
    if status == 429:
        return Pressure.RATE_LIMITED
    if status == 529:
        return Pressure.BUSY
    if status == 503:
        said = message.lower()
        if "loading" in said:
            return Pressure.LOADING
        if "busy" in said or "overloaded" in said:
            return Pressure.BUSY
    return None


def pressure_of_error(error: UpstreamError) -> Pressure | None:
    """`pressure_of` for any attempt error (only an error status can be back-pressure)."""
    if not isinstance(error, UpstreamStatusError):
        return None
    return pressure_of(error.status, error.detail or "")


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds from now that a `Retry-After` value asks for (RFC 9110 §10.2.3:
    delay-seconds or an HTTP date), never negative; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        seconds = when.timestamp() - wall_now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def cooldown_seconds(retry_after: str | None, wall_now: float, default: float) -> float:
    """How long to cool an endpoint down: its `Retry-After`, else `default`, capped."""
    asked = parse_retry_after(retry_after, wall_now)
    return min(MAX_COOLDOWN_SECONDS, default if asked is None else asked)


def loading_backoff(waits_so_far: int, first: float) -> float:
    """Wait before asking a loading server again: `first`, doubling, at most 8 × `first`."""
    return first * min(LOADING_BACKOFF_CAP, 1 << min(waits_so_far, 16))


def retry_after_header(seconds: float) -> int:
    """A remaining wait as the whole seconds of a `Retry-After` header: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


class Rotation:
    """Cooldowns and refused credentials of every endpoint; see the module docstring."""

    __slots__ = ("_cool_until", "_refused_at", "_refused_why", "engaged")

    def __init__(self) -> None:
        self._cool_until: dict[str, float] = {}
        self._refused_at: dict[str, float] = {}
        self._refused_why: dict[str, str] = {}
        # Whether any endpoint is (or was, until next asked about) cooling down or refused:
        # False lets selection skip the clock and every lookup here. A plain attribute: it
        # is read for every candidate of every request.
        self.engaged = False

    def _settle(self) -> None:
        self.engaged = bool(self._cool_until) or bool(self._refused_at)

    # -- cooldowns ---------------------------------------------------------

    def cool_down(self, endpoint_id: str, now: float, seconds: float) -> float:
        """Keep the endpoint out of rotation for `seconds` from `now` (a longer cooldown
        already running is kept); returns when it ends."""
        until = max(self._cool_until.get(endpoint_id, 0.0), now + max(0.0, seconds))
        self._cool_until[endpoint_id] = until
        self.engaged = True
        return until

    def cooldown_left(self, endpoint_id: str, now: float) -> float:
        """Seconds until the endpoint's cooldown ends; 0 when it is not cooling down."""
        until = self._cool_until.get(endpoint_id)
        if until is None:
            return 0.0
        if until <= now:
            del self._cool_until[endpoint_id]
            self._settle()
            return 0.0
        return until - now

    def shortest_cooldown(self, endpoint_ids: Iterable[str], now: float) -> float | None:
        """The shortest remaining cooldown among `endpoint_ids`, or None if none is cooling down."""
        left = [s for e in endpoint_ids if (s := self.cooldown_left(e, now)) > 0]
        return min(left) if left else None

    # -- refused credentials -----------------------------------------------

    def refuse(self, endpoint_id: str, now: float, why: str) -> bool:
        """The upstream answered 401/403 (`why`: what it said). True when this takes it out
        of rotation (log it once)."""
        newly = endpoint_id not in self._refused_at
        self._refused_at[endpoint_id] = now
        self._refused_why[endpoint_id] = why
        self.engaged = True
        return newly

    def restore(self, endpoint_id: str) -> bool:
        """A request with the endpoint's credentials succeeded. True when this puts a
        refused endpoint back."""
        self._refused_why.pop(endpoint_id, None)
        restored = self._refused_at.pop(endpoint_id, None) is not None
        self._settle()
        return restored

    def refused_since(self, endpoint_id: str) -> float | None:
        """When the endpoint last refused our credentials (or was last re-tested), or None
        when it is not refused."""
        return self._refused_at.get(endpoint_id)

    def refusal(self, endpoint_id: str) -> str | None:
        """What the endpoint said when it refused our credentials, while it is refused."""
        return self._refused_why.get(endpoint_id)

    def retest_due(self, endpoint_id: str, now: float, interval: float) -> bool:
        """For a refused endpoint: True once per `interval` (the caller lets one request
        try it), counted from the refusal or the previous re-test."""
        since = self._refused_at.get(endpoint_id)
        if since is None or now - since < interval:
            return False
        self._refused_at[endpoint_id] = now
        return True

    # -- both --------------------------------------------------------------

    def carry_over(self, old: Rotation, pairs: Mapping[str, str], same_key: Collection[str]) -> None:
        """After a reload: cooldowns of the endpoints in `pairs` ({id here: id on `old`}) run
        on; a refusal of our credentials carries only where the key is unchanged (`same_key`:
        ids here), since a new key is what fixes one."""
        for new_id, old_id in pairs.items():
            until = old._cool_until.get(old_id)
            if until is not None:
                self._cool_until[new_id] = until
            if new_id in same_key and old_id in old._refused_at:
                self._refused_at[new_id] = old._refused_at[old_id]
                self._refused_why[new_id] = old._refused_why.get(old_id, "")
        self._settle()

    def in_rotation(self, endpoint_id: str, now: float) -> bool:
        """Neither refused nor cooling down (health is judged separately)."""
        return endpoint_id not in self._refused_at and self.cooldown_left(endpoint_id, now) == 0.0


def unserved_error(
    plan: AttemptPlan, rotation: Rotation, endpoint_ids: Sequence[str], now: float, recheck_seconds: float
) -> OctorouteError:
    """What a client whose request no attempt served is told, given the plan's end:

    - the plan's terminal error (a passed-through 4xx) as it is;
    - every attempt answered with back-pressure (429, 503 busy), or nothing was tried
      while a candidate cools down: `EndpointsCoolingDown`, 429 with the shortest
      remaining cooldown of `endpoint_ids` as `Retry-After`;
    - nothing tried otherwise: `NoHealthyEndpoint`, 503 with `recheck_seconds` as
      `Retry-After`, saying so when every endpoint refused our credentials;
    - else the plan's `AllEndpointsFailed`.
    """
    if plan.final_error is not None:
        return plan.final_error
    group = plan.requested_group
    waiting = rotation.shortest_cooldown(endpoint_ids, now)
    errors = plan.errors
    if errors and all(pressure_of_error(e) in COOLDOWN_PRESSURES for e in errors):
        return EndpointsCoolingDown(group, retry_after_header(waiting or 0.0), errors)
    if plan.nothing_tried and waiting is not None:
        return EndpointsCoolingDown(group, retry_after_header(waiting))
    error = plan.exhausted_error()
    if isinstance(error, NoHealthyEndpoint):
        refused = all(rotation.refused_since(i) is not None for i in endpoint_ids)
        reason = "every endpoint refused octoroute's credentials: check their api_key_env" if refused else ""
        return NoHealthyEndpoint(group, retry_after_header(recheck_seconds), reason)
    return error

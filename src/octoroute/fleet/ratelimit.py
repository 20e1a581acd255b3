"""Per-client rate limits: a request-rate bucket and a tokens-per-minute budget.

Pure state: no I/O, and the clock (monotonic seconds) is injected and read once
per call. Intended use at the ingress, once per request:

    limiter = RateLimiter(ClientLimits(5.0, burst=10, tokens_per_minute=60_000), overrides,
                          time.monotonic, idle_seconds=300, max_clients=100_000)
    key = client_key(api_key, peer_address)
    verdict = limiter.check_request(key, estimated_tokens=estimate)
    if not verdict.allowed:
        ...  # TOO_LARGE: 400/413; otherwise 429 with Retry-After: verdict.retry_after_header()
    ...  # forward the request
    limiter.record_tokens(key, usage_total_tokens, reserved_tokens=estimate)

How a bucket is stored: as one float, the instant it will be full again (the
"theoretical arrival time" of the generic cell rate algorithm, GCRA), not as a
token count plus a last-refill time. Refill is then implicit in comparing with `now`:
nothing is added per call, so a million tiny steps accumulate no rounding, and
"full" (needed for idle eviction) is simply `full_at <= now`. Comparisons
forgive `SLACK_SECONDS` so that float noise in clock arithmetic never turns an
exact refill into a refusal.

- Requests: `burst` requests at once, then one per `1 / requests_per_second`.
- Tokens: a bucket of `tokens_per_minute` refilling at `tokens_per_minute / 60`
  per second. A check reserves the estimate; `record_tokens` charges the
  difference between actual and reserved, which may leave the bucket in debt
  (later requests wait until it is paid off). An estimate larger than the whole
  budget can never fit and is refused as `TOO_LARGE` instead of waiting forever.

Memory stays bounded: a client's state is dropped once its buckets are full and
it has not been seen for `idle_seconds` (a dropped client comes back to the
same full state, so this is lossless), checked by a sweep at most once per
`idle_seconds`; and at most `max_clients` are kept, the least recently seen
being dropped first (which forgives that client's debt: size the cap well above
the number of active clients).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from octoroute.core.state import Admission, Gcra, StateStore, Take

# Float noise in `now ± k/rate` is far below a microsecond for any monotonic
# clock value a process will see; a client is never refused for less.
SLACK_SECONDS = 1e-6
KEY_DIGEST_CHARS = 16  # 64 bits of sha256: collisions are not a concern at any client count
UNKNOWN_ADDRESS = "unknown"

Clock = Callable[[], float]


class LimitReason(enum.StrEnum):
    """Why a request was refused; stable names for logs, metrics and error bodies."""

    REQUESTS = "requests"  # request rate exceeded: retry after `retry_after_seconds`
    TOKENS = "tokens"  # token budget exhausted (or in debt): retry after `retry_after_seconds`
    TOO_LARGE = "too_large"  # estimate exceeds the whole per-minute budget: waiting never helps


def client_key(api_key: str | None, address: str | None) -> str:
    """The bucket key for a client: its API key (hashed) when it sent one, else its address.

    Raw keys are never kept: `client_key("sk-abc", "10.0.0.1")` is `"key:"` plus the
    first 16 hex digits of the key's sha256; `client_key(None, "10.0.0.1")` is
    `"addr:10.0.0.1"`. An empty key counts as none.
    """
    if api_key:
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"key:{digest[:KEY_DIGEST_CHARS]}"
    return f"addr:{address or UNKNOWN_ADDRESS}"


def _is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """One client's limits. `tokens_per_minute=None` means no token budget."""

    requests_per_second: float
    burst: int
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        rate = self.requests_per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"requests_per_second must be a finite number > 0, got {rate!r}")
        if not _is_count(self.burst, 1):
            raise ValueError(f"burst must be an int >= 1, got {self.burst!r}")
        if self.tokens_per_minute is not None and not _is_count(self.tokens_per_minute, 1):
            raise ValueError(f"tokens_per_minute must be an int >= 1 or None, got {self.tokens_per_minute!r}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a check.

    Allowed: `reason` is None and `retry_after_seconds` 0. Refused for REQUESTS or
    TOKENS: `retry_after_seconds` > 0 is when the same check would pass if nothing
    else happens. Refused as TOO_LARGE: `retry_after_seconds` is 0, since no wait helps.
    """

    allowed: bool
    retry_after_seconds: float = 0.0
    reason: LimitReason | None = None

    def __post_init__(self) -> None:
        if self.allowed:
            if self.reason is not None or self.retry_after_seconds != 0:
                raise ValueError("an allowed verdict has no reason and no retry time")
        elif self.reason is None:
            raise ValueError("a refused verdict needs a reason")
        elif (self.reason is LimitReason.TOO_LARGE) != (self.retry_after_seconds == 0):
            raise ValueError("retry_after_seconds must be > 0 exactly when the refusal is retryable")

    @property
    def retryable(self) -> bool:
        """Refused, but the same request will pass later (a 429, not a 4xx)."""
        return not self.allowed and self.reason is not LimitReason.TOO_LARGE

    def retry_after_header(self) -> str:
        """`Retry-After` value: whole seconds, rounded up, at least 1.

        Raises ValueError for verdicts with no retry time (allowed, or TOO_LARGE).
        """
        if not self.retryable:
            raise ValueError(f"no Retry-After for a verdict that is not a retryable refusal: {self}")
        # Round up, ignoring float noise: 2.0000000001 s is "2", 2.1 s is "3".
        return str(max(1, math.ceil(self.retry_after_seconds - SLACK_SECONDS)))


ALLOWED = Verdict(allowed=True)


class _ClientState:
    """Both buckets of one client, each as the instant it will be full again."""

    __slots__ = ("last_used", "limits", "requests_full_at", "tokens_full_at")

    def __init__(self, limits: ClientLimits, now: float) -> None:
        self.limits = limits
        self.requests_full_at = now
        self.tokens_full_at = now
        self.last_used = now

    def is_full(self, now: float) -> bool:
        return self.requests_full_at <= now and self.tokens_full_at <= now


def _request_wait(state: _ClientState, now: float) -> float:
    """Seconds until one more request fits (<= 0: it fits now)."""
    interval = 1.0 / state.limits.requests_per_second
    return max(state.requests_full_at - now, 0.0) - (state.limits.burst - 1) * interval


def _token_wait(state: _ClientState, tokens: int, now: float) -> float:
    """Seconds until `tokens` fit in the budget (<= 0: they fit now). Assumes tokens <= budget."""
    budget = state.limits.tokens_per_minute
    if budget is None:
        return -math.inf
    per_second = budget / 60.0
    return max(state.tokens_full_at - now, 0.0) - (budget - tokens) / per_second


def _charge_request(state: _ClientState, now: float) -> None:
    state.requests_full_at = max(state.requests_full_at, now) + 1.0 / state.limits.requests_per_second


def _charge_tokens(state: _ClientState, tokens: int, now: float) -> None:
    """Take `tokens` from the budget (a negative number refunds, up to full)."""
    budget = state.limits.tokens_per_minute
    if budget is None or tokens == 0:
        return
    full_at = max(state.tokens_full_at, now) + tokens * 60.0 / budget
    state.tokens_full_at = max(full_at, now)


def _too_large(state: _ClientState, tokens: int) -> bool:
    budget = state.limits.tokens_per_minute
    return budget is not None and tokens > budget


def _refusal(request_wait: float, token_wait: float) -> Verdict | None:
    """A refusal for the longer of the two waits, or None when both fit."""
    wait = max(request_wait, token_wait)
    if wait <= SLACK_SECONDS:
        return None
    reason = LimitReason.REQUESTS if request_wait >= token_wait else LimitReason.TOKENS
    return Verdict(allowed=False, retry_after_seconds=wait, reason=reason)


def _judge(state: _ClientState, estimated_tokens: int | None, now: float) -> Verdict | None:
    """Why one more request (reserving `estimated_tokens`, if given) does not fit now, or None."""
    if estimated_tokens is None:
        return _refusal(_request_wait(state, now), -math.inf)
    if _too_large(state, estimated_tokens):
        return Verdict(allowed=False, reason=LimitReason.TOO_LARGE)
    return _refusal(_request_wait(state, now), _token_wait(state, estimated_tokens, now))


def _check_token_count(name: str, tokens: int) -> None:
    if not _is_count(tokens, 0):
        raise ValueError(f"{name} must be an int >= 0, got {tokens!r}")


class RateLimiter:
    """Request-rate and token-budget buckets per client key (see the module docstring).

    `overrides` maps raw API keys to their limits; they are hashed with
    `client_key` here, so the raw keys are not kept. `buckets` maps bucket keys
    (`client:<name>` for an `[auth]` key) to their limits as they are. Every other
    client gets `default`.
    """

    def __init__(
        self,
        default: ClientLimits,
        overrides: Mapping[str, ClientLimits],
        clock: Clock,
        *,
        idle_seconds: float,
        max_clients: int,
        buckets: Mapping[str, ClientLimits] | None = None,
    ) -> None:
        if not (math.isfinite(idle_seconds) and idle_seconds > 0):
            raise ValueError(f"idle_seconds must be a finite number > 0, got {idle_seconds!r}")
        if not _is_count(max_clients, 1):
            raise ValueError(f"max_clients must be an int >= 1, got {max_clients!r}")
        if any(not raw for raw in overrides):
            raise ValueError("override keys must be non-empty API keys")
        self._default = default
        self._overrides = {client_key(raw, None): limits for raw, limits in overrides.items()}
        self._overrides.update(buckets or {})  # already bucket keys (an [auth] key's name), not raw keys
        self._clock = clock
        self._idle_seconds = idle_seconds
        self._max_clients = max_clients
        # Least recently seen first: the idle sweep and the cap both take from the front.
        self._clients: OrderedDict[str, _ClientState] = OrderedDict()
        self._next_sweep_at: float | None = None

    @property
    def live_buckets(self) -> int:
        """Clients with state held right now (for a gauge)."""
        return len(self._clients)

    def limits_for(self, client_key: str) -> ClientLimits:
        """The limits that apply to a key from `client_key()`."""
        return self._overrides.get(client_key, self._default)

    def check_request(self, client_key: str, *, estimated_tokens: int | None = None) -> Verdict:
        """Admit one request, or say why not and for how long. A refusal consumes nothing.

        With `estimated_tokens`, the token budget is checked too and the estimate
        reserved, all or nothing: a request refused for tokens does not use up a
        request slot. Settle the reservation later with `record_tokens`.
        """
        if estimated_tokens is not None:
            _check_token_count("estimated_tokens", estimated_tokens)
        now = self._clock()
        state = self._touch(client_key, now)
        refusal = _judge(state, estimated_tokens, now)
        if refusal is not None:
            return refusal
        _charge_request(state, now)
        if estimated_tokens is not None:
            _charge_tokens(state, estimated_tokens, now)
        return ALLOWED

    def peek_request(self, client_key: str, *, estimated_tokens: int | None = None) -> Verdict:
        """The verdict `check_request` would give now, with nothing charged or reserved.

        For a request refused from its head (`Expect: 100-continue`) before its body, and
        so its size, is known: pass a lower bound of the estimate (0 when there is none),
        and a refusal here is one `check_request` would give at this instant for any body.
        An allowed peek is settled by `check_request` once the body is in, as any request.
        """
        if estimated_tokens is not None:
            _check_token_count("estimated_tokens", estimated_tokens)
        now = self._clock()
        refusal = _judge(self._touch(client_key, now), estimated_tokens, now)
        return ALLOWED if refusal is None else refusal

    def check_tokens(self, client_key: str, estimated_tokens: int) -> Verdict:
        """Check the token budget alone and reserve the estimate when it fits.

        Refused as TOKENS while the bucket cannot cover the estimate (including
        while it is in debt, even for 0 tokens), as TOO_LARGE when the estimate
        exceeds the whole per-minute budget. Always allowed without a budget.
        """
        _check_token_count("estimated_tokens", estimated_tokens)
        now = self._clock()
        state = self._touch(client_key, now)
        if _too_large(state, estimated_tokens):
            return Verdict(allowed=False, reason=LimitReason.TOO_LARGE)
        refusal = _refusal(-math.inf, _token_wait(state, estimated_tokens, now))
        if refusal is not None:
            return refusal
        _charge_tokens(state, estimated_tokens, now)
        return ALLOWED

    def record_tokens(self, client_key: str, actual_tokens: int, *, reserved_tokens: int) -> None:
        """Settle a request: charge `actual_tokens - reserved_tokens`.

        `reserved_tokens` is the estimate an allowed check reserved (0 if none was,
        and the whole estimate with `actual_tokens=0` to release a request that
        failed). Using more than reserved may put the budget in debt, delaying
        later requests; using less gives the difference back, up to a full bucket.
        """
        _check_token_count("actual_tokens", actual_tokens)
        _check_token_count("reserved_tokens", reserved_tokens)
        now = self._clock()
        state = self._touch(client_key, now)
        _charge_tokens(state, actual_tokens - reserved_tokens, now)

    def evict_idle(self) -> int:
        """Drop every idle client now (normally done by the periodic sweep); returns how many."""
        return self._evict_idle(self._clock())

    def _touch(self, key: str, now: float) -> _ClientState:
        """The client's state, marked most recently used; created (full) if unknown."""
        self._maybe_sweep(now)
        state = self._clients.get(key)
        if state is None:
            if len(self._clients) >= self._max_clients:
                self._clients.popitem(last=False)
            state = _ClientState(self.limits_for(key), now)
            self._clients[key] = state
        else:
            self._clients.move_to_end(key)
            state.last_used = now
        return state

    def _maybe_sweep(self, now: float) -> None:
        """Sweep at most once per `idle_seconds`, so its cost is amortised over the calls."""
        if self._next_sweep_at is None:
            self._next_sweep_at = now + self._idle_seconds
        elif now >= self._next_sweep_at:
            self._evict_idle(now)
            self._next_sweep_at = now + self._idle_seconds

    def _evict_idle(self, now: float) -> int:
        """Drop clients unseen for `idle_seconds` whose buckets are full again.

        Only the stale front of the LRU order is visited: the walk stops at the
        first client seen within `idle_seconds`. Stale clients still in debt stay
        until a later sweep finds them full.
        """
        cutoff = now - self._idle_seconds
        idle: list[str] = []
        for key, state in self._clients.items():
            if state.last_used > cutoff:
                break
            if state.is_full(now):
                idle.append(key)
        for key in idle:
            del self._clients[key]
        return len(idle)


class SharedLimiter:
    """The same two buckets per client as `RateLimiter`, kept in a `core.state.StateStore`
    (Redis, or the workers' shared memory), so every process that shares the store
    limits a client together: `burst` at once and `requests_per_second` after that
    across all of them, not per process.

    Each check is one atomic `admit` of both buckets (all or nothing); settling is
    one `charge`. Limits come from `limiter.limits_for` (overrides and `[auth]`
    keys); its own buckets are not used. The store's keys: `rl:r:<client>` and
    `rl:t:<client>`.
    """

    def __init__(self, limiter: RateLimiter, store: StateStore) -> None:
        self._limiter = limiter
        self._store = store

    def limits_for(self, client_key: str) -> ClientLimits:
        return self._limiter.limits_for(client_key)

    async def check_request(self, client_key: str, *, estimated_tokens: int | None = None) -> Verdict:
        """As `RateLimiter.check_request`."""
        takes = self._takes(client_key, estimated_tokens)
        if isinstance(takes, Verdict):
            return takes
        return _verdict_of(await self._store.admit(takes))

    async def peek_request(self, client_key: str, *, estimated_tokens: int | None = None) -> Verdict:
        """As `RateLimiter.peek_request`: `check_request`'s verdict now, taking nothing."""
        takes = self._takes(client_key, estimated_tokens)
        if isinstance(takes, Verdict):
            return takes
        return _verdict_of(await self._store.wait(takes))

    def _takes(self, client_key: str, estimated_tokens: int | None) -> list[Take] | Verdict:
        """What one request takes from the store, or TOO_LARGE."""
        limits = self._limiter.limits_for(client_key)
        takes = [Take(f"rl:r:{client_key}", Gcra(1.0 / limits.requests_per_second, limits.burst), 1.0)]
        if estimated_tokens is not None and limits.tokens_per_minute is not None:
            _check_token_count("estimated_tokens", estimated_tokens)
            if estimated_tokens > limits.tokens_per_minute:
                return Verdict(allowed=False, reason=LimitReason.TOO_LARGE)
            takes.append(Take(f"rl:t:{client_key}", _token_bucket(limits.tokens_per_minute), estimated_tokens))
        return takes

    async def record_tokens(self, client_key: str, actual_tokens: int, *, reserved_tokens: int) -> None:
        """As `RateLimiter.record_tokens`."""
        _check_token_count("actual_tokens", actual_tokens)
        _check_token_count("reserved_tokens", reserved_tokens)
        budget = self._limiter.limits_for(client_key).tokens_per_minute
        if budget is not None and actual_tokens != reserved_tokens:
            await self._store.charge(f"rl:t:{client_key}", _token_bucket(budget), actual_tokens - reserved_tokens)


def _verdict_of(answer: Admission) -> Verdict:
    if answer.allowed:
        return ALLOWED
    reason = LimitReason.REQUESTS if answer.short == 0 else LimitReason.TOKENS
    return Verdict(allowed=False, retry_after_seconds=max(answer.wait_seconds, SLACK_SECONDS * 2), reason=reason)


def _token_bucket(tokens_per_minute: int) -> Gcra:
    return Gcra(60.0 / tokens_per_minute, tokens_per_minute)

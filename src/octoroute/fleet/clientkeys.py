"""Client API keys, pure: hashing, verification, model permissions, token budgets.

Keys are kept only as SHA-256 digests (`hash_key`). A key made by
`octoroute keys create` carries 256 random bits, so a salted slow hash (PBKDF2,
scrypt) would add nothing against guessing and would cost every request a slow
hash per configured key; a digest never turns back into the key when the keys
file or a memory dump leaks. The presented key's digest is compared with every
stored digest by `hmac.compare_digest`, so the time taken does not say how much
of a digest matched.

    ring = KeyRing([ClientKey("ci", hash_key("ork-..."), ("fast", "balanced"))])
    ring.verify("ork-...")  # ClientKey(name='ci', ...) or None
"""

from __future__ import annotations

import calendar
import enum
import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from octoroute.core.state import StateStore
from octoroute.fleet.ratelimit import ClientLimits

HASH_PREFIX = "sha256:"
KEY_PREFIX = "ork-"  # octoroute key: recognisable in a leaked file or a redaction test
ANY_MODEL = ("*",)


def hash_key(key: str) -> str:
    """`'sha256:' + hex digest` of a key, the only form in which a key is stored."""
    return HASH_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def format_key(random_bytes: bytes) -> str:
    """A new key from 32 random bytes (the caller's `secrets.token_bytes(32)`)."""
    return KEY_PREFIX + random_bytes.hex()


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One client key: its name (the only part ever shown), digest and permissions."""

    name: str
    digest: str  # hash_key(key)
    models: tuple[str, ...] = ANY_MODEL  # fnmatch patterns over the model the client asks for
    limits: ClientLimits | None = None  # None: [rate_limit]'s defaults
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    def allows(self, model: str) -> bool:
        return any(fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def restricted(self) -> bool:
        """Whether some model is refused to this key (so its answer depends on the body)."""
        return self.models != ANY_MODEL

    @property
    def rate_limit_key(self) -> str:
        """The rate limiter's bucket for this key: its name, whatever the client sends."""
        return f"client:{self.name}"


class KeyRing:
    """The configured keys; `verify` finds the one a client presented."""

    def __init__(self, keys: Iterable[ClientKey]) -> None:
        self._keys = tuple(keys)
        self._digests = tuple(k.digest.encode("ascii") for k in self._keys)

    @property
    def keys(self) -> tuple[ClientKey, ...]:
        return self._keys

    def verify(self, presented: str | None) -> ClientKey | None:
        """The key whose digest matches `presented`, else None; every digest is compared."""
        if not presented:
            return None
        digest = hash_key(presented).encode("ascii")
        found: ClientKey | None = None
        for key, stored in zip(self._keys, self._digests, strict=True):
            if hmac.compare_digest(stored, digest):
                found = key
        return found


_TOKENS = "tokens"


class Period(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


def period_start(period: Period, now: float) -> float:
    """The UTC midnight (DAY) or first of the month (MONTH) at or before `now` (epoch seconds)."""
    t = time.gmtime(now)
    if period is Period.DAY:
        return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, 0)))
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)))


def period_end(period: Period, now: float) -> float:
    """When the period holding `now` ends (the next one starts)."""
    t = time.gmtime(now)
    if period is Period.DAY:
        return period_start(period, now) + 86_400
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)))


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    period: Period
    budget: int
    used: int
    resets_in: float  # seconds until the period ends


class Budgets:
    """Tokens each key used this UTC day and month, checked against its budgets.

    The counts live in a `core.state.StateStore` (one hash per key, period and
    period start, expiring an hour after the period ends), so with Redis every
    replica charges the same budget. `now` is wall-clock epoch seconds, passed in
    by the caller. Check-then-charge is not one step: requests admitted at the
    same time may together pass the budget by what they use (a budget is checked
    before a request and charged after it anyway)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    @staticmethod
    def _key(name: str, period: Period, now: float) -> str:
        return f"budget:{name}:{period.value}:{int(period_start(period, now))}"

    async def used(self, name: str, period: Period, now: float) -> int:
        (tokens,) = await self._store.read_many(self._key(name, period, now), (_TOKENS,))
        return int(tokens or 0)

    async def check(self, key: ClientKey, now: float) -> BudgetRefusal | None:
        """The first exhausted budget of `key` (day before month), else None."""
        for period, budget in ((Period.DAY, key.tokens_per_day), (Period.MONTH, key.tokens_per_month)):
            if budget is None:
                continue
            used = await self.used(key.name, period, now)
            if used >= budget:
                return BudgetRefusal(period, budget, used, max(0.0, period_end(period, now) - now))
        return None

    async def record(self, key: ClientKey, tokens: int, now: float) -> None:
        """Charge `tokens` (input + output) to every budgeted period of `key`."""
        for period, budget in ((Period.DAY, key.tokens_per_day), (Period.MONTH, key.tokens_per_month)):
            if budget is not None and tokens > 0:
                ttl = period_end(period, now) - now + 3600.0
                await self._store.incr_many(self._key(key.name, period, now), {_TOKENS: float(tokens)}, ttl)

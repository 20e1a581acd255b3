"""Client keys without a server: digests, verification, model patterns, day/month budgets."""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from octoroute.fleet.clientkeys import (
    Budgets,
    ClientKey,
    KeyRing,
    Period,
    format_key,
    hash_key,
    period_end,
    period_start,
)
from octoroute.fleet.state import LocalState

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


KEY_A = "ork-" + "a1" * 32
KEY_B = "ork-" + "b2" * 32


def at(year: int, month: int, day: int, hour: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, 0, 0, 0, 0, 0)))


def test_a_key_is_stored_as_its_sha256_digest_only():
    digest = hash_key(KEY_A)
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    assert KEY_A not in digest
    assert hash_key(KEY_A) == digest
    assert hash_key(KEY_B) != digest


def test_format_key_is_the_prefix_and_the_random_bytes_in_hex():
    assert format_key(bytes(range(32))) == "ork-" + bytes(range(32)).hex()


@pytest.mark.parametrize(
    ("presented", "expected"),
    [(KEY_A, "a"), (KEY_B, "b"), ("ork-wrong", None), ("", None), (None, None), (KEY_A + " ", None)],
)
def test_verify_finds_the_key_a_client_presented(presented, expected):
    ring = KeyRing([ClientKey("a", hash_key(KEY_A)), ClientKey("b", hash_key(KEY_B))])
    found = ring.verify(presented)
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        (("*",), "deep", True),
        (("fast", "balanced"), "fast", True),
        (("fast", "balanced"), "deep", False),
        (("fast", "balanced"), "auto", False),
        (("claude-*",), "claude-sonnet-4", True),
        (("fast/*",), "fast/qwen", True),
        (("fast/*",), "deep/qwen", False),
    ],
)
def test_a_key_may_use_the_models_its_patterns_match(patterns, model, allowed):
    assert ClientKey("k", hash_key(KEY_A), patterns).allows(model) is allowed


def test_the_rate_limit_bucket_is_the_key_name():
    assert ClientKey("ci", hash_key(KEY_A)).rate_limit_key == "client:ci"


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (Period.DAY, at(2026, 12, 7, 15), at(2026, 12, 7), at(2026, 12, 8)),
        (Period.MONTH, at(2026, 12, 7, 15), at(2026, 12, 1), at(2027, 1, 1)),
        (Period.MONTH, at(2026, 2, 28, 23), at(2026, 2, 1), at(2026, 3, 1)),
    ],
)
def test_periods_are_utc_days_and_calendar_months(period, now, start, end):
    assert period_start(period, now) == start
    assert period_end(period, now) == end


def test_a_day_budget_refuses_once_spent_and_resets_at_utc_midnight():
    key = ClientKey("ci", hash_key(KEY_A), tokens_per_day=100)
    budgets = Budgets(LocalState(lambda: 0.0))
    now = at(2026, 12, 7, 23)
    assert run(budgets.check(key, now)) is None
    run(budgets.record(key, 60, now))
    assert run(budgets.check(key, now)) is None
    run(budgets.record(key, 60, now))  # admitted while budget remained; charged when it ended
    refusal = run(budgets.check(key, now))
    assert refusal is not None
    assert (refusal.period, refusal.budget, refusal.used, refusal.resets_in) == (Period.DAY, 100, 120, 3600)
    assert run(budgets.check(key, at(2026, 12, 8))) is None


def test_a_month_budget_outlives_the_day_and_other_keys_are_untouched():
    key = ClientKey("ci", hash_key(KEY_A), tokens_per_day=1000, tokens_per_month=1500)
    other = ClientKey("other", hash_key(KEY_B), tokens_per_month=10)
    budgets = Budgets(LocalState(lambda: 0.0))
    run(budgets.record(key, 900, at(2026, 12, 1)))
    run(budgets.record(key, 900, at(2026, 12, 2)))
    refusal = run(budgets.check(key, at(2026, 12, 3)))
    assert refusal is not None
    assert refusal.period is Period.MONTH
    assert run(budgets.check(other, at(2026, 12, 3))) is None
    assert run(budgets.check(key, at(2027, 1, 1))) is None


def test_a_key_without_budgets_is_never_refused():
    key = ClientKey("free", hash_key(KEY_A))
    budgets = Budgets(LocalState(lambda: 0.0))
    run(budgets.record(key, 10**9, at(2026, 12, 7)))
    assert run(budgets.check(key, at(2026, 12, 7))) is None

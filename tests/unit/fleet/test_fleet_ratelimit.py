"""Per-client rate limits, driven by a fake clock."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pytest
from tests.support import FakeClock

from octoroute.fleet.ratelimit import ClientLimits, LimitReason, RateLimiter, Verdict, client_key

A, B, C, D = "addr:10.0.0.1", "addr:10.0.0.2", "addr:10.0.0.3", "addr:10.0.0.4"


def make_limiter(
    clock: FakeClock,
    *,
    rps: float = 2.0,
    burst: int = 3,
    tpm: int | None = None,
    overrides: Mapping[str, ClientLimits] | None = None,
    idle_seconds: float = 60.0,
    max_clients: int = 1000,
) -> RateLimiter:
    return RateLimiter(
        ClientLimits(requests_per_second=rps, burst=burst, tokens_per_minute=tpm),
        overrides or {},
        clock,
        idle_seconds=idle_seconds,
        max_clients=max_clients,
    )


def allowed_now(limiter: RateLimiter, key: str) -> int:
    """How many requests pass back to back right now (stops at the first refusal)."""
    count = 0
    while limiter.check_request(key).allowed:
        count += 1
    return count


# --- requests ---------------------------------------------------------------


def test_burst_then_refusal_with_retry_after() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=3)
    assert [limiter.check_request(A).allowed for _ in range(3)] == [True, True, True]

    verdict = limiter.check_request(A)
    assert not verdict.allowed
    assert verdict.reason is LimitReason.REQUESTS
    assert verdict.retry_after_seconds == pytest.approx(0.5)
    assert verdict.retry_after_header() == "1"


def test_a_refusal_consumes_nothing() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=1)
    assert limiter.check_request(A).allowed
    clock.advance(0.2)
    waits = [limiter.check_request(A).retry_after_seconds for _ in range(50)]
    assert waits == pytest.approx([0.3] * 50)  # hammering does not push the wait out
    clock.advance(0.3)
    assert limiter.check_request(A).allowed


def test_retry_after_is_exactly_when_the_request_passes() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=3.0, burst=2)
    allowed_now(limiter, A)
    wait = limiter.check_request(A).retry_after_seconds
    clock.advance(wait * 0.99)
    assert not limiter.check_request(A).allowed
    clock.advance(wait * 0.01)
    assert limiter.check_request(A).allowed


def test_refill_over_time_is_capped_at_burst() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=3)
    assert allowed_now(limiter, A) == 3
    clock.advance(1.0)  # two requests' worth
    assert allowed_now(limiter, A) == 2
    clock.advance(1000.0)
    assert allowed_now(limiter, A) == 3


def test_clients_do_not_share_buckets() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=2)
    assert allowed_now(limiter, A) == 2
    assert allowed_now(limiter, B) == 2


def test_overrides_are_configured_by_raw_key_and_applied_to_its_hashed_form() -> None:
    clock = FakeClock()
    vip = ClientLimits(requests_per_second=100.0, burst=10)
    limiter = make_limiter(clock, burst=2, overrides={"sk-vip": vip})
    vip_key = client_key("sk-vip", "10.0.0.9")

    assert limiter.limits_for(vip_key) is vip
    assert allowed_now(limiter, vip_key) == 10
    assert allowed_now(limiter, client_key("sk-other", "10.0.0.9")) == 2
    assert allowed_now(limiter, "sk-vip") == 2  # an unhashed key is just another client
    assert allowed_now(limiter, client_key(None, "10.0.0.9")) == 2


def test_an_empty_override_key_is_refused() -> None:
    with pytest.raises(ValueError, match="override keys"):
        make_limiter(FakeClock(), overrides={"": ClientLimits(1.0, burst=1)})


# --- Verdict and Retry-After ------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        pytest.param(0.001, "1", id="tiny-is-at-least-1"),
        pytest.param(0.5, "1", id="half"),
        pytest.param(1.0, "1", id="exact-1"),
        pytest.param(2.0000000001, "2", id="float-noise-not-rounded-up"),
        pytest.param(2.01, "3", id="just-over-rounds-up"),
        pytest.param(59.5, "60", id="minute"),
    ],
)
def test_retry_after_header_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    verdict = Verdict(allowed=False, retry_after_seconds=seconds, reason=LimitReason.REQUESTS)
    assert verdict.retryable
    assert verdict.retry_after_header() == header


@pytest.mark.parametrize(
    "verdict",
    [
        pytest.param(Verdict(allowed=True), id="allowed"),
        pytest.param(Verdict(allowed=False, reason=LimitReason.TOO_LARGE), id="too-large"),
    ],
)
def test_no_retry_after_header_without_a_retry_time(verdict: Verdict) -> None:
    assert not verdict.retryable
    with pytest.raises(ValueError, match="Retry-After"):
        verdict.retry_after_header()


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"allowed": True, "reason": LimitReason.REQUESTS}, id="allowed-with-reason"),
        pytest.param({"allowed": True, "retry_after_seconds": 1.0}, id="allowed-with-wait"),
        pytest.param({"allowed": False, "retry_after_seconds": 1.0}, id="refused-without-reason"),
        pytest.param({"allowed": False, "reason": LimitReason.TOKENS}, id="retryable-without-wait"),
        pytest.param(
            {"allowed": False, "retry_after_seconds": 1.0, "reason": LimitReason.TOO_LARGE}, id="too-large-with-wait"
        ),
    ],
)
def test_inconsistent_verdicts_cannot_be_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"verdict|retry"):
        Verdict(**kwargs)  # type: ignore[arg-type]


# --- client keys ------------------------------------------------------------


def test_client_key_hashes_api_keys() -> None:
    key = client_key("sk-secret-123", "10.0.0.1")
    assert key == "key:" + hashlib.sha256(b"sk-secret-123").hexdigest()[:16]
    assert "sk-secret" not in key
    assert client_key("sk-secret-123", None) == key  # the address does not matter with a key
    assert client_key("sk-secret-124", "10.0.0.1") != key


@pytest.mark.parametrize(
    ("api_key", "address", "expected"),
    [
        pytest.param(None, "10.0.0.1", "addr:10.0.0.1", id="ipv4"),
        pytest.param(None, "::1", "addr:::1", id="ipv6"),
        pytest.param("", "10.0.0.1", "addr:10.0.0.1", id="empty-key-is-no-key"),
        pytest.param(None, None, "addr:unknown", id="no-address"),
        pytest.param(None, "", "addr:unknown", id="empty-address"),
    ],
)
def test_client_key_falls_back_to_the_address(api_key: str | None, address: str | None, expected: str) -> None:
    assert client_key(api_key, address) == expected


def test_client_key_accepts_any_string() -> None:
    assert client_key("caf\xe9\udcff", None).startswith("key:")  # undecodable header bytes


# --- token budget -----------------------------------------------------------


def test_token_budget_refuses_what_it_cannot_cover_then_refills() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, tpm=600)  # 10 tokens per second
    assert limiter.check_tokens(A, 400).allowed

    verdict = limiter.check_tokens(A, 300)
    assert (verdict.allowed, verdict.reason) == (False, LimitReason.TOKENS)
    assert verdict.retry_after_seconds == pytest.approx(10.0)  # 100 tokens short at 10/s
    assert verdict.retry_after_header() == "10"
    assert limiter.check_tokens(A, 200).allowed  # the refusal reserved nothing

    clock.advance(30.0)
    assert limiter.check_tokens(A, 300).allowed


def test_record_tokens_gives_back_an_overestimate() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, tpm=600)
    assert limiter.check_tokens(A, 400).allowed
    limiter.record_tokens(A, 100, reserved_tokens=400)
    assert limiter.check_tokens(A, 500).allowed  # 600 - 100
    assert not limiter.check_tokens(A, 1).allowed


def test_refunds_never_fill_past_the_budget() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, tpm=600)
    limiter.record_tokens(A, 0, reserved_tokens=5000)  # released more than was ever taken
    assert limiter.check_tokens(A, 600).allowed
    assert not limiter.check_tokens(A, 1).allowed


def test_usage_beyond_the_estimate_is_debt_that_delays_later_requests() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=100.0, burst=100, tpm=600)
    assert limiter.check_request(A, estimated_tokens=100).allowed
    limiter.record_tokens(A, 1000, reserved_tokens=100)  # budget now at 600 - 1000 = -400

    in_debt = limiter.check_tokens(A, 0)
    assert (in_debt.allowed, in_debt.reason) == (False, LimitReason.TOKENS)
    assert in_debt.retry_after_seconds == pytest.approx(40.0)

    verdict = limiter.check_request(A, estimated_tokens=100)
    assert (verdict.allowed, verdict.reason) == (False, LimitReason.TOKENS)
    assert verdict.retry_after_seconds == pytest.approx(50.0)
    clock.advance(49.9)
    assert not limiter.check_request(A, estimated_tokens=100).allowed
    clock.advance(0.1)
    assert limiter.check_request(A, estimated_tokens=100).allowed


def test_an_estimate_larger_than_the_whole_budget_is_too_large() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, tpm=600)
    verdict = limiter.check_tokens(A, 601)
    assert (verdict.allowed, verdict.reason, verdict.retry_after_seconds) == (False, LimitReason.TOO_LARGE, 0.0)
    assert not verdict.retryable

    too_large = limiter.check_request(A, estimated_tokens=601)
    assert too_large.reason is LimitReason.TOO_LARGE
    assert limiter.check_request(A, estimated_tokens=600).allowed  # exactly the budget fits, slot unused


def test_too_large_wins_over_an_exhausted_request_rate() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, tpm=600)
    assert limiter.check_request(A).allowed
    assert limiter.check_request(A, estimated_tokens=10_000).reason is LimitReason.TOO_LARGE


def test_a_request_refused_for_tokens_keeps_its_request_slot() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, tpm=600)
    assert limiter.check_tokens(A, 600).allowed
    assert limiter.check_request(A, estimated_tokens=10).reason is LimitReason.TOKENS
    assert limiter.check_request(A).allowed


def test_a_request_refused_for_rate_reserves_no_tokens() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, tpm=600)
    assert limiter.check_request(A).allowed
    assert limiter.check_request(A, estimated_tokens=600).reason is LimitReason.REQUESTS
    assert limiter.check_tokens(A, 600).allowed


@pytest.mark.parametrize(
    ("reserved", "reason", "wait"),
    [
        pytest.param(0, LimitReason.REQUESTS, 0.5, id="rate-only"),
        pytest.param(590, LimitReason.REQUESTS, 0.5, id="rate-wait-longer"),
        pytest.param(600, LimitReason.TOKENS, 1.0, id="token-wait-longer"),
    ],
)
def test_the_longer_wait_decides_reason_and_retry_after(reserved: int, reason: LimitReason, wait: float) -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=1, tpm=600)
    assert limiter.check_request(A, estimated_tokens=reserved).allowed
    verdict = limiter.check_request(A, estimated_tokens=10)  # 10 tokens take 1 s to refill
    assert verdict.reason is reason
    assert verdict.retry_after_seconds == pytest.approx(wait)


@pytest.mark.parametrize(
    ("spent", "tokens"),
    [
        pytest.param(0, None, id="fresh"),
        pytest.param(1, None, id="one-request-left"),
        pytest.param(2, None, id="rate-spent"),
        pytest.param(1, 500, id="tokens-fit"),
        pytest.param(1, 595, id="tokens-short"),
        pytest.param(2, 10, id="both-short"),
        pytest.param(0, 601, id="too-large"),
        pytest.param(0, 0, id="zero-tokens"),
    ],
)
def test_a_peek_gives_the_verdict_of_a_check_and_charges_nothing(spent: int, tokens: int | None) -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=2, tpm=600)
    for _ in range(spent):
        assert limiter.check_request(A, estimated_tokens=5).allowed
    peeks = [limiter.peek_request(A, estimated_tokens=tokens) for _ in range(3)]
    assert peeks[0] == peeks[1] == peeks[2]  # nothing was charged between them
    assert limiter.check_request(A, estimated_tokens=tokens) == peeks[0]


def test_a_peek_with_a_lower_bound_never_refuses_what_the_body_would_pass() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=2.0, burst=1, tpm=600)
    assert limiter.check_request(A, estimated_tokens=600).allowed  # the budget is spent
    assert limiter.peek_request(A, estimated_tokens=0).reason is LimitReason.REQUESTS
    clock.advance(0.5)  # a request slot is back, and 5 of the 600 tokens
    assert limiter.peek_request(A, estimated_tokens=0).allowed  # a 0-token body would pass
    assert limiter.check_request(A, estimated_tokens=10).reason is LimitReason.TOKENS


def test_without_a_token_budget_tokens_are_never_limited() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, tpm=None)
    assert limiter.check_tokens(A, 10**9).allowed
    limiter.record_tokens(A, 10**9, reserved_tokens=0)
    assert limiter.check_request(A, estimated_tokens=10**9).allowed


@pytest.mark.parametrize("tokens", [-1, 1.5, True])
def test_token_counts_must_be_non_negative_ints(tokens: object) -> None:
    limiter = make_limiter(FakeClock(), tpm=600)
    with pytest.raises(ValueError, match="tokens"):
        limiter.check_tokens(A, tokens)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        limiter.check_request(A, estimated_tokens=tokens)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        limiter.record_tokens(A, tokens, reserved_tokens=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        limiter.record_tokens(A, 0, reserved_tokens=tokens)  # type: ignore[arg-type]


# --- eviction ---------------------------------------------------------------


def test_idle_full_buckets_are_swept_and_come_back_full() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=1.0, burst=2, idle_seconds=10.0)
    assert allowed_now(limiter, A) == 2
    clock.advance(5.0)
    limiter.check_request(B)
    assert limiter.live_buckets == 2

    clock.advance(5.0)  # A idle for 10 s and full again; first sweep is due
    limiter.check_request(C)
    assert limiter.live_buckets == 2  # A gone; B (used 5 s ago) and C stay
    assert allowed_now(limiter, A) == 2  # same as if it had been kept


def test_the_sweep_runs_at_most_once_per_idle_interval() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, idle_seconds=10.0)
    limiter.check_request(A)  # the first sweep is due at +10 s
    clock.advance(10.0)
    limiter.check_request(B)  # sweeps: A goes; the next sweep is due at +20 s
    assert limiter.live_buckets == 1
    clock.advance(10.0)
    limiter.check_request(C)  # sweeps: B goes
    assert limiter.live_buckets == 1
    clock.advance(9.0)
    limiter.check_request(D)  # C idle for 9 s, and no sweep due anyway
    assert limiter.live_buckets == 2


def test_recently_used_or_indebted_buckets_are_kept() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, tpm=600, idle_seconds=10.0)
    limiter.record_tokens(A, 1200, reserved_tokens=0)  # 600 tokens of debt: full again in 120 s
    limiter.check_request(B)
    clock.advance(11.0)
    limiter.check_request(B)
    assert limiter.evict_idle() == 0
    assert limiter.live_buckets == 2

    clock.advance(110.0)  # A's budget is full again
    assert limiter.evict_idle() == 2  # B went idle too
    assert limiter.live_buckets == 0


def test_the_client_cap_evicts_the_least_recently_used() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, max_clients=3)
    for key in (A, B, C):
        assert limiter.check_request(key).allowed  # each now has an empty bucket
    assert not limiter.check_request(A).allowed  # A becomes the most recently used
    limiter.check_request(D)
    assert limiter.live_buckets == 3
    assert limiter.check_request(B).allowed  # B was dropped: it starts over with a full bucket
    assert not limiter.check_request(A).allowed  # A was kept


def test_100k_clients_stay_within_the_cap() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, max_clients=1000, idle_seconds=3600.0)
    peak = 0
    for i in range(100_000):
        assert limiter.check_request(f"addr:10.{i >> 16}.{(i >> 8) & 255}.{i & 255}").allowed
        peak = max(peak, limiter.live_buckets)
    assert peak == 1000
    assert limiter.live_buckets == 1000


def test_100k_clients_stay_bounded_by_idle_eviction_alone() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=1.0, burst=1, max_clients=10**9, idle_seconds=10.0)
    peak = 0
    for i in range(100_000):  # one new client per millisecond for 100 s
        clock.now = 1000.0 + i * 0.001
        limiter.check_request(client_key(f"sk-{i}", None))
        peak = max(peak, limiter.live_buckets)
    # Sweeps every 10 s keep only the last 10 s of clients, so at most ~20 s of them.
    assert peak <= 20_001
    assert limiter.live_buckets <= 20_001


# --- float drift ------------------------------------------------------------


def test_a_million_small_steps_admit_exactly_the_rate() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, rps=1000.0, burst=1)
    allowed = 0
    for _ in range(1_000_000):  # 100 s in steps of 0.1 ms: one request per 10 steps fits
        allowed += limiter.check_request(A).allowed
        clock.advance(0.0001)
    assert allowed == 100_000


def test_a_drained_budget_paid_back_in_small_steps_never_drifts() -> None:
    clock = FakeClock(0.0)
    limiter = make_limiter(clock, rps=1e9, burst=10, tpm=6000)  # 100 tokens per second
    assert limiter.check_tokens(A, 6000).allowed
    for _ in range(200_000):  # each 0.01 s refills exactly the 1 token taken
        clock.advance(0.01)
        verdict = limiter.check_request(A, estimated_tokens=1)
        assert verdict.allowed, verdict
    assert not limiter.check_tokens(A, 1).allowed


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rps", "burst", "tpm"),
    [
        pytest.param(0.0, 1, None, id="zero-rate"),
        pytest.param(-1.0, 1, None, id="negative-rate"),
        pytest.param(float("inf"), 1, None, id="infinite-rate"),
        pytest.param(float("nan"), 1, None, id="nan-rate"),
        pytest.param(1.0, 0, None, id="zero-burst"),
        pytest.param(1.0, 1.5, None, id="fractional-burst"),
        pytest.param(1.0, 1, 0, id="zero-budget"),
        pytest.param(1.0, 1, True, id="bool-budget"),
    ],
)
def test_invalid_limits_are_refused(rps: float, burst: int, tpm: int | None) -> None:
    with pytest.raises(ValueError, match="must be"):
        ClientLimits(requests_per_second=rps, burst=burst, tokens_per_minute=tpm)


@pytest.mark.parametrize(
    ("idle_seconds", "max_clients"),
    [
        pytest.param(0.0, 10, id="zero-idle"),
        pytest.param(float("inf"), 10, id="infinite-idle"),
        pytest.param(10.0, 0, id="zero-cap"),
    ],
)
def test_invalid_limiter_settings_are_refused(idle_seconds: float, max_clients: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_limiter(FakeClock(), idle_seconds=idle_seconds, max_clients=max_clients)

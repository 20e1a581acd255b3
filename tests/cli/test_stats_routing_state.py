"""`octoroute stats` shows why traffic goes where it goes: each endpoint's requests in
flight here and in other gateways against its slots, its context window and who said
it, whether it is out of rotation (cooldown left and until when, refused credentials,
how often the upstream said 429 or busy), and the requests the gateway refused itself.
Both layouts: the full tables on a wide terminal, the compact ones at 80 columns."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from rich.console import Console
from tests.cli.test_stats import ANSI, SAMPLE, URL, _dumps
from tests.cli.test_stats_narrow import words

from octoroute.cli.stats import parse_snapshot
from octoroute.cli.stats_view import render_view

NOW = SAMPLE["time"]
UNTIL = NOW + 28.4


def routing_sample() -> dict[str, Any]:
    sample = copy.deepcopy(SAMPLE)
    sample["endpoints"][0] |= {
        "in_flight": 1,
        "inflight_elsewhere": 3,
        "max_concurrency": 4,
        "context": {"window": 32768, "source": "discovered", "told_by": "llama_props", "total_slots": 4},
        "cooldown_seconds": 0.0,
        "cooldown_until": None,
        "cooldowns": {"rate_limited": 0, "busy": 0},
        "credentials_refused": False,
    }
    sample["endpoints"][1] |= {
        "in_flight": 0,
        "inflight_elsewhere": 2,
        "max_concurrency": None,
        "context": {"window": 2048, "source": "discovered", "told_by": "overflow_error", "total_slots": None},
        "cooldown_seconds": 28.4,
        "cooldown_until": UNTIL,
        "cooldowns": {"rate_limited": 3, "busy": 1},
        "credentials_refused": True,
    }
    sample["refusals"] = {
        "total": 7,
        "by_reason": {
            "rate_limit_requests": 4,
            "rate_limit_tokens": 0,
            "rate_limit_too_large": 0,
            "auth_unauthenticated": 2,
            "auth_forbidden": 0,
            "auth_budget": 0,
            "queue_full": 1,
            "queue_timeout": 0,
            "context_rejected": 0,
        },
    }
    return sample


def render(width: int, snapshot: dict[str, Any]) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(render_view(parse_snapshot(URL, _dumps(snapshot)), URL))
    return ANSI.sub("", console.export_text())


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def test_the_full_table_has_in_flight_context_and_rotation_columns() -> None:
    text = render(220, routing_sample())
    assert max(len(line) for line in text.splitlines()) <= 220
    flat = words(text)
    header = re.search(r"endpoint group model health attempts errors p50 p90 in flight context out of rotation", flat)
    assert header, flat
    # one row per endpoint: 1 here, 3 in other gateways, 4 slots; the window and who said it
    assert re.search(r"fast/qwen fast qwen2\.5:3b healthy 50 2 11\.0 ms 30\.0 ms 1 \+3 / 4 32768 – timeout", flat), flat
    assert re.search(r"balanced/llama balanced llama3\.1:8b unhealthy 9 5 – – 0 \+2 2048 28s until", flat), flat
    assert f"28s until {clock(UNTIL)}" in flat
    assert "llama_props" in flat
    assert "overflow_error" in flat
    assert "credentials refused" in flat
    assert "429×3 busy×1" in flat
    assert "in flight: this gateway +other gateways (least-busy counts them) / slots" in flat


@pytest.mark.parametrize("width", [80, 72])
def test_the_compact_layout_has_a_table_of_its_own_for_them(width: int) -> None:
    text = render(width, routing_sample())
    assert max(len(line) for line in text.splitlines()) <= width
    flat = words(text)
    assert "load, context, rotation endpoint in flight context out of rotation" in flat, flat
    assert re.search(r"fast/qwen 1 \+3 / 4 32768 llama_props –", flat), flat
    assert re.search(rf"balanced/llama 0 \+2 2048 overflow_error 28s until {clock(UNTIL)}", flat), flat
    assert "credentials refused" in flat
    assert "429×3 busy×1" in flat
    # the main endpoints table keeps every column whole (nothing squeezed to '…')
    assert re.search(r"fast/qwen healthy 50 2 11\.0 ms 30\.0 ms", flat), flat


@pytest.mark.parametrize("width", [80, 220])
def test_requests_the_gateway_refused_are_listed_by_reason(width: int) -> None:
    flat = words(render(width, routing_sample()))
    assert re.search(r"refused 7 rate limit: requests 4 auth: no valid key 2 slots: line full 1", flat), flat
    for never in ("rate limit: tokens", "auth: budget spent", "context: too large"):
        assert never not in flat


def test_nothing_refused_is_a_zero() -> None:
    sample = routing_sample()
    sample["refusals"] = {"total": 0, "by_reason": dict.fromkeys(sample["refusals"]["by_reason"], 0)}
    flat = words(render(80, sample))
    assert re.search(r"refused 0", flat), flat
    assert "rate limit:" not in flat


def test_an_older_gateway_without_these_fields_shows_no_empty_columns() -> None:
    for width in (80, 220):
        flat = words(render(width, copy.deepcopy(SAMPLE)))
        assert "in flight" not in flat
        assert "out of rotation" not in flat
        assert "refused" not in flat


@pytest.mark.parametrize("width", [80, 220])
def test_sibling_workers_are_counted_once_other_gateways_after_the_plus(width: int) -> None:
    """With `--workers 2`, `in_flight` sums both workers and `inflight_elsewhere` (what the
    answering worker's least-busy adds) holds its sibling's requests again: the view adds
    only `inflight_replicas`, the other gateways' share."""
    sample = routing_sample()
    sample["endpoints"][0] |= {"in_flight": 3, "inflight_elsewhere": 2, "inflight_replicas": 0}
    sample["endpoints"][1] |= {"in_flight": 2, "inflight_elsewhere": 5, "inflight_replicas": 4}
    flat = words(render(width, sample))
    assert re.search(r"fast/qwen .*?3 / 4 32768", flat), flat
    assert "+2" not in flat, flat
    assert re.search(r"balanced/llama .*?2 \+4 2048", flat), flat
    assert "+5" not in flat, flat

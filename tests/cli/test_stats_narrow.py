"""`octoroute stats` at 80 columns: no zero-width column, every header and value readable."""

from __future__ import annotations

import copy
import re

import pytest
from rich.console import Console
from tests.cli.test_stats import ANSI, SAMPLE, URL, _dumps

from octoroute.cli.stats import parse_snapshot
from octoroute.cli.stats_view import render_view

NARROW_HEADERS = (
    "endpoint",
    "health",
    "attempts",
    "errors",
    "p50",
    "p90",
    "last error",
    "time",
    "tier",
    "status",
    "latency",
    "strategy: reason",
)
WIDE_HEADERS = (
    "endpoint",
    "group",
    "model",
    "health",
    "attempts",
    "errors",
    "p50",
    "p90",
    "last error",
    "request",
    "strategy",
    "reason",
    "status",
    "latency",
)


def render(width: int, snapshot: dict[str, object] = SAMPLE) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(render_view(parse_snapshot(URL, _dumps(snapshot)), URL))
    return ANSI.sub("", console.export_text())


def words(text: str) -> str:
    """The rendered text with line breaks and borders flattened to single spaces."""
    return " ".join(re.sub(r"[│┃┏┓┗┛━─┡┩└┘┌┐╇╈┳┻┼┃]", " ", text).split())


@pytest.mark.parametrize("width", [80, 72])
def test_every_header_and_value_is_readable_at_80_columns(width: int) -> None:
    text = render(width)
    assert max(len(line) for line in text.splitlines()) <= width
    flat = words(text)
    for header in NARROW_HEADERS:
        assert header in flat, header
    for value in (
        "fast/qwen",
        "balanced/llama",
        "fast · qwen2.5:3b",
        "balanced · llama3.1:8b",
        "healthy",
        "unhealthy",
        "11.0 ms",
        "30.0 ms",
        "41.7 ms",
        "200",
    ):
        assert value in flat, value
    assert re.search(r"fast/qwen\s+healthy\s+50\s+2\s+11\.0 ms\s+30\.0 ms", flat)
    assert re.search(r"balanced/llama\s+unhealthy\s+9\s+5\s+–\s+–", flat)
    assert "timeout: no first byte within 5s (32s ago)" in flat
    assert "http_5xx: upstream said 503" in flat
    assert re.search(r"fast\s+fast/qwen\s+200\s+41\.7 ms\s+rule: rule_casual_short", flat)
    for summary in ("tier mix", "routing", "latency (recent)", "retries / errors", "120 requests"):
        assert summary in flat


def test_no_column_collapses_to_nothing_at_80_columns() -> None:
    """A zero-width column shows as a header reduced to '…' or to nothing between two borders."""
    text = render(80)
    assert "…" not in text.replace("fell back", "")
    assert not re.search(r"│\s?│", text)


def test_long_values_stay_within_80_columns() -> None:
    snapshot = copy.deepcopy(SAMPLE)
    snapshot["endpoints"][0]["id"] = "fast/" + "x" * 60
    snapshot["decisions"][0]["reason"] = "a long reason " * 10
    text = render(80, snapshot)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "a long reason a long reason" in words(text)


def test_a_wide_terminal_keeps_the_full_tables() -> None:
    flat = words(render(200))
    for header in WIDE_HEADERS:
        assert header in flat, header
    assert "req-000" in flat


USAGE = {
    "currency": "USD",
    "rows": [
        {
            "client": "a-rather-long-client-key-name",
            "group": "deep",
            "endpoint": "deep/a-very-long-model-name:70b-q4",
            "requests": 123456,
            "unreported": 7,
            "input_tokens": 987654321,
            "output_tokens": 123456789,
            "cost": "4814.814804",
        },
        {
            "client": "ci",
            "group": "fast",
            "endpoint": "fast-1",
            "requests": 3,
            "unreported": 0,
            "input_tokens": 30,
            "output_tokens": 12,
            "cost": None,
        },
    ],
    "total": {
        "requests": 123459,
        "unreported": 7,
        "input_tokens": 987654351,
        "output_tokens": 123456801,
        "cost": "4814.814804",
    },
}


@pytest.mark.parametrize("width", [80, 200])
def test_the_usage_table_keeps_every_number_whole_at_any_width(width: int) -> None:
    text = render(width, copy.deepcopy(SAMPLE) | {"usage": USAGE})
    assert max(len(line) for line in text.splitlines()) <= width
    flat = words(text)
    assert "usage by client (cost in USD)" in flat
    # numbers and costs are never cut or rounded, whatever the width; names may be
    assert re.search(r"123456 7 987654321 123456789 4814\.814804", flat), flat
    assert re.search(r"ci fast(?:-1| fast-1) 3 0 30 12 –", flat), flat
    assert re.search(r"total 123459 7 987654351 123456801 4814\.814804", flat), flat


def test_no_usage_table_before_any_request_was_served() -> None:
    empty = {"currency": "USD", "rows": [], "total": dict.fromkeys(USAGE["total"], 0) | {"cost": None}}  # type: ignore[arg-type]
    assert "usage by client" not in render(80, copy.deepcopy(SAMPLE) | {"usage": empty})

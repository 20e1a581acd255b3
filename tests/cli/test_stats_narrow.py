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

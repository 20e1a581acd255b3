"""`octoroute stats` with shadow mode: agreement and the candidate's tier mix next to
the live one, readable at 80 columns, and nothing about shadow mode when it is off."""

from __future__ import annotations

import copy
import re
from typing import Any

from rich.console import Console
from tests.cli.test_stats import SAMPLE, URL, _fleet, octoroute_stats, plain
from tests.integration.test_shadow import HARD_HI, HI, WordModel

from octoroute.cli.stats import parse_snapshot
from octoroute.cli.stats_view import render_view

SHADOW = {
    "strategy": "learned",
    "live_strategy": "rule",
    "allow_judge": False,
    "sample": 1.0,
    "decisions": 8,
    "agreed": 6,
    "agreement": 0.75,
    "live_by_tier": {"fast": 6, "balanced": 0, "deep": 2},
    "shadow_by_tier": {"fast": 4, "balanced": 2, "deep": 2},
    "confusion": {
        "fast": {"fast": 4, "balanced": 2, "deep": 0},
        "balanced": {"fast": 0, "balanced": 0, "deep": 0},
        "deep": {"fast": 0, "balanced": 0, "deep": 2},
    },
    "pending": 0,
    "dropped": 0,
}


def rendered(snapshot: dict[str, Any], width: int) -> str:
    console = Console(record=True, width=width)
    console.print(render_view(parse_snapshot(URL, orjson_dumps(snapshot)), URL))
    return plain(console.export_text())


def orjson_dumps(data: object) -> bytes:
    import orjson

    return orjson.dumps(data)


def test_the_view_shows_agreement_and_both_tier_mixes_at_80_columns():
    snapshot = copy.deepcopy(SAMPLE) | {"shadow": SHADOW}
    out = rendered(snapshot, 80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "shadow: learned vs rule" in out
    assert re.search(r"agree\s+75%\s+6/8", out), out
    assert re.search(r"fast\s+6 75%\s+4 50%", out), out
    assert re.search(r"balanced\s+0 0%\s+2 25%", out), out
    assert re.search(r"deep\s+2 25%\s+2 25%", out), out
    assert "pending" not in out  # offline candidate: nothing can be pending or dropped


def test_a_judge_candidate_shows_pending_and_dropped():
    snapshot = copy.deepcopy(SAMPLE) | {"shadow": {**SHADOW, "strategy": "llm", "allow_judge": True, "dropped": 3}}
    out = rendered(snapshot, 80)
    assert "shadow: llm vs rule" in out
    assert re.search(r"pending\s+0", out), out
    assert re.search(r"dropped\s+3", out), out


def test_nothing_about_shadow_mode_when_it_is_off():
    for snapshot in (copy.deepcopy(SAMPLE) | {"shadow": None}, copy.deepcopy(SAMPLE)):
        out = rendered(snapshot, 80)
        assert "shadow" not in out
        assert "agree" not in out


def test_before_any_decision_agreement_is_a_dash():
    empty = {**SHADOW, "decisions": 0, "agreed": 0, "agreement": None}
    empty |= {
        "live_by_tier": dict.fromkeys(SHADOW["live_by_tier"], 0),
        "shadow_by_tier": dict.fromkeys(SHADOW["live_by_tier"], 0),
    }
    out = rendered(copy.deepcopy(SAMPLE) | {"shadow": empty}, 80)
    assert re.search(r"agree\s+–\s+0/0", out), out


def test_stats_once_shows_shadow_mode_of_a_live_gateway(upstreams, gateway, sdk_clients):
    config = _fleet(upstreams, routing={"strategy": "rule", "shadow": {"strategy": "learned"}})
    gw = gateway(config, score_model=WordModel())
    client = sdk_clients.openai(gw)
    for messages in (HI, HI, HARD_HI):  # rule: fast each time; the candidate: fast, fast, deep
        client.chat.completions.create(model="auto", messages=messages)
    result = octoroute_stats("--url", gw.url, "--once", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    out = plain(result.stdout)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert re.search(r"shadow: learned\s+\(test\.words\) vs rule", out), out
    assert re.search(r"agree\s+67%\s+2/3", out), out
    assert re.search(r"fast\s+3 100%\s+2 67%", out), out
    assert re.search(r"deep\s+0 0%\s+1 33%", out), out

    off = gateway(_fleet(upstreams))
    sdk_clients.openai(off).chat.completions.create(model="auto", messages=HI)
    result = octoroute_stats("--url", off.url, "--once", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "shadow" not in plain(result.stdout)


def test_two_models_of_one_strategy_are_named_by_role_and_version():
    learned = copy.deepcopy(SHADOW) | {
        "live_strategy": "learned",
        "model": "trained-3f2a",
        "live_model": "2026-12-07.6",
    }
    out = rendered(copy.deepcopy(SAMPLE) | {"shadow": learned}, 100)
    for fragment in ("shadow: learned", "(trained-3f2a) vs learned", "(2026-12-07.6)"):  # the title wraps
        assert fragment in out, out
    assert re.search(r"tier\s+live\s+shadow", out), out

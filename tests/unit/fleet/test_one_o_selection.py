"""Weighted selection as octoroute 1.0's selector tests check it: every config its
tests build (read from `<repo>/../shared/seeds/` at test time), sampled as many
times as they sample, with their chi-square threshold and ranges. Seeded: the
same draws every run; a selector that ignored weights fails."""

from __future__ import annotations

import random
import re
import textwrap
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.fleet.selector import GroupSelector

SEED = Path(__file__).resolve().parents[3].parent / "shared" / "seeds" / "001_faa9e179334a8b5b.txt"
CHI_SQUARED_THRESHOLD = 10.0  # 1.0's own: lenient against 3.841 (1 dof, alpha 0.05)


def one_o_tests() -> list[tuple[str, str, int]]:
    """(test name, its TOML config, how many selections it samples) for each 1.0 test
    whose config has only positive weights (the others test configs 1.0 rejects)."""
    text = SEED.read_text(encoding="utf-8")
    out = []
    for match in re.finditer(r"async fn (test_\w+)\(\) \{(.*?)(?=\n#\[tokio::test\]|\Z)", text, re.S):
        name, body = match.groups()
        config = re.search(r'r#"(.*?)"#', body, re.S)
        if config is None or re.search(r"weight = (0\.0|-)", config.group(1)):
            continue
        sizes = re.findall(r"for _ in 0\.\.(\d[\d_]*)", body) + re.findall(r"SAMPLE_SIZE: usize = ([\d_]+)", body)
        out.append((name, textwrap.dedent(config.group(1)), int(sizes[-1].replace("_", ""))))
    return out


def test_the_seed_has_the_tests() -> None:
    names = [name for name, _, _ in one_o_tests()]
    assert "test_weighted_selection_statistical_validation" in names
    assert "test_weighted_selection_distribution" in names
    assert len(names) >= 4  # the equal-weight tests build their config in a helper; the rest are here


@pytest.mark.parametrize(("name", "toml", "samples"), one_o_tests(), ids=[t[0] for t in one_o_tests()])
def test_selection_follows_weights_as_one_o_tests_it(name: str, toml: str, samples: int) -> None:
    config = parse_config(tomllib.loads(toml), env={})
    fast = build_topology(config, env={}).groups["fast"].endpoints
    top = max(ep.priority for ep in fast)
    level = [ep for ep in fast if ep.priority == top]
    selector = GroupSelector(fast)
    rng = random.Random(1)
    counts = Counter(selector.pick(healthy=lambda _id: True, rng=rng).name for _ in range(samples))  # type: ignore[union-attr]
    total_weight = sum(ep.weight for ep in level)
    assert set(counts) == {ep.name for ep in level}  # every endpoint selectable, lower priorities never
    chi_squared = 0.0
    for ep in level:
        expected = samples * ep.weight / total_weight
        chi_squared += (counts[ep.name] - expected) ** 2 / expected
        assert abs(counts[ep.name] - expected) <= 0.1 * samples, (ep.name, counts)  # 1.0's +-10% bands
    assert chi_squared < CHI_SQUARED_THRESHOLD, (chi_squared, counts)
    if name == "test_weighted_selection_statistical_validation":
        assert 2_000 <= counts["fast-light"] <= 3_000
        assert 7_000 <= counts["fast-heavy"] <= 8_000


def test_a_selector_ignoring_weights_would_fail() -> None:
    """The chi-square check has teeth: uniform draws against 1:3 weights fail it."""
    samples, light = 10_000, 5_000
    chi_squared = (light - 2_500) ** 2 / 2_500 + (samples - light - 7_500) ** 2 / 7_500
    assert chi_squared > CHI_SQUARED_THRESHOLD

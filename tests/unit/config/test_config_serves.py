"""`[groups.X] serves`, `kind = "ollama"` and `fim`: defaults and every problem at once."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import ConfigError
from octoroute.core.types import Fim, Operation

DOC = Path(__file__).resolve().parents[3] / "docs" / "api-embeddings-completions.md"


def ep(**extra):
    return {"name": "m", "base_url": "http://localhost:1/v1", **extra}


def test_defaults() -> None:
    topology = build_topology(
        parse_config({"models": {"fast": [ep(), ep(kind="ollama", id="o"), ep(fim="infill", id="l")]}}, {}), {}
    )
    assert topology.groups["fast"].options.serves == (Operation.CHAT, Operation.COMPLETIONS)
    assert [e.fim for e in topology.groups["fast"].endpoints] == [Fim.NONE, Fim.SUFFIX, Fim.INFILL]


def test_problems_are_reported_with_their_key_paths() -> None:
    data = {
        "models": {
            "fast": [ep()],
            "claude": [ep(kind="anthropic", fim="suffix")],
        },
        "groups": {"fast": {"serves": ["embeddings"]}, "claude": {"serves": ["chat", "embeddings"]}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith("groups.fast.serves: 'fast' is a tier that chat 'auto' routing picks") for p in found)
    assert (
        "groups.claude.serves: 'claude' has only kind = \"anthropic\" endpoints, which cannot serve embeddings" in found
    )
    assert 'models.claude[0].fim: a kind = "anthropic" endpoint has no completions API' in found


@pytest.mark.parametrize("serves", [[], ["chat", "speech"]])
def test_serves_values_are_checked(serves: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"models": {"fast": [ep()], "x": [ep()]}, "groups": {"x": {"serves": serves}}}, {})
    assert any(str(p).startswith("groups.x.serves") for p in info.value.problems)


def test_the_documented_config_passes_check() -> None:
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None
    topology = build_topology(parse_config(tomllib.loads(block.group(1)), {}), {})
    assert topology.groups["embed"].options.serves == (Operation.EMBEDDINGS,)
    assert topology.endpoints["coder/qwen2.5-coder-1.5b"].fim is Fim.INFILL

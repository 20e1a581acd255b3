"""The README's minimal config passes `check` with no environment variable set."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from octoroute.config import build_topology, parse_config

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_minimal_config_passes_check_without_env() -> None:
    text = README.read_text(encoding="utf-8")
    after = text.split("A minimal config (`octoroute.toml`):", 1)[1]
    block = re.search(r"```toml\n(.*?)```", after, re.S)
    assert block is not None
    config = parse_config(tomllib.loads(block.group(1)), env={})
    topology = build_topology(config, env={})
    assert set(topology.groups) == {"fast", "balanced", "deep"}

"""`octoroute init`'s tiers by size and the config text it writes (pure)."""

from __future__ import annotations

import tomllib

import pytest

from octoroute.cli.init import render_config, tier_of
from octoroute.config.loader import parse_config
from octoroute.core.types import Tier
from octoroute.upstream.scan import FoundModel, FoundServer


@pytest.mark.parametrize(
    ("parameters", "size_bytes", "tier"),
    [
        (0.5e9, None, Tier.FAST),
        (3.99e9, 40 * 10**9, Tier.FAST),  # a parameter count wins over the size on disk
        (4e9, None, Tier.BALANCED),
        (14e9, None, Tier.BALANCED),
        (20e9, None, Tier.DEEP),
        (70e9, None, Tier.DEEP),
        (None, 2 * 10**9, Tier.FAST),
        (None, 5 * 10**9, Tier.BALANCED),
        (None, 12 * 10**9, Tier.DEEP),
        (None, None, Tier.BALANCED),
    ],
)
def test_tier_by_size(parameters, size_bytes, tier):
    assert tier_of(FoundModel("m", parameters, size_bytes, None)) is tier


def test_the_config_is_valid_toml_and_a_valid_config_with_odd_names_quoted():
    server = FoundServer(
        8080,
        "llama.cpp",
        (FoundModel('we"ird\\name', 1e9, None, None), FoundModel("bge-embed", 1e8, None, None)),
    )
    text = render_config([server])
    data = tomllib.loads(text)
    assert data["models"] == {"fast": [{"name": 'we"ird\\name', "base_url": "http://127.0.0.1:8080/v1"}]}
    parse_config(data, {})
    assert "# not configured (an embedding model): bge-embed" in text

"""Which endpoints serve an operation, and `auto` for embeddings and completions."""

from __future__ import annotations

import pytest

from octoroute.config import build_topology, parse_config
from octoroute.core.types import Operation
from octoroute.fleet.operations import Ask, able_endpoints, group_for_auto, unable_reason


def ep(name: str, **extra):
    return {"name": name, "base_url": "http://127.0.0.1:1/v1", "id": name, **extra}


TOPOLOGY = build_topology(
    parse_config(
        {
            "models": {
                "fast": [ep("chat-openai"), ep("chat-claude", kind="anthropic")],
                "embed": [ep("emb-openai"), ep("emb-ollama", kind="ollama")],
                "coder": [ep("plain"), ep("vllm", fim="suffix"), ep("llama", fim="infill"), ep("olla", kind="ollama")],
            },
            "groups": {"embed": {"serves": ["embeddings"]}, "coder": {"serves": ["completions"]}},
        },
        {},
    ),
    {},
)
GROUPS = TOPOLOGY.groups.values()


@pytest.mark.parametrize(
    ("ask", "able"),
    [
        (Ask(), {"chat-openai", "chat-claude", "emb-openai", "emb-ollama"} - {"emb-openai", "emb-ollama"}),
        (Ask(Operation.EMBEDDINGS), {"emb-openai", "emb-ollama"}),
        (Ask(Operation.EMBEDDINGS, token_ids=True), {"emb-openai"}),
        (Ask(Operation.COMPLETIONS), {"chat-openai", "plain", "vllm", "llama", "olla"}),
        (Ask(Operation.COMPLETIONS, fim=True), {"vllm", "llama", "olla"}),
        (Ask(Operation.COMPLETIONS, fim=True, token_ids=True), {"vllm", "olla"}),
    ],
)
def test_able_endpoints(ask: Ask, able: set[str]) -> None:
    assert able_endpoints(GROUPS, ask) == able


def test_auto_prefers_the_default_tier_then_config_order() -> None:
    groups = TOPOLOGY.groups
    assert group_for_auto(groups, "fast", able_endpoints(GROUPS, Ask(Operation.COMPLETIONS))) == "fast"
    assert group_for_auto(groups, "fast", able_endpoints(GROUPS, Ask(Operation.COMPLETIONS, fim=True))) == "coder"
    assert group_for_auto(groups, "balanced", able_endpoints(GROUPS, Ask(Operation.EMBEDDINGS))) == "embed"
    assert group_for_auto(groups, "fast", frozenset()) is None


def test_unable_reasons_name_what_is_missing() -> None:
    assert unable_reason(Ask(Operation.EMBEDDINGS)) == "serves embeddings"
    assert "token-id input" in unable_reason(Ask(Operation.EMBEDDINGS, token_ids=True))
    assert "fill-in-the-middle" in unable_reason(Ask(Operation.COMPLETIONS, fim=True))
    assert unable_reason(Ask()) == "serves chat"

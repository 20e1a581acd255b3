"""`RoutingDecision.path`: the strategy as octoroute 1.0 counts it."""

from __future__ import annotations

import pytest

from octoroute.core.types import RouteReason, RoutingDecision, Strategy


@pytest.mark.parametrize(
    ("strategy", "reason", "path"),
    [
        (Strategy.HYBRID, RouteReason.RULE_CASUAL_SHORT, Strategy.RULE),
        (Strategy.HYBRID, RouteReason.RULE_CODE, Strategy.RULE),
        (Strategy.HYBRID, RouteReason.LLM_CLASSIFIED, Strategy.LLM),
        (Strategy.HYBRID, RouteReason.LLM_FAILED_DEFAULT, Strategy.LLM),
        (Strategy.RULE, RouteReason.DEFAULT_TIER, Strategy.RULE),
        (Strategy.LLM, RouteReason.LLM_FAILED_RULE, Strategy.LLM),
        (Strategy.LEARNED, RouteReason.LEARNED_SCORE, Strategy.LEARNED),
        (Strategy.TOOL, RouteReason.TOOL_CLASSIFIED, Strategy.TOOL),
        (Strategy.DIRECT, RouteReason.EXPLICIT_GROUP, Strategy.DIRECT),
    ],
)
def test_hybrid_counts_the_path_taken(strategy: Strategy, reason: RouteReason, path: Strategy) -> None:
    assert RoutingDecision("fast", strategy, reason).path is path

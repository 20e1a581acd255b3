from __future__ import annotations

import pytest
from tests.support import make_features

from octoroute.core.types import Features, Importance, RouteReason, TaskType, Tier
from octoroute.routing.rules import RuleMatch, evaluate_rules

CASUAL = TaskType.CASUAL_CHAT
CODE = TaskType.CODE
QA = TaskType.QUESTION_ANSWER
SUMMARY = TaskType.DOCUMENT_SUMMARY
DEEP_TASK = TaskType.DEEP_ANALYSIS
CREATIVE = TaskType.CREATIVE_WRITING
LOW, NORMAL, HIGH = Importance.LOW, Importance.NORMAL, Importance.HIGH


def features(tokens: int, task: TaskType, importance: Importance = Importance.NORMAL) -> Features:
    return make_features(tokens, task, importance, explicit=True)


@pytest.mark.parametrize(
    ("tokens", "task", "importance", "expected"),
    [
        # Rule 1: casual and short, not high importance
        (0, CASUAL, NORMAL, (Tier.FAST, RouteReason.RULE_CASUAL_SHORT)),
        (255, CASUAL, LOW, (Tier.FAST, RouteReason.RULE_CASUAL_SHORT)),
        (256, CASUAL, NORMAL, None),
        (100, CASUAL, HIGH, None),  # ambiguous: left to the judge / default tier
        (5000, CASUAL, HIGH, None),
        # Rule 2: high importance (not casual) or a deep task
        (10, QA, HIGH, (Tier.DEEP, RouteReason.RULE_HIGH_IMPORTANCE)),
        (10, CODE, HIGH, (Tier.DEEP, RouteReason.RULE_HIGH_IMPORTANCE)),
        (10, DEEP_TASK, HIGH, (Tier.DEEP, RouteReason.RULE_HIGH_IMPORTANCE)),
        (10, DEEP_TASK, NORMAL, (Tier.DEEP, RouteReason.RULE_DEEP_TASK)),
        (99_999, CREATIVE, LOW, (Tier.DEEP, RouteReason.RULE_DEEP_TASK)),
        # Rule 3: code, split at 1024
        (0, CODE, NORMAL, (Tier.BALANCED, RouteReason.RULE_CODE)),
        (1024, CODE, NORMAL, (Tier.BALANCED, RouteReason.RULE_CODE)),
        (1025, CODE, LOW, (Tier.DEEP, RouteReason.RULE_CODE_LONG)),
        # Rule 4: medium questions and summaries, 200 <= tokens < 2048
        (199, QA, NORMAL, None),
        (200, QA, NORMAL, (Tier.BALANCED, RouteReason.RULE_MEDIUM_QA)),
        (2047, QA, LOW, (Tier.BALANCED, RouteReason.RULE_MEDIUM_QA)),
        (2048, QA, NORMAL, None),
        (199, SUMMARY, NORMAL, None),
        (200, SUMMARY, NORMAL, (Tier.BALANCED, RouteReason.RULE_MEDIUM_QA)),
        (2048, SUMMARY, NORMAL, None),
    ],
)
def test_rules_table(
    tokens: int, task: TaskType, importance: Importance, expected: tuple[Tier, RouteReason] | None
) -> None:
    match = evaluate_rules(features(tokens, task, importance))
    if expected is None:
        assert match is None
    else:
        assert match is not None
        assert (match.tier, match.reason) == expected


def test_detail_names_the_threshold() -> None:
    assert evaluate_rules(features(1500, CODE)) == RuleMatch(
        Tier.DEEP, RouteReason.RULE_CODE_LONG, "code, 1500 tokens > 1024"
    )
    casual = evaluate_rules(features(42, CASUAL))
    assert casual is not None
    assert casual.detail == "casual chat, 42 tokens < 256"


def test_rule_order_high_importance_beats_code_split() -> None:
    # Rule 2 runs before rule 3, so short high-importance code still goes deep.
    match = evaluate_rules(features(10, CODE, HIGH))
    assert match is not None
    assert match.reason is RouteReason.RULE_HIGH_IMPORTANCE

"""octoroute 1.0's routing rules, evaluated in order; the first match wins.

1. casual chat, < 256 tokens, importance not high    -> fast (rule_casual_short)
2. high importance (not casual chat), or a deep task  -> deep (rule_high_importance / rule_deep_task)
3. code                                               -> deep if > 1024 tokens (rule_code_long)
                                                         else balanced (rule_code)
4. question or summary, 200 <= tokens < 2048          -> balanced (rule_medium_question)

No match returns None so the caller decides (default tier, or ask the judge).
Casual chat with high importance deliberately matches nothing: it is ambiguous,
so 1.0 left it to the judge / default tier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from octoroute.core.types import Features, Importance, RouteReason, TaskType, Tier

CASUAL_MAX_TOKENS = 256  # rule 1: strictly below
CODE_LONG_TOKENS = 1024  # rule 3: strictly above goes deep
MEDIUM_MIN_TOKENS = 200  # rule 4: inclusive
MEDIUM_MAX_TOKENS = 2048  # rule 4: exclusive

_DEEP_TASKS = frozenset({TaskType.DEEP_ANALYSIS, TaskType.CREATIVE_WRITING})
_MEDIUM_TASKS = frozenset({TaskType.QUESTION_ANSWER, TaskType.DOCUMENT_SUMMARY})


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule fired: where to go, which rule, and a short human explanation."""

    tier: Tier
    reason: RouteReason
    detail: str


def _casual_short(f: Features) -> RuleMatch | None:
    if (
        f.task_type is TaskType.CASUAL_CHAT
        and f.token_estimate < CASUAL_MAX_TOKENS
        and f.importance is not Importance.HIGH
    ):
        detail = f"casual chat, {f.token_estimate} tokens < {CASUAL_MAX_TOKENS}"
        return RuleMatch(Tier.FAST, RouteReason.RULE_CASUAL_SHORT, detail)
    return None


def _deep_work(f: Features) -> RuleMatch | None:
    if f.importance is Importance.HIGH and f.task_type is not TaskType.CASUAL_CHAT:
        detail = f"importance high, task {f.task_type.value}"
        return RuleMatch(Tier.DEEP, RouteReason.RULE_HIGH_IMPORTANCE, detail)
    if f.task_type in _DEEP_TASKS:
        return RuleMatch(Tier.DEEP, RouteReason.RULE_DEEP_TASK, f"task {f.task_type.value}")
    return None


def _code(f: Features) -> RuleMatch | None:
    if f.task_type is not TaskType.CODE:
        return None
    if f.token_estimate > CODE_LONG_TOKENS:
        detail = f"code, {f.token_estimate} tokens > {CODE_LONG_TOKENS}"
        return RuleMatch(Tier.DEEP, RouteReason.RULE_CODE_LONG, detail)
    detail = f"code, {f.token_estimate} tokens <= {CODE_LONG_TOKENS}"
    return RuleMatch(Tier.BALANCED, RouteReason.RULE_CODE, detail)


def _medium_question(f: Features) -> RuleMatch | None:
    if f.task_type in _MEDIUM_TASKS and MEDIUM_MIN_TOKENS <= f.token_estimate < MEDIUM_MAX_TOKENS:
        detail = f"{f.task_type.value}, {f.token_estimate} tokens in [{MEDIUM_MIN_TOKENS}, {MEDIUM_MAX_TOKENS})"
        return RuleMatch(Tier.BALANCED, RouteReason.RULE_MEDIUM_QA, detail)
    return None


_RULES: tuple[Callable[[Features], RuleMatch | None], ...] = (_casual_short, _deep_work, _code, _medium_question)


def evaluate_rules(features: Features) -> RuleMatch | None:
    """The first matching rule in 1.0's order, or None when no rule applies
    (e.g. a 300-token code request gives `RuleMatch(Tier.BALANCED, RouteReason.RULE_CODE, ...)`)."""
    for rule in _RULES:
        match = rule(features)
        if match is not None:
            return match
    return None

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import pytest
from tests.support import make_features

from octoroute.config.models import RoutingConfig
from octoroute.core.errors import OctorouteError
from octoroute.core.types import (
    Features,
    Importance,
    JudgeFailure,
    RouteReason,
    RoutingDecision,
    Strategy,
    TaskType,
    Tier,
)
from octoroute.routing.router import JUDGE_MODEL_PLACEHOLDER, JudgeFn, JudgeUnavailable, Router

Body = dict[str, object]


def features(tokens: int, task: TaskType, importance: Importance = Importance.NORMAL) -> Features:
    return make_features(tokens, task, importance, explicit=False)


CODE_SHORT = features(300, TaskType.CODE)  # rule 3 -> balanced
CASUAL_HIGH = features(50, TaskType.CASUAL_CHAT, Importance.HIGH)  # no rule matches


def completion(content: object) -> dict[str, object]:
    """A chat.completion answering `content`."""
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


class FakeJudge:
    """Records bodies; answers a chat.completion with canned text, or raises."""

    def __init__(self, reply: str | BaseException) -> None:
        self.reply = reply
        self.bodies: list[Body] = []

    async def __call__(self, body: Body) -> dict[str, object]:
        self.bodies.append(body)
        if isinstance(self.reply, BaseException):
            raise self.reply
        return completion(self.reply)


def decide(router: Router, f: Features, text: str = "some request") -> RoutingDecision:
    return asyncio.run(router.decide(f, text))


def summary(d: RoutingDecision) -> tuple[str, Strategy, RouteReason]:
    return d.group, d.strategy, d.reason


# --- rule strategy ---------------------------------------------------------


def test_rule_strategy_uses_rules_and_never_the_judge() -> None:
    judge = FakeJudge("FAST")
    router = Router(Strategy.RULE, Tier.BALANCED, judge)
    d = decide(router, CODE_SHORT)
    assert summary(d) == ("balanced", Strategy.RULE, RouteReason.RULE_CODE)
    assert d.detail == "rule_code: code, 300 tokens <= 1024"
    assert judge.bodies == []


def test_rule_strategy_no_match_goes_to_default_tier() -> None:
    d = decide(Router(Strategy.RULE, Tier.DEEP, None), CASUAL_HIGH)
    assert summary(d) == ("deep", Strategy.RULE, RouteReason.DEFAULT_TIER)
    assert "default tier deep" in d.detail


# --- llm strategy ----------------------------------------------------------


def test_llm_strategy_asks_the_judge_even_when_a_rule_matches() -> None:
    judge = FakeJudge("DEEP")
    d = decide(Router(Strategy.LLM, Tier.BALANCED, judge), CODE_SHORT, "refactor my parser")
    assert summary(d) == ("deep", Strategy.LLM, RouteReason.LLM_CLASSIFIED)
    assert d.detail == "llm said DEEP"
    (body,) = judge.bodies
    assert body["model"] == JUDGE_MODEL_PLACEHOLDER
    assert "refactor my parser" in str(body["messages"])


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        ("banana", JudgeFailure.UNPARSEABLE),
        ("FAST or DEEP", JudgeFailure.UNPARSEABLE),
        ("I'm sorry, I can't help with that.", JudgeFailure.REFUSAL),
        (JudgeUnavailable(JudgeFailure.TIMEOUT, "router tier timed out after 5s"), JudgeFailure.TIMEOUT),
        (JudgeUnavailable(JudgeFailure.UNAVAILABLE, "no healthy endpoint"), JudgeFailure.UNAVAILABLE),
        (TimeoutError(), JudgeFailure.TIMEOUT),
    ],
)
def test_llm_failure_falls_back_to_matching_rule(reply: str | BaseException, failure: JudgeFailure) -> None:
    d = decide(Router(Strategy.LLM, Tier.FAST, FakeJudge(reply)), CODE_SHORT)
    assert summary(d) == ("balanced", Strategy.LLM, RouteReason.LLM_FAILED_RULE)
    assert d.detail == f"llm {failure.value}; rules: rule_code (code, 300 tokens <= 1024)"


def test_llm_failure_without_rule_goes_to_default_tier() -> None:
    d = decide(Router(Strategy.LLM, Tier.BALANCED, FakeJudge("<think>hmm, FAST? DEEP?</think>")), CASUAL_HIGH)
    assert summary(d) == ("balanced", Strategy.LLM, RouteReason.LLM_FAILED_DEFAULT)
    assert d.detail == "llm unparseable; no rule matched; default tier balanced"


def test_llm_answer_without_text_is_unparseable() -> None:
    async def judge(body: Body) -> dict[str, object]:
        return completion(None)

    d = decide(Router(Strategy.LLM, Tier.BALANCED, judge), CODE_SHORT)
    assert d.reason is RouteReason.LLM_FAILED_RULE
    assert d.detail.startswith("llm unparseable;")


def test_llm_without_judge_counts_as_unavailable() -> None:
    d = decide(Router(Strategy.LLM, Tier.BALANCED, None), CODE_SHORT)
    assert d.reason is RouteReason.LLM_FAILED_RULE
    assert d.detail.startswith("llm unavailable;")


def test_think_tags_are_stripped_before_parsing() -> None:
    judge = FakeJudge("<think>The user says hi. Could be DEEP? No.</think>\n\nFAST")
    d = decide(Router(Strategy.LLM, Tier.BALANCED, judge), CASUAL_HIGH)
    assert summary(d) == ("fast", Strategy.LLM, RouteReason.LLM_CLASSIFIED)


# --- hybrid strategy -------------------------------------------------------


def test_hybrid_rule_match_skips_the_judge() -> None:
    judge = FakeJudge("FAST")
    d = decide(Router(Strategy.HYBRID, Tier.BALANCED, judge), CODE_SHORT)
    assert summary(d) == ("balanced", Strategy.HYBRID, RouteReason.RULE_CODE)
    assert judge.bodies == []


def test_hybrid_no_rule_asks_the_judge() -> None:
    judge = FakeJudge("Answer: **DEEP**")
    d = decide(Router(Strategy.HYBRID, Tier.BALANCED, judge), CASUAL_HIGH)
    assert summary(d) == ("deep", Strategy.HYBRID, RouteReason.LLM_CLASSIFIED)
    assert d.detail == "no rule matched; llm said DEEP"
    assert len(judge.bodies) == 1


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        ("¯\\_(ツ)_/¯", JudgeFailure.UNPARSEABLE),
        ("As an AI, I cannot do that", JudgeFailure.REFUSAL),
        (JudgeUnavailable(JudgeFailure.TIMEOUT, "timed out"), JudgeFailure.TIMEOUT),
    ],
)
def test_hybrid_judge_failure_goes_to_default_tier(reply: str | BaseException, failure: JudgeFailure) -> None:
    d = decide(Router(Strategy.HYBRID, Tier.FAST, FakeJudge(reply)), CASUAL_HIGH)
    assert summary(d) == ("fast", Strategy.HYBRID, RouteReason.LLM_FAILED_DEFAULT)
    assert d.detail == f"no rule matched; llm {failure.value}; default tier fast"


# --- explain, construction, bounds -----------------------------------------


@pytest.mark.parametrize(
    ("strategy", "f", "expected"),
    [
        (Strategy.RULE, CODE_SHORT, ("balanced", Strategy.RULE, RouteReason.RULE_CODE)),
        (Strategy.RULE, CASUAL_HIGH, ("balanced", Strategy.RULE, RouteReason.DEFAULT_TIER)),
        (Strategy.HYBRID, CODE_SHORT, ("balanced", Strategy.HYBRID, RouteReason.RULE_CODE)),
        (Strategy.HYBRID, CASUAL_HIGH, None),
        (Strategy.LLM, CODE_SHORT, None),
        (Strategy.TOOL, CODE_SHORT, None),
    ],
)
def test_explain_without_any_model(
    strategy: Strategy, f: Features, expected: tuple[str, Strategy, RouteReason] | None
) -> None:
    def must_not_run(_body: Body) -> Awaitable[dict[str, object]]:
        raise AssertionError("explain must not consult the judge")

    decision = Router(strategy, Tier.BALANCED, must_not_run).explain(f)
    assert (summary(decision) if decision else None) == expected


def test_direct_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="rule, llm, hybrid or tool"):
        Router(Strategy.DIRECT, Tier.BALANCED, None)


def test_from_config_uses_routing_settings() -> None:
    judge = FakeJudge("FAST")
    config = RoutingConfig(strategy=Strategy.LLM, default_tier=Tier.DEEP, llm_max_prompt_chars=300)
    router = Router.from_config(config, judge)
    assert (router.strategy, router.default_tier, router.max_prompt_chars) == (Strategy.LLM, Tier.DEEP, 300)
    decide(router, CASUAL_HIGH, "ž" * 100_000)
    assert str(judge.bodies[0]["messages"]).count("ž") == 300


def test_judge_unavailable_is_an_octoroute_error() -> None:
    exc = JudgeUnavailable(JudgeFailure.UNAVAILABLE, "no endpoint")
    assert isinstance(exc, OctorouteError)
    assert (exc.failure, str(exc)) == (JudgeFailure.UNAVAILABLE, "no endpoint")


def test_judge_fn_type_accepts_a_plain_coroutine_function() -> None:
    async def judge(body: Body) -> dict[str, object]:
        return completion("BALANCED")

    fn: JudgeFn = judge
    check: Callable[[Body], Awaitable[Mapping[str, object]]] = fn
    d = decide(Router(Strategy.HYBRID, Tier.FAST, check), CASUAL_HIGH)
    assert d.group == "balanced"

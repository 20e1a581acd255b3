"""The scorer interface: cut points, the learned scorer's wiring, tier-native scores,
offline scoring, and the learned strategy inside the Router."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from pydantic import ValidationError
from tests.support import make_features

from octoroute.config.models import RoutingConfig, TierShares
from octoroute.core.types import Importance, JudgeFailure, RouteReason, Strategy, TaskType, Tier
from octoroute.routing.router import Router
from octoroute.routing.scoring import (
    TIER_SCORES,
    HybridScorer,
    JudgeScorer,
    LearnedScorer,
    TierCuts,
    build_offline_scorer,
    nearest_tier,
    score_rules,
)


@dataclass(frozen=True)
class FakePrediction:
    score: float
    factors: tuple[tuple[str, float], ...]


class FakeModel:
    """Scores a prompt by a table; records what it was asked."""

    version = "test.1"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.seen: list[str] = []

    def predict(self, text: str) -> FakePrediction:
        self.seen.append(text)
        return FakePrediction(self.scores[text], (("log length", 0.1),))


NORMAL = make_features(10, TaskType.QUESTION_ANSWER)
CASUAL = make_features(10, TaskType.CASUAL_CHAT)  # rule 1 -> fast
NO_RULE = make_features(50, TaskType.CASUAL_CHAT, Importance.HIGH)  # no rule matches


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (0.0, Tier.FAST),
        (0.399, Tier.FAST),
        (0.4, Tier.BALANCED),
        (0.799, Tier.BALANCED),
        (0.8, Tier.DEEP),
        (1.0, Tier.DEEP),
    ],
)
def test_cut_points_are_lower_inclusive(score: float, tier: Tier) -> None:
    assert TierCuts(0.4, 0.8).tier_of(score) is tier


def test_cuts_come_from_thresholds_or_from_shares() -> None:
    assert TierCuts.from_config(RoutingConfig()) == TierCuts(0.4, 0.8)
    assert TierCuts.from_config(RoutingConfig(score_thresholds=(0.3, 0.9))) == TierCuts(0.3, 0.9)
    shares = RoutingConfig(tier_shares=TierShares(fast=0.7, balanced=0.2, deep=0.1))
    assert TierCuts.from_config(shares).low == pytest.approx(0.7)
    assert TierCuts.from_config(shares).high == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ({"score_thresholds": [0.8, 0.4]}, "must be ascending"),
        ({"score_thresholds": [0.2, 1.5]}, "less than or equal to 1"),
        ({"tier_shares": {"fast": 0.5, "balanced": 0.5, "deep": 0.5}}, "must add up to 1"),
        ({"score_thresholds": [0.2, 0.4], "tier_shares": {"fast": 0.5, "balanced": 0.3, "deep": 0.2}}, "not both"),
    ],
)
def test_bad_cut_points_are_refused(routing: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingConfig.model_validate(routing)


def test_cut_description_names_the_boundary() -> None:
    cuts = TierCuts(0.4, 0.8)
    assert cuts.describe(0.1) == "0.100 < 0.400 (fast|balanced)"
    assert cuts.describe(0.5) == "0.400 <= 0.500 < 0.800 (balanced)"
    assert cuts.describe(0.9) == "0.900 >= 0.800 (balanced|deep)"


def test_learned_scorer_maps_the_model_score_through_the_cuts() -> None:
    model = FakeModel({"easy": 0.1, "hard": 0.95})
    scorer = LearnedScorer(model, TierCuts(0.4, 0.8))
    easy, hard = scorer.score(NORMAL, "easy"), scorer.score(NORMAL, "hard")
    assert (easy.tier, easy.score, easy.reason, easy.strategy) == (
        Tier.FAST,
        0.1,
        RouteReason.LEARNED_SCORE,
        Strategy.LEARNED,
    )
    assert (hard.tier, hard.score) == (Tier.DEEP, 0.95)
    assert hard.cut == "0.950 >= 0.800 (balanced|deep)"
    assert "model test.1" in hard.detail
    assert hard.factors == (("log length", 0.1),)


@pytest.mark.parametrize(
    ("importance", "expected", "tier"),
    [
        (Importance.LOW, 0.25, Tier.FAST),
        (Importance.NORMAL, 0.5, Tier.BALANCED),
        (Importance.HIGH, 0.75, Tier.BALANCED),
    ],
)
def test_importance_hint_shifts_a_learned_score(importance: Importance, expected: float, tier: Tier) -> None:
    scorer = LearnedScorer(FakeModel({"q": 0.5}), TierCuts(0.4, 0.8))
    scored = scorer.score(make_features(10, TaskType.QUESTION_ANSWER, importance), "q")
    assert scored.score == pytest.approx(expected)
    assert scored.tier is tier
    if importance is not Importance.NORMAL:
        assert scored.factors[0][0] == f"importance {importance.value}"


def test_importance_shift_is_clamped_to_the_scale() -> None:
    scorer = LearnedScorer(FakeModel({"q": 0.95}), TierCuts(0.4, 0.8))
    assert scorer.score(make_features(10, TaskType.CODE, Importance.HIGH), "q").score == 1.0


def test_rule_scores_are_the_tiers_nominal_scores() -> None:
    fast = score_rules(CASUAL, Tier.BALANCED)
    default = score_rules(NO_RULE, Tier.DEEP)
    assert (fast.tier, fast.score, fast.reason) == (Tier.FAST, TIER_SCORES[Tier.FAST], RouteReason.RULE_CASUAL_SHORT)
    assert (default.tier, default.score, default.reason) == (Tier.DEEP, 1.0, RouteReason.DEFAULT_TIER)


def test_judge_scorer_reports_the_judges_tier_and_falls_back_like_1_0() -> None:
    async def says_deep(_f: object, _t: str) -> Tier | JudgeFailure:
        return Tier.DEEP

    async def times_out(_f: object, _t: str) -> Tier | JudgeFailure:
        return JudgeFailure.TIMEOUT

    ok = asyncio.run(JudgeScorer(Strategy.LLM, says_deep, Tier.BALANCED).score(NORMAL, "x"))
    assert (ok.tier, ok.score, ok.reason) == (Tier.DEEP, 1.0, RouteReason.LLM_CLASSIFIED)
    to_rule = asyncio.run(JudgeScorer(Strategy.LLM, times_out, Tier.BALANCED).score(CASUAL, "x"))
    assert (to_rule.tier, to_rule.reason) == (Tier.FAST, RouteReason.LLM_FAILED_RULE)
    to_default = asyncio.run(JudgeScorer(Strategy.TOOL, times_out, Tier.DEEP).score(NO_RULE, "x"))
    assert (to_default.tier, to_default.reason, to_default.strategy) == (
        Tier.DEEP,
        RouteReason.TOOL_FAILED_DEFAULT,
        Strategy.TOOL,
    )


def test_hybrid_scorer_asks_only_when_no_rule_matches() -> None:
    asked: list[str] = []

    async def ask(_f: object, text: str) -> Tier | JudgeFailure:
        asked.append(text)
        return Tier.FAST

    scorer = HybridScorer(ask, Tier.BALANCED)
    assert asyncio.run(scorer.score(CASUAL, "rule")).reason is RouteReason.RULE_CASUAL_SHORT
    assert asyncio.run(scorer.score(NO_RULE, "judge")).reason is RouteReason.LLM_CLASSIFIED
    assert asked == ["judge"]


@pytest.mark.parametrize(
    ("strategy", "features", "reason"),
    [
        (Strategy.LEARNED, NORMAL, RouteReason.LEARNED_SCORE),
        (Strategy.RULE, CASUAL, RouteReason.RULE_CASUAL_SHORT),
        (Strategy.HYBRID, CASUAL, RouteReason.RULE_CASUAL_SHORT),
        (Strategy.HYBRID, NO_RULE, RouteReason.LEARNED_INSTEAD_OF_JUDGE),
        (Strategy.LLM, CASUAL, RouteReason.LEARNED_INSTEAD_OF_JUDGE),
    ],
)
def test_offline_scoring_never_calls_a_model_and_says_when_it_stood_in(
    strategy: Strategy, features: object, reason: RouteReason
) -> None:
    model = FakeModel({"p": 0.9})
    scorer = build_offline_scorer(RoutingConfig(), Tier.BALANCED, strategy=strategy, model=model)
    scored = scorer.score(features, "p")  # type: ignore[arg-type]
    assert scored.reason is reason
    if reason is RouteReason.LEARNED_INSTEAD_OF_JUDGE:
        assert f"stands in for the {strategy.value} judge" in scored.detail
        assert scored.tier is Tier.DEEP


def test_offline_rule_scorer_needs_no_model() -> None:
    scorer = build_offline_scorer(RoutingConfig(strategy=Strategy.RULE), Tier.BALANCED)
    assert scorer.learned is None
    assert scorer.score_prompt("hi there").tier is Tier.FAST


def test_score_prompt_builds_features_from_the_prompt_and_hints() -> None:
    model = FakeModel({"Why is the sky blue?": 0.5})
    scorer = build_offline_scorer(RoutingConfig(), Tier.BALANCED, model=model)
    assert scorer.score_prompt("Why is the sky blue?", Importance.HIGH).score == pytest.approx(0.75)
    assert model.seen == ["Why is the sky blue?"]


def test_router_with_the_learned_strategy_carries_the_score() -> None:
    model = FakeModel({"hard one": 0.85})
    router = Router(Strategy.LEARNED, Tier.BALANCED, None, model=model, cuts=TierCuts(0.4, 0.8))
    decision = asyncio.run(router.decide(NORMAL, "hard one"))
    assert (decision.group, decision.strategy, decision.reason) == ("deep", Strategy.LEARNED, RouteReason.LEARNED_SCORE)
    assert decision.score == pytest.approx(0.85)
    assert router.explain(NORMAL, "hard one") == decision


def test_rule_router_decisions_carry_nominal_scores() -> None:
    decision = asyncio.run(Router(Strategy.RULE, Tier.BALANCED, None).decide(CASUAL, "hi"))
    assert decision.score == TIER_SCORES[Tier.FAST]


@pytest.mark.parametrize(
    ("wanted", "available", "expected"),
    [
        (Tier.BALANCED, {"fast", "deep"}, Tier.DEEP),
        (Tier.DEEP, {"fast", "balanced"}, Tier.BALANCED),
        (Tier.FAST, {"deep"}, Tier.DEEP),
        (Tier.FAST, {"fast"}, Tier.FAST),
        (Tier.FAST, {"coder"}, None),
    ],
)
def test_nearest_tier_prefers_the_stronger_side(wanted: Tier, available: set[str], expected: Tier | None) -> None:
    assert nearest_tier(wanted, available) is expected

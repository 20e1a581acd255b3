"""Scores: every strategy says, per request, how much it needs a stronger model.

A `Scored` is the common currency of routing: a score in [0, 1], the tier it
maps to, the reason, and the factors that moved it. Strategies come in two kinds:

- **tier-native** (`rule`, `llm`, `hybrid`, `tool`): they pick a tier directly,
  exactly as octoroute 1.0 does, and report that tier's nominal score
  (`TIER_SCORES`), so their choices can be compared with, and evaluated like,
  any other scorer.
- **continuous** (`learned`): a model gives a score and `TierCuts` turns it into
  a tier. The learned model's score is a percentile on its reference prompts,
  so cut points can be written as thresholds or as target shares of traffic.

`build_offline_scorer` gives the scorer `octoroute score`, `eval` and `route`
use: it never calls a model; where a strategy would ask the LLM judge, the
learned scorer answers instead and the reason says so.

Nothing here does I/O except `bundled_model`, which reads the package's weights
once, and `model_for`, which reads `routing.learned_weights` at a config load or
reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from octoroute.config.models import RoutingConfig
from octoroute.config.weightsfile import read_weights_file
from octoroute.core.types import Features, Importance, JudgeFailure, RouteReason, Strategy, TaskType, Tier
from octoroute.routing.features import extract_features
from octoroute.routing.learned import LearnedModel
from octoroute.routing.rules import RuleMatch, evaluate_rules

TIER_SCORES: dict[Tier, float] = {Tier.FAST: 0.0, Tier.BALANCED: 0.5, Tier.DEEP: 1.0}
"""The nominal score of a tier-native decision: the tiers' ranks on the [0, 1] scale."""

IMPORTANCE_SHIFT: dict[Importance, float] = {Importance.LOW: -0.25, Importance.NORMAL: 0.0, Importance.HIGH: 0.25}
"""How a client's `importance` hint moves a continuous score (clamped to [0, 1])."""

Factors = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Scored:
    """One strategy's verdict on one request."""

    score: float
    tier: Tier
    strategy: Strategy
    reason: RouteReason
    detail: str = ""
    factors: Factors = ()  # what moved a continuous score, largest effect first
    cut: str = ""  # which cut point decided, e.g. "0.71 >= 0.60 (balanced|deep)"


@dataclass(frozen=True, slots=True)
class TierCuts:
    """Two cut points on the score scale: below `low` is fast, from `high` on is deep.

    Usage: `TierCuts(0.4, 0.8).tier_of(0.55)` is `Tier.BALANCED`.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"cut points must satisfy 0 <= low <= high <= 1, got {self.low}, {self.high}")

    @classmethod
    def from_config(cls, routing: RoutingConfig) -> TierCuts:
        """Explicit `score_thresholds`, else `tier_shares` (on the percentile scale), else the defaults."""
        if routing.score_thresholds is not None:
            low, high = routing.score_thresholds
            return cls(low, high)
        shares = routing.tier_shares
        return cls(shares.fast, shares.fast + shares.balanced)

    def tier_of(self, score: float) -> Tier:
        if score < self.low:
            return Tier.FAST
        if score < self.high:
            return Tier.BALANCED
        return Tier.DEEP

    def describe(self, score: float) -> str:
        """The cut point that decided, in words: `0.71 >= 0.60 (balanced|deep)`."""
        if score < self.low:
            return f"{score:.3f} < {self.low:.3f} (fast|balanced)"
        if score < self.high:
            return f"{self.low:.3f} <= {score:.3f} < {self.high:.3f} (balanced)"
        return f"{score:.3f} >= {self.high:.3f} (balanced|deep)"


class Prediction(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def factors(self) -> Factors: ...


class ScoreModel(Protocol):
    """What the learned scorer needs of a model (`routing.learned.LearnedModel`)."""

    @property
    def version(self) -> str: ...
    def predict(self, text: str) -> Prediction: ...


@cache
def bundled_model() -> ScoreModel:
    """The learned model shipped in the package, loaded once per process."""
    return LearnedModel.bundled()


def model_for(routing: RoutingConfig) -> ScoreModel:
    """The learned model of `[routing]`: its `learned_weights` file, or the bundled one.

    Reads the file each time (a config load or reload, not a request), validating it
    as it is read; raises ValueError when the file went bad after the config check.
    """
    return model_at(routing.learned_weights)


def model_at(path: str | None) -> ScoreModel:
    """The learned model in the weights file at `path`; the bundled one for None."""
    if path is None:
        return bundled_model()
    return LearnedModel.from_document(read_weights_file(path)[1])


def nominal(tier: Tier, strategy: Strategy, reason: RouteReason, detail: str) -> Scored:
    """A tier-native decision with its tier's nominal score."""
    return Scored(TIER_SCORES[tier], tier, strategy, reason, detail)


def score_rules(features: Features, default_tier: Tier, strategy: Strategy = Strategy.RULE) -> Scored:
    """octoroute 1.0's rules; no match gives the default tier."""
    match = evaluate_rules(features)
    if match is not None:
        return from_rule(match, strategy)
    return nominal(default_tier, strategy, RouteReason.DEFAULT_TIER, f"no rule matched; default tier {default_tier}")


def from_rule(match: RuleMatch, strategy: Strategy) -> Scored:
    return nominal(match.tier, strategy, match.reason, f"{match.reason.value}: {match.detail}")


class LearnedScorer:
    """The default strategy: a learned model's score, the client's importance hint,
    and the cut points.

    Usage: `LearnedScorer(bundled_model(), TierCuts(0.4, 0.8)).score(features, text)`.
    """

    def __init__(self, model: ScoreModel, cuts: TierCuts) -> None:
        self.model = model
        self.cuts = cuts

    def score(
        self,
        features: Features,
        text: str,
        *,
        reason: RouteReason = RouteReason.LEARNED_SCORE,
        note: str = "",
    ) -> Scored:
        prediction = self.model.predict(text)
        value = prediction.score
        factors = prediction.factors
        shift = IMPORTANCE_SHIFT[features.importance]
        if shift:
            value = min(1.0, max(0.0, value + shift))
            factors = ((f"importance {features.importance.value}", shift), *factors)
        tier = self.cuts.tier_of(value)
        cut = self.cuts.describe(value)
        detail = (
            f"{note}score {cut}; model {self.model.version}" if note else f"score {cut}; model {self.model.version}"
        )
        return Scored(value, tier, Strategy.LEARNED, reason, detail, factors, cut)


JudgeAsk = Callable[[Features, str], Awaitable[Tier | JudgeFailure]]
"""Asks the router model (by chat reply or by function call) for a tier."""


class JudgeScorer:
    """`llm` and `tool`: the router model picks the tier; when it cannot, 1.0's fallback
    (the rules, then the default tier)."""

    def __init__(self, strategy: Strategy, ask: JudgeAsk, default_tier: Tier) -> None:
        self.strategy = strategy
        self.ask = ask
        self.default_tier = default_tier
        self._reasons = _JUDGE_REASONS[strategy]

    async def score(self, features: Features, text: str) -> Scored:
        outcome = await self.ask(features, text)
        classified, failed_rule, failed_default = self._reasons
        label = "llm" if self.strategy is Strategy.LLM else "tool call"
        if isinstance(outcome, Tier):
            return nominal(outcome, self.strategy, classified, f"{label} said {outcome.name}")
        match = evaluate_rules(features)
        if match is not None:
            detail = f"{label} {outcome.value}; rules: {match.reason.value} ({match.detail})"
            return nominal(match.tier, self.strategy, failed_rule, detail)
        detail = f"{label} {outcome.value}; no rule matched; default tier {self.default_tier.value}"
        return nominal(self.default_tier, self.strategy, failed_default, detail)


_JUDGE_REASONS: dict[Strategy, tuple[RouteReason, RouteReason, RouteReason]] = {
    Strategy.LLM: (RouteReason.LLM_CLASSIFIED, RouteReason.LLM_FAILED_RULE, RouteReason.LLM_FAILED_DEFAULT),
    Strategy.TOOL: (RouteReason.TOOL_CLASSIFIED, RouteReason.TOOL_FAILED_RULE, RouteReason.TOOL_FAILED_DEFAULT),
}


class HybridScorer:
    """octoroute 1.0's hybrid: the rules; only when none matches, the LLM judge;
    if it fails, the default tier."""

    def __init__(self, ask: JudgeAsk, default_tier: Tier) -> None:
        self.ask = ask
        self.default_tier = default_tier

    async def score(self, features: Features, text: str) -> Scored:
        match = evaluate_rules(features)
        if match is not None:
            return from_rule(match, Strategy.HYBRID)
        outcome = await self.ask(features, text)
        if isinstance(outcome, Tier):
            detail = f"no rule matched; llm said {outcome.name}"
            return nominal(outcome, Strategy.HYBRID, RouteReason.LLM_CLASSIFIED, detail)
        detail = f"no rule matched; llm {outcome.value}; default tier {self.default_tier.value}"
        return nominal(self.default_tier, Strategy.HYBRID, RouteReason.LLM_FAILED_DEFAULT, detail)


class OfflineScorer:
    """A strategy scored without calling any model, for `octoroute score`, `eval` and `route`.

    `rule` is exact. `llm` and `tool` are replaced by the learned scorer; `hybrid`
    keeps its rule step and uses the learned scorer where it would ask the judge.
    Either way the reason is `learned_instead_of_judge`.

    Usage: `build_offline_scorer(RoutingConfig(), Tier.BALANCED).score_prompt("hi")`.
    """

    def __init__(self, strategy: Strategy, default_tier: Tier, learned: LearnedScorer | None) -> None:
        self.strategy = strategy
        self.default_tier = default_tier
        self.learned = learned

    def score(self, features: Features, text: str) -> Scored:
        if self.strategy is Strategy.RULE:
            return score_rules(features, self.default_tier)
        if self.strategy is Strategy.HYBRID:
            match = evaluate_rules(features)
            if match is not None:
                return from_rule(match, Strategy.HYBRID)
        learned = self._learned()
        if self.strategy is Strategy.LEARNED:
            return learned.score(features, text)
        note = f"offline: the learned scorer stands in for the {self.strategy.value} judge; "
        return learned.score(features, text, reason=RouteReason.LEARNED_INSTEAD_OF_JUDGE, note=note)

    def score_prompt(
        self, prompt: str, importance: Importance | None = None, task_type: TaskType | None = None
    ) -> Scored:
        """Score one user prompt, as if it were a single-message conversation."""
        features = extract_features(
            [{"role": "user", "content": prompt}],
            tools_present=False,
            importance=importance or Importance.NORMAL,
            task_type=task_type,
        )
        return self.score(features, prompt)

    def _learned(self) -> LearnedScorer:
        if self.learned is None:
            raise RuntimeError("this offline scorer was built without a learned model")
        return self.learned


def build_offline_scorer(
    routing: RoutingConfig,
    default_tier: Tier,
    *,
    strategy: Strategy | None = None,
    model: ScoreModel | None = None,
) -> OfflineScorer:
    """The offline scorer for a config's routing (or `strategy` instead of its own)."""
    chosen = strategy or routing.strategy
    learned = None
    if chosen is not Strategy.RULE:
        learned = LearnedScorer(model or model_for(routing), TierCuts.from_config(routing))
    return OfflineScorer(chosen, default_tier, learned)


def nearest_tier(tier: Tier, available: Collection[str]) -> Tier | None:
    """The configured tier closest to `tier`, preferring the stronger side
    (a request that needs balanced is better served by deep than by fast)."""
    order = list(Tier)
    i = order.index(tier)
    for distance in range(len(order)):
        for j in (i + distance, i - distance):
            if 0 <= j < len(order) and order[j] in available:
                return order[j]
    return None

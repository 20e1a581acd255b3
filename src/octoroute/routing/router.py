"""One routing decision per request, per the configured strategy.

- `learned` (the default): the learned model's score, cut into a tier.
- `rule`: octoroute 1.0's rules; no match -> the default tier.
- `llm`: ask the judge; if it fails, the rules; if no rule matches, the default tier.
- `hybrid`: the rules; only when none matches, ask the judge; if it fails, the default tier.
- `tool`: the router model picks the tier by calling a function (`routing.tool`);
  if it cannot, the rules; if no rule matches, the default tier (as `llm`).

Each strategy is a scorer (`routing.scoring`) and every decision carries its
score. The judge is an injected async function (`JudgeFn`) that sends a body
to the router tier and returns its answer as an OpenAI `chat.completion`; each
strategy reads its own part (the text for `llm`, the tool call for `tool`).
It owns timeouts and retries
(`llm_timeout_seconds`, `llm_retries`) and reports every failure as
`JudgeUnavailable`, so this module stays free of I/O and clocks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from octoroute.config.models import RoutingConfig
from octoroute.core.errors import OctorouteError
from octoroute.core.types import Features, JudgeFailure, RoutingDecision, Strategy, Tier
from octoroute.protocols.openai import read_message_text
from octoroute.routing.judge import build_judge_body, parse_judge_reply
from octoroute.routing.rules import evaluate_rules
from octoroute.routing.scoring import (
    HybridScorer,
    JudgeScorer,
    LearnedScorer,
    OfflineScorer,
    Scored,
    ScoreModel,
    TierCuts,
    bundled_model,
    from_rule,
    model_for,
    score_rules,
)
from octoroute.routing.tool import build_tool_body, parse_tool_reply

JUDGE_MODEL_PLACEHOLDER = "router"  # the judge function replaces it with the router endpoint's model
DEFAULT_MAX_PROMPT_CHARS: int = RoutingConfig().llm_max_prompt_chars

JudgeFn = Callable[[dict[str, object]], Awaitable[Mapping[str, object]]]
"""Sends a judge or tool body (with `"model": JUDGE_MODEL_PLACEHOLDER`) to the router
tier and returns the answer as an OpenAI `chat.completion`; raises `JudgeUnavailable`
on any failure."""

_ROUTED_STRATEGIES = frozenset({Strategy.LEARNED, Strategy.RULE, Strategy.LLM, Strategy.HYBRID, Strategy.TOOL})
_ASKS_FIRST = frozenset({Strategy.LLM, Strategy.TOOL})  # the router model decides before any rule


class JudgeUnavailable(OctorouteError):
    """The judge could not answer (timeout, no endpoint, bad response); routing falls back."""

    def __init__(self, failure: JudgeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


def to_decision(scored: Scored) -> RoutingDecision:
    return RoutingDecision(
        group=scored.tier.value,
        strategy=scored.strategy,
        reason=scored.reason,
        detail=scored.detail,
        score=scored.score,
    )


class Router:
    """Decides where an auto-routed request goes.

    Usage: `decision = await Router(Strategy.HYBRID, Tier.BALANCED, judge).decide(features, text)`.
    With `judge=None`, every judge consultation counts as UNAVAILABLE and falls back.
    `model` and `cuts` are the learned scorer's (the bundled model and default cuts
    when not given).
    """

    def __init__(
        self,
        strategy: Strategy,
        default_tier: Tier,
        judge: JudgeFn | None,
        *,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        model: ScoreModel | None = None,
        cuts: TierCuts | None = None,
    ) -> None:
        if strategy not in _ROUTED_STRATEGIES:
            raise ValueError(f"strategy must be learned, rule, llm, hybrid or tool, not {strategy.value}")
        if max_prompt_chars < 1:
            raise ValueError("max_prompt_chars must be positive")
        self.strategy = strategy
        self.default_tier = default_tier
        self.max_prompt_chars = max_prompt_chars
        self._judge = judge
        self.learned: LearnedScorer | None = None
        if strategy is Strategy.LEARNED:
            self.learned = LearnedScorer(model or bundled_model(), cuts or TierCuts.from_config(RoutingConfig()))
        self._llm = JudgeScorer(Strategy.LLM, self.ask_judge, default_tier)
        self._hybrid = HybridScorer(self.ask_judge, default_tier)
        self._tool = JudgeScorer(Strategy.TOOL, self.ask_tool, default_tier)

    @classmethod
    def from_config(
        cls,
        routing: RoutingConfig,
        judge: JudgeFn | None,
        *,
        default_tier: Tier | None = None,
        strategy: Strategy | None = None,
        model: ScoreModel | None = None,
    ) -> Router:
        """A router for `[routing]`; `default_tier` overrides `routing.default_tier` (the service
        passes the nearest configured tier when that one has no endpoints), `strategy` the
        configured strategy (shadow mode's candidate), `model` the learned model of
        `routing.learned_weights` (or the bundled one)."""
        chosen = strategy or routing.strategy
        if model is None and chosen is Strategy.LEARNED:
            model = model_for(routing)
        return cls(
            chosen,
            default_tier or routing.default_tier,
            judge,
            max_prompt_chars=routing.llm_max_prompt_chars,
            model=model,
            cuts=TierCuts.from_config(routing),
        )

    async def decide(self, features: Features, last_user_text: str) -> RoutingDecision:
        """The decision for one request; never raises for a judge failure."""
        return to_decision(await self.score(features, last_user_text))

    async def score(self, features: Features, last_user_text: str) -> Scored:
        if self.learned is not None:
            return self.learned.score(features, last_user_text)
        if self.strategy is Strategy.RULE:
            return score_rules(features, self.default_tier)
        if self.strategy is Strategy.HYBRID:
            return await self._hybrid.score(features, last_user_text)
        if self.strategy is Strategy.TOOL:
            return await self._tool.score(features, last_user_text)
        return await self._llm.score(features, last_user_text)

    def explain(self, features: Features, last_user_text: str = "") -> RoutingDecision | None:
        """The decision made without any model, or None when the judge would be consulted.

        `learned` and `rule` always decide; `hybrid` decides when a rule matches;
        `llm` and `tool` always ask the router model first.
        """
        if self.strategy in _ASKS_FIRST:
            return None
        if self.strategy is Strategy.HYBRID:
            match = evaluate_rules(features)
            return to_decision(from_rule(match, Strategy.HYBRID)) if match is not None else None
        return to_decision(
            OfflineScorer(self.strategy, self.default_tier, self.learned).score(features, last_user_text)
        )

    def judge_body(self, features: Features, last_user_text: str) -> dict[str, object]:
        """The body the judge function receives (model set to `JUDGE_MODEL_PLACEHOLDER`)."""
        return build_judge_body(
            features, last_user_text, model=JUDGE_MODEL_PLACEHOLDER, max_prompt_chars=self.max_prompt_chars
        )

    def tool_body(self, features: Features, last_user_text: str) -> dict[str, object]:
        """The body the judge function receives for `tool` (model set to `JUDGE_MODEL_PLACEHOLDER`)."""
        return build_tool_body(
            features, last_user_text, model=JUDGE_MODEL_PLACEHOLDER, max_prompt_chars=self.max_prompt_chars
        )

    async def ask_judge(self, features: Features, last_user_text: str) -> Tier | JudgeFailure:
        """The `llm` judge's tier: the reply text, parsed leniently."""
        reply = await self._ask(self.judge_body(features, last_user_text))
        if isinstance(reply, JudgeFailure):
            return reply
        text = read_message_text(reply)
        return JudgeFailure.UNPARSEABLE if text is None else parse_judge_reply(text)

    async def ask_tool(self, features: Features, last_user_text: str) -> Tier | JudgeFailure:
        """The `tool` strategy's tier: the arguments of the forced function call."""
        reply = await self._ask(self.tool_body(features, last_user_text))
        return reply if isinstance(reply, JudgeFailure) else parse_tool_reply(reply)

    async def _ask(self, body: dict[str, object]) -> Mapping[str, object] | JudgeFailure:
        if self._judge is None:
            return JudgeFailure.UNAVAILABLE
        try:
            return await self._judge(body)
        except JudgeUnavailable as exc:
            return exc.failure
        except TimeoutError:  # a judge wrapped in asyncio.timeout() without mapping it
            return JudgeFailure.TIMEOUT

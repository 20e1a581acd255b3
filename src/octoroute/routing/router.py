"""One routing decision per request, per the configured strategy.

- `rule`: octoroute 1.0's rules; no match -> the default tier.
- `llm`: ask the judge; if it fails, the rules; if no rule matches, the default tier.
- `hybrid`: the rules; only when none matches, ask the judge; if it fails, the default tier.

The judge is an injected async function (`JudgeFn`) that sends the body to the
router tier and returns the reply text. It owns timeouts and retries
(`llm_timeout_seconds`, `llm_retries`) and reports every failure as
`JudgeUnavailable`, so this module stays free of I/O and clocks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from octoroute.config.models import RoutingConfig
from octoroute.core.errors import OctorouteError
from octoroute.core.types import Features, JudgeFailure, RouteReason, RoutingDecision, Strategy, Tier
from octoroute.routing.judge import build_judge_body, parse_judge_reply
from octoroute.routing.rules import RuleMatch, evaluate_rules

JUDGE_MODEL_PLACEHOLDER = "router"  # the judge function replaces it with the router endpoint's model
DEFAULT_MAX_PROMPT_CHARS: int = RoutingConfig().llm_max_prompt_chars

JudgeFn = Callable[[dict[str, object]], Awaitable[str]]
"""Sends a judge body (with `"model": JUDGE_MODEL_PLACEHOLDER`) to the router tier and
returns the reply text; raises `JudgeUnavailable` on any failure."""

_ROUTED_STRATEGIES = frozenset({Strategy.RULE, Strategy.LLM, Strategy.HYBRID})


class JudgeUnavailable(OctorouteError):
    """The judge could not answer (timeout, no endpoint, bad response); routing falls back."""

    def __init__(self, failure: JudgeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


class Router:
    """Decides where an auto-routed request goes.

    Usage: `decision = await Router(Strategy.HYBRID, Tier.BALANCED, judge).decide(features, text)`.
    With `judge=None`, every judge consultation counts as UNAVAILABLE and falls back.
    """

    def __init__(
        self,
        strategy: Strategy,
        default_tier: Tier,
        judge: JudgeFn | None,
        *,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    ) -> None:
        if strategy not in _ROUTED_STRATEGIES:
            raise ValueError(f"strategy must be rule, llm or hybrid, not {strategy.value}")
        if max_prompt_chars < 1:
            raise ValueError("max_prompt_chars must be positive")
        self.strategy = strategy
        self.default_tier = default_tier
        self.max_prompt_chars = max_prompt_chars
        self._judge = judge

    @classmethod
    def from_config(cls, routing: RoutingConfig, judge: JudgeFn | None) -> Router:
        return cls(routing.strategy, routing.default_tier, judge, max_prompt_chars=routing.llm_max_prompt_chars)

    async def decide(self, features: Features, last_user_text: str) -> RoutingDecision:
        """The decision for one request; never raises for a judge failure."""
        if self.strategy is Strategy.RULE:
            return self._rules_or_default(features)
        if self.strategy is Strategy.HYBRID:
            match = evaluate_rules(features)
            if match is not None:
                return self._rule_decision(match)
            outcome = await self._ask_judge(features, last_user_text)
            if isinstance(outcome, Tier):
                return self._decision(outcome, RouteReason.LLM_CLASSIFIED, f"no rule matched; llm said {outcome.name}")
            detail = f"no rule matched; llm {outcome.value}; default tier {self.default_tier.value}"
            return self._decision(self.default_tier, RouteReason.LLM_FAILED_DEFAULT, detail)
        outcome = await self._ask_judge(features, last_user_text)
        if isinstance(outcome, Tier):
            return self._decision(outcome, RouteReason.LLM_CLASSIFIED, f"llm said {outcome.name}")
        return self._after_judge_failure(features, outcome)

    def explain(self, features: Features) -> RoutingDecision | None:
        """The decision made without any model, or None when the judge would be consulted.

        For `octoroute route`: `rule` always decides; `hybrid` decides when a
        rule matches; `llm` always asks the judge first.
        """
        if self.strategy is Strategy.RULE:
            return self._rules_or_default(features)
        if self.strategy is Strategy.HYBRID:
            match = evaluate_rules(features)
            return self._rule_decision(match) if match is not None else None
        return None

    def judge_body(self, features: Features, last_user_text: str) -> dict[str, object]:
        """The body the judge function receives (model set to `JUDGE_MODEL_PLACEHOLDER`)."""
        return build_judge_body(
            features, last_user_text, model=JUDGE_MODEL_PLACEHOLDER, max_prompt_chars=self.max_prompt_chars
        )

    async def _ask_judge(self, features: Features, last_user_text: str) -> Tier | JudgeFailure:
        if self._judge is None:
            return JudgeFailure.UNAVAILABLE
        try:
            reply = await self._judge(self.judge_body(features, last_user_text))
        except JudgeUnavailable as exc:
            return exc.failure
        except TimeoutError:  # a judge wrapped in asyncio.timeout() without mapping it
            return JudgeFailure.TIMEOUT
        return parse_judge_reply(reply)

    def _after_judge_failure(self, features: Features, failure: JudgeFailure) -> RoutingDecision:
        match = evaluate_rules(features)
        if match is not None:
            detail = f"llm {failure.value}; rules: {match.reason.value} ({match.detail})"
            return self._decision(match.tier, RouteReason.LLM_FAILED_RULE, detail)
        detail = f"llm {failure.value}; no rule matched; default tier {self.default_tier.value}"
        return self._decision(self.default_tier, RouteReason.LLM_FAILED_DEFAULT, detail)

    def _rules_or_default(self, features: Features) -> RoutingDecision:
        match = evaluate_rules(features)
        if match is not None:
            return self._rule_decision(match)
        detail = f"no rule matched; default tier {self.default_tier.value}"
        return self._decision(self.default_tier, RouteReason.DEFAULT_TIER, detail)

    def _rule_decision(self, match: RuleMatch) -> RoutingDecision:
        return self._decision(match.tier, match.reason, f"{match.reason.value}: {match.detail}")

    def _decision(self, tier: Tier, reason: RouteReason, detail: str) -> RoutingDecision:
        return RoutingDecision(group=tier.value, strategy=self.strategy, reason=reason, detail=detail)

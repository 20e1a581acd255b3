"""Shadow mode: a candidate strategy decides beside the live one, and is never acted on.

`ShadowRouter` gives the candidate's decision for an auto-routed request. Most
candidates decide inline, at the cost of a learned score (well under 1 ms):
`learned`, `rule`, and every judge strategy (`llm`, `hybrid`, `tool`) scored
offline exactly as `octoroute score` does it, with the learned scorer standing
in for the judge (reason `learned_instead_of_judge`). Only with `allow_judge`
does a judge candidate really ask the router model; then `inline` returns None
(or, for `hybrid`, the rule that matched) and the caller runs `judged` in the
background through `ShadowTasks`, which bounds how many are in flight and
refuses the rest, so a live request never waits for its shadow.

Nothing here does I/O or reads the clock: the judge is the injected `JudgeFn`,
the random source for sampling is passed in, and `ShadowTasks` only schedules
coroutines it is given.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from octoroute.config.models import JUDGE_STRATEGIES, RoutingConfig, ShadowConfig
from octoroute.core.types import Features, RoutingDecision, Strategy, Tier
from octoroute.routing.router import JudgeFn, Router, to_decision
from octoroute.routing.rules import evaluate_rules
from octoroute.routing.scoring import OfflineScorer, ScoreModel, build_offline_scorer, from_rule, model_at


class ShadowRouter:
    """The candidate of `[routing.shadow]`.

    Usage::

        shadow = ShadowRouter(config.routing.shadow, config.routing, Tier.BALANCED, judge)
        decision = shadow.inline(features, text)   # None: run `await shadow.judged(...)` in the background
    """

    def __init__(
        self,
        shadow: ShadowConfig,
        routing: RoutingConfig,
        default_tier: Tier,
        judge: JudgeFn | None,
        *,
        model: ScoreModel | None = None,
    ) -> None:
        self.strategy = shadow.strategy
        self.sample = shadow.sample
        self.asks_judge = shadow.allow_judge and shadow.strategy in JUDGE_STRATEGIES
        if shadow.learned_weights is not None:  # the candidate's own model
            model = model_at(shadow.learned_weights)
        self._offline: OfflineScorer | None = None
        self._router: Router | None = None
        if self.asks_judge:
            self._router = Router.from_config(
                routing, judge, default_tier=default_tier, strategy=shadow.strategy, model=model
            )
        else:
            self._offline = build_offline_scorer(routing, default_tier, strategy=shadow.strategy, model=model)

    @property
    def model_version(self) -> str | None:
        """The version of the learned model the candidate scores with; None when it uses none."""
        learned = self._offline.learned if self._offline is not None else None
        if learned is None and self._router is not None:
            learned = self._router.learned
        return None if learned is None else learned.model.version

    def sampled(self, rng: random.Random) -> bool:
        """Is this request shadowed? Always at `sample = 1`; else one draw from `rng`."""
        return self.sample >= 1.0 or rng.random() < self.sample

    def inline(self, features: Features, text: str) -> RoutingDecision | None:
        """The candidate's decision now, or None when it must ask the judge (`judged`)."""
        if self._offline is not None:
            return to_decision(self._offline.score(features, text))
        if self.strategy is Strategy.HYBRID:  # hybrid asks the judge only when no rule matches
            match = evaluate_rules(features)
            if match is not None:
                return to_decision(from_rule(match, Strategy.HYBRID))
        return None

    async def judged(self, features: Features, text: str) -> RoutingDecision:
        """The candidate's decision after asking the router model; never raises for a
        judge failure (the strategy's own fallback decides)."""
        if self._router is None:
            raise RuntimeError("this shadow candidate does not ask the judge; use inline()")
        return await self._router.decide(features, text)


class ShadowTasks:
    """Background shadow decisions, at most `limit` in flight.

    Usage: `if not tasks.start(lambda: work(...)): count_the_drop()`; `await tasks.close()`
    at shutdown cancels whatever is still running.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, work: Callable[[], Coroutine[Any, Any, None]], name: str = "octoroute-shadow") -> bool:
        """Run `work()` as a task; False (and nothing started) when `limit` are already running."""
        if len(self._tasks) >= self.limit:
            return False
        task = asyncio.get_running_loop().create_task(work(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def close(self) -> None:
        """Cancel every pending task and wait until all have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

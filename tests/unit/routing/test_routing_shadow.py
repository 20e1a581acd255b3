"""Shadow mode's candidate: inline when offline, through the judge only when allowed,
sampling from the injected random source, and the bound on background tasks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from tests.support import make_features
from tests.unit.routing.test_routing_scoring import FakeModel

from octoroute.config.models import RoutingConfig, ShadowConfig
from octoroute.core.types import Importance, JudgeFailure, RouteReason, Strategy, TaskType, Tier
from octoroute.routing.router import JUDGE_MODEL_PLACEHOLDER, JudgeUnavailable
from octoroute.routing.shadow import ShadowRouter, ShadowTasks

CASUAL = make_features(10, TaskType.CASUAL_CHAT)  # rule 1 -> fast
NO_RULE = make_features(50, TaskType.CASUAL_CHAT, Importance.HIGH)  # no rule matches


def shadow(strategy: Strategy, *, allow_judge: bool = False, sample: float = 1.0, judge=None, model=None):
    config = ShadowConfig(strategy=strategy, allow_judge=allow_judge, sample=sample)
    return ShadowRouter(config, RoutingConfig(strategy=Strategy.RULE), Tier.BALANCED, judge, model=model)


class Judge:
    """Records every judge body and fails it as unparseable, so the strategy's own
    fallback decides (what a good answer does is tested over real HTTP in
    tests/integration/test_shadow.py)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    async def __call__(self, body: dict[str, object]) -> Any:
        self.bodies.append(body)
        raise JudgeUnavailable(JudgeFailure.UNPARSEABLE, "no usable answer")


def test_a_rule_candidate_decides_inline_without_a_model():
    candidate = shadow(Strategy.RULE)
    assert not candidate.asks_judge
    decision = candidate.inline(CASUAL, "hi")
    assert decision is not None
    assert (decision.group, decision.strategy, decision.reason, decision.score) == (
        "fast",
        Strategy.RULE,
        RouteReason.RULE_CASUAL_SHORT,
        0.0,
    )


@pytest.mark.parametrize("strategy", [Strategy.LLM, Strategy.HYBRID, Strategy.TOOL])
def test_a_judge_candidate_without_allow_judge_is_scored_offline_and_never_asks(strategy):
    judge = Judge()
    model = FakeModel({"a hard question": 0.6})  # + 0.25 for importance high
    candidate = shadow(strategy, judge=judge, model=model)
    assert not candidate.asks_judge
    decision = candidate.inline(NO_RULE, "a hard question")
    assert decision is not None
    assert (decision.group, decision.reason) == ("deep", RouteReason.LEARNED_INSTEAD_OF_JUDGE)
    assert decision.score == pytest.approx(0.85)
    assert judge.bodies == []
    assert model.seen == ["a hard question"]


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [(Strategy.LLM, RouteReason.LLM_FAILED_RULE), (Strategy.TOOL, RouteReason.TOOL_FAILED_RULE)],
)
def test_an_llm_or_tool_candidate_with_allow_judge_asks_the_router_model(strategy, reason):
    judge = Judge()
    candidate = shadow(strategy, allow_judge=True, judge=judge)
    assert candidate.asks_judge
    assert candidate.inline(CASUAL, "hi") is None  # always the router model, even where a rule matches
    decision = asyncio.run(candidate.judged(CASUAL, "hi"))
    assert (decision.group, decision.strategy, decision.reason) == ("fast", strategy, reason)
    assert [b["model"] for b in judge.bodies] == [JUDGE_MODEL_PLACEHOLDER]


def test_a_hybrid_candidate_with_allow_judge_asks_only_when_no_rule_matches():
    judge = Judge()
    candidate = shadow(Strategy.HYBRID, allow_judge=True, judge=judge)
    matched = candidate.inline(CASUAL, "hi")
    assert matched is not None
    assert matched.reason is RouteReason.RULE_CASUAL_SHORT
    assert candidate.inline(NO_RULE, "q") is None
    decision = asyncio.run(candidate.judged(NO_RULE, "q"))
    assert (decision.group, decision.reason) == ("balanced", RouteReason.LLM_FAILED_DEFAULT)
    assert len(judge.bodies) == 1


def test_a_failing_judge_falls_back_like_the_strategy_does():
    candidate = shadow(Strategy.LLM, allow_judge=True, judge=None)  # no judge: unavailable
    decision = asyncio.run(candidate.judged(CASUAL, "hi"))
    assert (decision.group, decision.reason) == ("fast", RouteReason.LLM_FAILED_RULE)


def test_an_offline_candidate_cannot_be_judged():
    with pytest.raises(RuntimeError):
        asyncio.run(shadow(Strategy.RULE).judged(CASUAL, "hi"))


def test_sampling_draws_from_the_given_random_source():
    always = shadow(Strategy.RULE)
    rng = random.Random(7)
    assert all(always.sampled(rng) for _ in range(100))
    assert rng.random() == random.Random(7).random()  # sample = 1 draws nothing
    quarter = shadow(Strategy.RULE, sample=0.25)
    hits = sum(quarter.sampled(random.Random(seed)) for seed in range(2000))
    expected = sum(random.Random(seed).random() < 0.25 for seed in range(2000))
    assert hits == expected
    assert 400 < hits < 600


def test_shadow_tasks_refuse_work_past_their_limit_and_cancel_on_close():
    async def scenario() -> tuple[list[bool], int, list[str], int]:
        tasks = ShadowTasks(2)
        gate = asyncio.Event()
        ran: list[str] = []

        async def work(name: str) -> None:
            ran.append(name)
            await gate.wait()
            ran.append(f"{name} done")

        started = [tasks.start(lambda n=n: work(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0)  # let the started tasks reach the gate
        pending_before = tasks.pending
        gate.set()
        await asyncio.gather(*asyncio.all_tasks() - {asyncio.current_task()})
        tasks.start(lambda: work("d"))
        gate.clear()
        await asyncio.sleep(0)
        await tasks.close()
        return started, pending_before, ran, tasks.pending

    started, pending_before, ran, pending_after = asyncio.run(scenario())
    assert started == [True, True, False]
    assert pending_before == 2
    assert ran == ["a", "b", "a done", "b done", "d"]  # "c" never ran; "d" was cancelled at the gate
    assert pending_after == 0


def test_shadow_tasks_need_a_positive_limit():
    with pytest.raises(ValueError, match="at least 1"):
        ShadowTasks(0)

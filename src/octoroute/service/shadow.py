"""Shadow mode: a candidate strategy shown the auto-routed requests after the live
decision, inline or as a bounded background task, and the pairs it produced
counted and recorded. The live decision and its routing time are the same as without
it, and a failure of the candidate never fails the live request.
"""

from __future__ import annotations

import asyncio
import logging

from octoroute.core.types import Features, RoutingDecision, Strategy
from octoroute.observe.observer import RequestTrace
from octoroute.routing.features import last_user_text
from octoroute.routing.shadow import ShadowRouter
from octoroute.service.call import ChatCall, features_of
from octoroute.service.decision import settle_decision
from octoroute.service.fields import GatewayFields

shadow_log = logging.getLogger("octoroute.shadow")


class ShadowMode(GatewayFields):
    """`Gateway`'s shadow-mode candidate."""

    def shadow_decide(self, call: ChatCall, live: RoutingDecision, trace: RequestTrace | None) -> None:
        """Show an auto-routed request to shadow mode's candidate, after the live decision
        (so routing time and the live decision are the same as without it). An offline
        candidate decides now and is recorded on `trace`; one that asks the router model
        runs in the background (or is dropped and counted when too many are pending)."""
        shadow = self.shadow
        if shadow is None or live.strategy is Strategy.DIRECT or not shadow.sampled(self.rng):
            return
        features, text, request_id = features_of(call), last_user_text(call.body["messages"]), call.request_id
        try:
            found = shadow.inline(features, text)
        except Exception:  # the candidate's own failure must never fail the live request
            shadow_log.exception("shadow decision for request %s failed", request_id)
            return
        if found is not None:
            self._shadow_decided(shadow, request_id, live, found, trace)
            return
        if trace is not None:
            trace.shadow_strategy = shadow.strategy.value
        if not self.shadow_tasks.start(lambda: self._shadow_judged(shadow, request_id, features, text, live)):
            self.metrics.shadow_dropped(shadow.strategy)

    async def _shadow_judged(
        self, shadow: ShadowRouter, request_id: str, features: Features, text: str, live: RoutingDecision
    ) -> None:
        self.metrics.shadow_pending(shadow.strategy, 1)
        try:
            found = await shadow.judged(features, text)
        except asyncio.CancelledError:
            raise
        except Exception:  # a background task's outermost handler: log it, never lose it silently
            shadow_log.exception("shadow decision for request %s failed", request_id)
            return
        finally:
            self.metrics.shadow_pending(shadow.strategy, -1)
        self._shadow_decided(shadow, request_id, live, found, None)

    def _shadow_decided(
        self,
        shadow: ShadowRouter,
        request_id: str,
        live: RoutingDecision,
        found: RoutingDecision,
        trace: RequestTrace | None,
    ) -> None:
        """Count the pair and record it: on the request's trace, or as a `shadow` event
        when the request's record may already be written."""
        settled = settle_decision(found, self.topology.groups, self.default_tier)
        self.metrics.shadow_decided(shadow.strategy, live.group, settled.group)
        score = settled.score
        if trace is not None:
            trace.shadow_strategy, trace.shadow_tier = shadow.strategy.value, settled.group
            trace.shadow_score, trace.shadow_reason = score, settled.reason.value
            return
        self.observer.shadow_judged(
            {
                "request_id": request_id,
                "tier": live.group,
                "strategy": live.strategy.value,
                "score": None if live.score is None else round(live.score, 4),
                "shadow_strategy": shadow.strategy.value,
                "shadow_tier": settled.group,
                "shadow_score": None if score is None else round(score, 4),
                "shadow_reason": settled.reason.value,
            }
        )

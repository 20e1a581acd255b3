"""Where a request goes: model names and aliases resolved, operations checked, and
`auto` asked of the router (`Deciding.decide`); `settle_decision` moves a decision
for a tier without endpoints.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from octoroute.core.errors import InvalidRequest, ModelNotFound
from octoroute.core.types import Operation, RouteReason, RoutingDecision, Strategy, Tier
from octoroute.fleet.operations import Ask, able_endpoints, group_for_auto, unable_reason
from octoroute.routing.features import last_user_text
from octoroute.routing.scoring import nearest_tier
from octoroute.service.call import AUTO, ChatCall, features_of
from octoroute.service.fields import GatewayFields


def settle_decision(decision: RoutingDecision, groups: Collection[str], default: str) -> RoutingDecision:
    """A decision for a tier with no endpoints goes elsewhere, saying so: a learned
    score to the nearest configured tier (stronger first), a 1.0 strategy's tier to
    the default tier, as 1.0 does."""
    if decision.group in groups:
        return decision
    target = default
    if decision.strategy is Strategy.LEARNED:
        target = nearest_tier(Tier(decision.group), groups) or default
    detail = f"{decision.group} has no endpoints; {decision.detail}"
    reason = decision.reason if decision.strategy is Strategy.LEARNED else RouteReason.DEFAULT_TIER
    return replace(decision, group=str(target), reason=reason, detail=detail)


class Deciding(GatewayFields):
    """`Gateway`'s decisions: from a `ChatCall` to a `RoutingDecision`."""

    def resolve_model(self, model: str) -> str:
        """`model` itself when it is 'auto', a group or an endpoint id, else an alias's target."""
        if model == AUTO or model in self.topology.groups or model in self.topology.endpoints:
            return model
        target = self.topology.resolve_alias(model)
        if target is None:
            raise ModelNotFound(
                f"model '{model}' does not exist; use 'auto', a group ({', '.join(self.topology.groups)}), "
                "an endpoint id listed by GET /v1/models, or a configured alias",
                param="model",
            )
        return target

    def able(self, ask: Ask) -> frozenset[str]:
        """Ids of the endpoints that may serve `ask` (`fleet.operations`), cached."""
        found = self._able.get(ask)
        if found is None:
            found = self._able[ask] = able_endpoints(self.topology.groups.values(), ask)
        return found

    def decide_operation(self, call: ChatCall) -> RoutingDecision:
        """Embeddings and completions: a named group or endpoint must be able to serve the
        request (else a 400 saying why); `auto` is the default tier when it can, else the
        first group that can, in config order."""
        ask = call.ask
        able = self.able(ask)
        model = self.resolve_model(call.model)
        op = ask.op.value
        if model == AUTO:
            group = group_for_auto(self.topology.groups, self.default_tier, able)
            if group is None:
                raise InvalidRequest(
                    f"no group {unable_reason(ask)}; list the operation in a group's [groups.<name>] serves",
                    param="model",
                )
            return RoutingDecision(group, Strategy.DIRECT, RouteReason.SERVES_OPERATION, f"auto for {op}")
        self._check_serves(model, ask)
        if model in self.topology.endpoints:
            ep = self.topology.endpoints[model]
            return RoutingDecision(ep.group, Strategy.DIRECT, RouteReason.EXPLICIT_ENDPOINT, model, endpoint_id=model)
        return RoutingDecision(model, Strategy.DIRECT, RouteReason.EXPLICIT_GROUP, f"client asked for {model}")

    def _check_serves(self, model: str, ask: Ask) -> None:
        """A named group or endpoint must be able to serve `ask`: else a 400 naming the
        groups that can."""
        able = self.able(ask)
        if model in self.topology.endpoints:
            if model not in able:
                raise InvalidRequest(
                    f"endpoint '{model}' cannot serve this request: it is not one that {unable_reason(ask)}",
                    param="model",
                    code="model_unsupported",
                )
            return
        if not any(ep.id in able for ep in self.topology.groups[model].endpoints):
            others = [g for g, spec in self.topology.groups.items() if any(ep.id in able for ep in spec.endpoints)]
            hint = f"; groups that can: {', '.join(others)}" if others else ""
            raise InvalidRequest(
                f"group '{model}' has no endpoint that {unable_reason(ask)}{hint}",
                param="model",
                code="model_unsupported",
            )

    async def decide(self, call: ChatCall) -> RoutingDecision:
        if call.ask.op is not Operation.CHAT:
            return self.decide_operation(call)
        model = self.resolve_model(call.model)
        if model != AUTO and model not in self._chat_models:
            self._check_serves(model, call.ask)  # raises the 400 that says why
        if model in self.topology.groups:
            return RoutingDecision(model, Strategy.DIRECT, RouteReason.EXPLICIT_GROUP, f"client asked for {model}")
        if model in self.topology.endpoints:
            ep = self.topology.endpoints[model]
            return RoutingDecision(ep.group, Strategy.DIRECT, RouteReason.EXPLICIT_ENDPOINT, model, endpoint_id=model)
        decision = await self.router.decide(features_of(call), last_user_text(call.body["messages"]))
        return settle_decision(decision, self.topology.groups, self.default_tier)

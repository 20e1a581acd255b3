"""A request's size against context windows: the groups it may escalate to, the
`ContextGate` of one request, upstream overflow errors, and what was counted.
"""

from __future__ import annotations

from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import UpstreamContextOverflow, UpstreamError, UpstreamStatusError
from octoroute.core.facts import ContextEvent
from octoroute.core.types import Operation, RoutingDecision
from octoroute.fleet.context import ContextGate, estimate_prompt_tokens, requested_output
from octoroute.protocols.overflow import read_overflow
from octoroute.service.call import ChatCall
from octoroute.service.fields import GatewayFields

UNKNOWN_WINDOW_RANK = 1 << 40  # sorts after every real window


class ContextEscalation(GatewayFields):
    """`Gateway`'s context-window checks for the attempt loop."""

    def _context_chain(self, decision: RoutingDecision) -> tuple[str, ...]:
        """The fallback chain, then every other group, smallest largest-window first: those
        are tried only by a request found too large for something (context escalation)."""
        return self._context_candidates(decision.group)[0]

    def _context_candidates(self, group: str) -> tuple[tuple[str, ...], tuple[EndpointSpec, ...], tuple[str, ...]]:
        """(chain with escalation groups, their endpoints, the escalation groups) for a
        requested group; cached until a window changes."""
        key = (group, self.context.version)
        cached = self._context_chains.get(key)
        if cached is None:
            groups = self.topology.groups
            chain = self.topology.fallback_chain(group)
            rest = [
                g
                for g in groups
                if g not in chain
                and groups[g].options.context_escalation
                and Operation.CHAT in groups[g].options.serves
            ]
            names = (*chain, *sorted(rest, key=self._largest_window))
            cached = (names, tuple(ep for g in names for ep in groups[g].endpoints), names[len(chain) :])
            if len(self._context_chains) >= len(groups):
                self._context_chains.clear()  # older versions
            self._context_chains[key] = cached
        return cached

    def _largest_window(self, group: str) -> int:
        """For ordering escalation groups: groups whose windows are unknown come last."""
        sizes = [self.context.tokens(ep.id) for ep in self.topology.groups[group].endpoints]
        return max(UNKNOWN_WINDOW_RANK if n is None else n for n in sizes)

    def _context_gate(self, call: ChatCall, decision: RoutingDecision) -> ContextGate:
        body = call.body
        if decision.endpoint_id is not None:
            candidates: tuple[EndpointSpec, ...] = (self.topology.endpoints[decision.endpoint_id],)
            extra: tuple[str, ...] = ()
        else:
            _, candidates, extra = self._context_candidates(decision.group)
        return ContextGate(
            self.context, candidates, lambda: estimate_prompt_tokens(body), requested_output(body), extra
        )

    def _overflow_of(self, error: UpstreamError, ep: EndpointSpec, gate: ContextGate) -> UpstreamError:
        """An upstream 4xx saying the request exceeds the endpoint's window becomes an
        `UpstreamContextOverflow` (retried elsewhere, not a health failure); the gate
        learns the sizes it states."""
        if not isinstance(error, UpstreamStatusError) or isinstance(error, UpstreamContextOverflow):
            return error
        overflow = read_overflow(error.status, error.body)
        if overflow is None:
            return error
        gate.record_overflow(ep.id, overflow.prompt_tokens, overflow.window, error.client_message)
        self.metrics.context_event(ep.group, ContextEvent.OVERFLOWED)
        return UpstreamContextOverflow(error, overflow.prompt_tokens, overflow.window)

    def _context_settled(self, gate: ContextGate, served_by: str | None) -> None:
        """Count what the request's size did: endpoints skipped, served after escalating."""
        for group in gate.skipped.values():
            self.metrics.context_event(group, ContextEvent.SKIPPED)
        if served_by is not None and gate.escalating:
            self.metrics.context_event(served_by, ContextEvent.ESCALATED)

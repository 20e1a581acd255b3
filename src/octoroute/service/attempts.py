"""The attempt loop every ingress shares (`AttemptLoop.serve`): attempts driven by
`fleet.policy.AttemptPlan` until one reaches its commit point (a whole answer, or a
stream's first complete event), each holding a slot of its endpoint; before that
point a failure is retried elsewhere, after it the relay owns the stream. The
`Outcome` is what the handler sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from octoroute.config.topology import EndpointSpec, GroupSpec
from octoroute.core.errors import (
    EndpointsCoolingDown,
    ErrorType,
    NoHealthyEndpoint,
    OctorouteError,
    Pressure,
    UpstreamError,
    UpstreamStatusError,
)
from octoroute.core.facts import ContextEvent
from octoroute.core.types import Api, DegradationKind, Operation, RoutingDecision
from octoroute.fleet.affinity import AffinityResult
from octoroute.fleet.capabilities import MISSING_TOOLS, MISSING_VISION, Needs, missing, selection_needs
from octoroute.fleet.context import ContextGate
from octoroute.fleet.policy import Attempt, AttemptPlan
from octoroute.fleet.rotation import loading_backoff, pressure_of_error, unserved_error
from octoroute.fleet.selector import GroupSelector
from octoroute.fleet.slots import Claim
from octoroute.observe.metrics import FleetRefusal
from octoroute.observe.observer import RequestTrace
from octoroute.observe.tracing import SpanHandle
from octoroute.protocols.completions import ends_infill_stream
from octoroute.protocols.sse import ends_responses_stream
from octoroute.service.bodies import (
    INFILL_PATH,
    RESPONSES_PATH,
    body_for,
    chat_reply,
    headers_for,
    operation_reply,
    operation_request,
)
from octoroute.service.call import ChatCall, asks_usage_for
from octoroute.service.decision import Deciding
from octoroute.service.escalation import ContextEscalation
from octoroute.service.health import HealthKeeping, describe_upstream_error
from octoroute.upstream.client import UpstreamPath, UpstreamReply, UpstreamStream

log = logging.getLogger("octoroute.health")
upstream_log = logging.getLogger("octoroute.upstream")
CAPABLE_FIRST = 100_000  # added to the priority of capable endpoints: above any configured priority (±1000)
LACKS = {
    MISSING_TOOLS: DegradationKind.ENDPOINT_LACKS_TOOLS.value,
    MISSING_VISION: DegradationKind.ENDPOINT_LACKS_VISION.value,
}


def _nothing() -> None:
    return None


@dataclass(slots=True)
class Outcome:
    """What serving a request produced; exactly one of `reply` / `stream` is set."""

    decision: RoutingDecision
    endpoint: EndpointSpec
    group: str
    attempts: int
    fallback_from: str | None
    reply: UpstreamReply | None = None
    stream: UpstreamStream | None = None
    degraded: tuple[str, ...] = ()  # what the serving endpoint lacks for this request (DegradationKind values)
    sent_at: float = 0.0  # perf_counter when the serving attempt was sent (a stream's duration counts from it)
    fail_open: bool = False  # served by an endpoint tried although every one was marked unhealthy
    affinity: AffinityResult | None = None  # None: affinity is off
    release: Callable[[], None] = _nothing  # frees the endpoint's slot: the relay calls it when a stream ends

    @property
    def reason_header(self) -> str:
        reason = self.decision.reason.value
        if self.fallback_from is not None:
            return f"{reason}; fallback from {self.fallback_from} to {self.group}"
        return reason


NO_NEEDS = Needs()


def _only(able: frozenset[str], allows: Callable[[str], bool]) -> Callable[[str], bool]:
    """`allows`, limited to the endpoints in `able`."""
    return lambda endpoint_id: endpoint_id in able and allows(endpoint_id)


class AttemptLoop(ContextEscalation, Deciding, HealthKeeping):
    """`Gateway`'s attempt loop and the bookkeeping of each attempt."""

    def _selectors_for(self, needs: Needs) -> Mapping[str, GroupSelector]:
        """Selectors that try endpoints able to serve `needs` (tools, images) before the
        rest, keeping priority and weight order within each part; cached per need."""
        if not (needs.tools or needs.vision):
            return self.selectors
        key = (needs.tools, needs.vision)
        selectors = self._capable_selectors.get(key)
        if selectors is None:
            plain = Needs(tools=needs.tools, vision=needs.vision)
            selectors = {
                name: GroupSelector(
                    tuple(
                        ep
                        if missing(plain, self.capabilities.lookup(ep.name))
                        else replace(ep, priority=ep.priority + CAPABLE_FIRST)
                        for ep in group.endpoints
                    )
                )
                for name, group in self.topology.groups.items()
            }
            self._capable_selectors[key] = selectors
        return selectors

    def _lacking(self, needs: Needs, ep: EndpointSpec) -> tuple[str, ...]:
        """What the serving endpoint's model lacks for this request (tools, images), by the
        capability registry; context size is not judged, since unknown models get a guess."""
        if not (needs.tools or needs.vision):
            return ()
        lacks = missing(Needs(tools=needs.tools, vision=needs.vision), self.capabilities.lookup(ep.name))
        return tuple(LACKS[m] for m in sorted(lacks))

    def _plan(
        self,
        decision: RoutingDecision,
        needs: Needs,
        gate: ContextGate,
        claim: Claim | None = None,
        able: frozenset[str] | None = None,
    ) -> AttemptPlan:
        """`able`: when given, only these endpoints are tried (the request's operation)."""
        gate_allows = gate.allows if able is None else _only(able, gate.allows)
        if decision.endpoint_id is not None:
            ep = self.topology.endpoints[decision.endpoint_id]
            pinned = GroupSpec(name=ep.group, endpoints=(ep,), fallback=None)
            return AttemptPlan(
                [pinned], {ep.group: GroupSelector((ep,))}, gate_allows, self.config.retry, self.rng, occupancy=claim
            )
        chain = [self.topology.groups[g] for g in self._context_chain(decision)]
        fail_open = self._fail_open_pick if self.config.health.fail_open else None
        return AttemptPlan(
            chain,
            self._selectors_for(needs),
            lambda i: self.is_available(i) and gate_allows(i),
            self.config.retry,
            self.rng,
            None if fail_open is None else lambda eps: fail_open([ep for ep in eps if gate_allows(ep.id)]),
            claim,
        )

    def _exhausted(self, plan: AttemptPlan, decision: RoutingDecision) -> OctorouteError:
        """The error for a request no attempt served (`fleet.rotation.unserved_error`)."""
        if decision.endpoint_id is not None:
            ids = [decision.endpoint_id]
        else:
            chain = self.topology.fallback_chain(decision.group)
            ids = [ep.id for g in chain for ep in self.topology.groups[g].endpoints]
        return unserved_error(plan, self.rotation, ids, self.clock(), self.config.health.check_interval_seconds)

    def record_mid_stream(self, ep: EndpointSpec, error: UpstreamError) -> None:
        self.metrics.mid_stream(ep.id)
        self._record(ep, error)

    async def serve(
        self,
        call: ChatCall,
        decision: RoutingDecision,
        extra_headers: Mapping[str, str],
        trace: RequestTrace | None = None,
    ) -> Outcome:
        """Run attempts until one commits; raises the plan's error when none does.
        `trace` (when given) learns the attempts and carries the request's span.
        Each attempt holds a slot of its endpoint; when every candidate is full the
        request waits for one (`admission.Admission.wait`)."""
        chat = call.ask.op is Operation.CHAT
        needs = selection_needs(call.body) if chat else NO_NEEDS
        gate = self._context_gate(call, decision)
        seat = self.slots.seat(decision.group, call.body, call.anthropic_body, call.session, affine=chat)
        able = None if chat and decision.group in self._chat_plain else self.able(call.ask)
        plan = self._plan(decision, needs, gate, seat.claim, able)
        group = decision.group
        try:
            while True:
                attempt = plan.next_attempt()
                if attempt is None:
                    if plan.blocked is None:
                        break
                    await seat.wait(plan.blocked)
                    continue
                ep = attempt.endpoint
                seat.take(ep.id)
                if attempt.backoff_seconds > 0:
                    await asyncio.sleep(attempt.backoff_seconds)
                if attempt.group != group:
                    self.observer.fallback(call.request_id, group, attempt.group)
                    group = attempt.group
                if attempt.fail_open:
                    self._note_fail_open(call, attempt)
                span = self._attempt_started(attempt, trace)
                group_spec = self.topology.groups[ep.group]
                where: UpstreamPath | None = None
                if chat:
                    body, dropped = body_for(call, ep, asks_usage_for(call, group_spec), group_spec.options)
                else:
                    (body, where), dropped = operation_request(call, ep, asks_usage_for(call, group_spec)), ()
                sent_at = time.perf_counter()
                try:
                    reply, stream = await self._call_upstream(call, ep, body, headers_for(ep, extra_headers), where)
                    if reply is not None:
                        reply = (
                            chat_reply(call, ep, reply) if where is None else operation_reply(call, ep, where, reply)
                        )
                    latency = stream.first_byte_ms if stream is not None else reply.latency_ms if reply else 0.0
                except UpstreamError as raised:
                    seat.release()
                    error = self._overflow_of(raised, ep, gate)
                    error.attempt = attempt.number
                    self._attempt_failed(ep, error, sent_at, span)
                    plan.record(error)
                    continue
                except asyncio.CancelledError:  # the client went away
                    if span is not None:
                        span.set("octoroute.outcome", "cancelled")
                        span.end("the client went away")
                    raise
                self._attempt_committed(ep, stream, sent_at, span)
                self._record(ep, None, latency)
                plan.record(None)
                self._context_settled(gate, attempt.group)
                return Outcome(
                    decision=decision,
                    endpoint=ep,
                    group=attempt.group,
                    attempts=attempt.number,
                    fallback_from=decision.group if attempt.is_fallback else None,
                    reply=reply,
                    stream=stream,
                    degraded=(*dropped, *self._lacking(needs, ep)),
                    sent_at=sent_at,
                    fail_open=attempt.fail_open,
                    affinity=seat.served(ep.id, attempt.group),
                    release=seat.keep() if stream is not None else seat.release(),
                )
        finally:
            seat.close()
        self._context_settled(gate, None)
        rejection = gate.rejection() if plan.final_error is None else None
        if rejection is not None:
            self.metrics.context_event(decision.group, ContextEvent.REJECTED)
            rejection.attempts = plan.attempts_made
            raise rejection
        unserved = self._exhausted(plan, decision)
        if isinstance(unserved, EndpointsCoolingDown):
            self.metrics.fleet_refused(FleetRefusal.COOLING_DOWN)
        elif isinstance(unserved, NoHealthyEndpoint):
            self.metrics.fleet_refused(FleetRefusal.NO_HEALTHY)
        raise unserved

    async def _call_upstream(
        self,
        call: ChatCall,
        ep: EndpointSpec,
        body: bytes,
        extra_headers: Mapping[str, str],
        where: UpstreamPath | None = None,
    ) -> tuple[UpstreamReply | None, UpstreamStream | None]:
        """One attempt up to its commit point. A server answering 503 while it loads its
        model is asked again with backoff (`[health] loading_retry_seconds`) until the
        endpoint's `total` timeout would pass; then its 503 is the attempt's error."""
        deadline = self.clock() + ep.timeouts.total
        waits = 0
        while True:
            try:
                if call.responses_body is not None and ep.responses and ep.kind is Api.OPENAI:
                    where = RESPONSES_PATH  # it speaks Responses itself: the client's request as it came
                if call.stream:
                    ends = ends_infill_stream if where is INFILL_PATH else None
                    if where is RESPONSES_PATH:
                        ends = ends_responses_stream
                    return None, await self.pool.open_stream(ep, body, extra_headers, where, ends)
                return await self.pool.complete(ep, body, extra_headers, where), None
            except UpstreamStatusError as error:
                if pressure_of_error(error) is not Pressure.LOADING:
                    raise
                pause = loading_backoff(waits, self.config.health.loading_retry_seconds)
                if self.clock() + pause > deadline:
                    raise
                waits += 1
                self.metrics.loading_wait(ep.id)
                log.info("endpoint %s is loading its model (%s); asking again in %.2fs", ep.id, error.message, pause)
                await asyncio.sleep(pause)

    def _note_fail_open(self, call: ChatCall, attempt: Attempt) -> None:
        ep = attempt.endpoint
        failed = self.board.get(ep.id).last_check_at
        ago = "never checked" if failed is None else f"last failed {self.clock() - failed:.1f}s ago"
        log.warning(
            "fail-open: no endpoint for '%s' is healthy; request %s tries %s (%s)",
            attempt.group,
            call.request_id,
            ep.id,
            ago,
        )
        self.observer.failed_open(call.request_id, attempt.group, ep.id)

    def _attempt_started(self, attempt: Attempt, trace: RequestTrace | None) -> SpanHandle | None:
        """Count the attempt (and the retry it is, after the first); its span, when tracing."""
        if attempt.number > 1:
            self.metrics.retry()
        self.metrics.attempt_started(attempt.group)
        if trace is None:
            return None
        trace.attempts = attempt.number
        tracing = self.observer.tracing
        if tracing is None or trace.span is None:
            return None
        return tracing.attempt(trace.span, attempt.endpoint.id, attempt.group, attempt.number)

    def _attempt_failed(self, ep: EndpointSpec, error: UpstreamError, sent_at: float, span: SpanHandle | None) -> None:
        # What the upstream said (redacted, bounded), once per failed attempt; a 4xx that is the
        # request's fault is routine, anything else deserves attention.
        level = logging.INFO if error.error_type is ErrorType.HTTP_4XX else logging.WARNING
        upstream_log.log(level, "attempt %d at %s failed: %s", error.attempt, ep.id, describe_upstream_error(error))
        self.metrics.attempt_finished(ep.id, error.error_type, time.perf_counter() - sent_at)
        if span is not None:
            span.set("octoroute.outcome", error.error_type.value)
            span.end(error.message)
        self._record(ep, error)

    def _attempt_committed(
        self, ep: EndpointSpec, stream: UpstreamStream | None, sent_at: float, span: SpanHandle | None
    ) -> None:
        """A whole answer's duration is known now; a stream's only when it ends (the relay
        records it), but its first event's time is."""
        if stream is not None:
            self.metrics.attempt_finished(ep.id, None, None)
            self.metrics.first_token(ep.id, stream.first_byte_ms / 1000)
        else:
            self.metrics.attempt_finished(ep.id, None, time.perf_counter() - sent_at)
        if span is not None:
            span.set("octoroute.outcome", "ok")
            span.end()

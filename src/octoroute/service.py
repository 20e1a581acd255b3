"""The pipeline every ingress shares: decode → decide → select → attempt loop.

No web framework here: the server hands in decoded requests and gets back either
a complete upstream reply or a stream past its commit point, plus everything the
response headers and the access log need. The attempt loop is driven by
`fleet.policy.AttemptPlan`, which decides where the next attempt goes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from octoroute import __version__
from octoroute.admission import Admission
from octoroute.config.models import Config, GroupOptions
from octoroute.config.topology import EndpointSpec, GroupSpec, Topology, default_tier
from octoroute.core.errors import (
    COOLDOWN_PRESSURES,
    ErrorType,
    InvalidRequest,
    ModelNotFound,
    OctorouteError,
    Pressure,
    TimeoutPhase,
    UpstreamContextOverflow,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from octoroute.core.facts import ContextEvent, ServerFacts
from octoroute.core.state import StateStore
from octoroute.core.types import (
    Api,
    DegradationKind,
    Features,
    Fim,
    Importance,
    JudgeFailure,
    Operation,
    RouteReason,
    RoutingDecision,
    Strategy,
    TaskType,
    Tier,
)
from octoroute.fleet.affinity import AffinityResult, AffinityTable, session_of
from octoroute.fleet.capabilities import (
    MISSING_TOOLS,
    MISSING_VISION,
    CapabilityRegistry,
    Needs,
    missing,
    selection_needs,
)
from octoroute.fleet.carry import carried_endpoints
from octoroute.fleet.context import ContextBook, ContextGate, estimate_prompt_tokens, requested_output
from octoroute.fleet.health import (
    COOLDOWNS,
    PROBE_LEASE_SHARE,
    VERDICTS,
    HealthBoard,
    SharedVerdicts,
    Transition,
)
from octoroute.fleet.inflight import InflightShare
from octoroute.fleet.operations import CHAT, Ask, able_endpoints, group_for_auto, unable_reason
from octoroute.fleet.policy import Attempt, AttemptPlan, most_likely_recovered
from octoroute.fleet.rotation import (
    Rotation,
    cooldown_seconds,
    loading_backoff,
    pressure_of_error,
    unserved_error,
)
from octoroute.fleet.selector import GroupSelector, build_selectors
from octoroute.fleet.slots import Claim, SlotBoard
from octoroute.observe.metrics import Recorder
from octoroute.observe.observer import Observer, RequestTrace
from octoroute.observe.snapshot import EndpointInfo, SnapshotInputs, build_snapshot
from octoroute.observe.tracing import SpanHandle
from octoroute.observe.usage import prices_of
from octoroute.protocols.completions import ends_infill_stream, from_infill, to_infill
from octoroute.protocols.egress import translated_body
from octoroute.protocols.embeddings import from_ollama_embed, to_ollama_embed
from octoroute.protocols.filters import OutputFilter
from octoroute.protocols.openai import check_chat_body
from octoroute.protocols.overflow import read_overflow
from octoroute.protocols.postprocess import PostProcess, declared_tools
from octoroute.protocols.repair import call_id_factory
from octoroute.protocols.sse import ends_responses_stream
from octoroute.protocols.thinking import ThinkingRequest, read_thinking
from octoroute.protocols.translate_request_reverse import openai_to_anthropic_request
from octoroute.protocols.translate_response import anthropic_to_openai_response
from octoroute.protocols.usage import wants_usage
from octoroute.routing.features import extract_features, last_user_text
from octoroute.routing.router import JudgeUnavailable, Router
from octoroute.routing.scoring import ScoreModel, nearest_tier
from octoroute.routing.shadow import ShadowRouter, ShadowTasks
from octoroute.upstream.client import UpstreamPath, UpstreamPool, UpstreamReply, UpstreamStream
from octoroute.upstream.discovery import discover

log = logging.getLogger("octoroute.health")
COOLDOWN_SLACK_SECONDS = 0.5  # a shared cooldown this close to the local one is the same one
shadow_log = logging.getLogger("octoroute.shadow")
upstream_log = logging.getLogger("octoroute.upstream")
CAPABLE_FIRST = 100_000  # added to the priority of capable endpoints: above any configured priority (±1000)
LACKS = {
    MISSING_TOOLS: DegradationKind.ENDPOINT_LACKS_TOOLS.value,
    MISSING_VISION: DegradationKind.ENDPOINT_LACKS_VISION.value,
}
AUTO = "auto"
UNKNOWN_WINDOW_RANK = 1 << 40  # sorts after every real window
HINT_FIELDS = ("importance", "task_type")


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One decoded chat request in the internal form."""

    body: dict[str, Any]
    model: str
    stream: bool
    importance: Importance
    task_type: TaskType | None
    request_id: str
    anthropic_body: dict[str, Any] | None = None  # the client's own request when it spoke the Messages API
    # The client's own request when it spoke the Responses API (history included), passed as it is
    # to endpoints that speak Responses natively (`responses = true`); `body` is its chat translation.
    responses_body: dict[str, Any] | None = None
    # thinking asked for in another API's terms (a Responses client's `reasoning.effort`, Ollama's
    # `think`), shaped per group by `protocols.egress`
    thinking: ThinkingRequest | None = None
    session: str | None = None  # an explicit conversation key from a header (fleet.affinity.session_of)
    ask: Ask = CHAT  # the operation (chat, embeddings, completions) and what narrows its endpoints


EMBEDDINGS_PATH = UpstreamPath("/embeddings")
OLLAMA_EMBED_PATH = UpstreamPath("/api/embed", root=True)
COMPLETIONS_PATH = UpstreamPath("/completions")
INFILL_PATH = UpstreamPath("/infill", root=True)
RESPONSES_PATH = UpstreamPath("/responses")  # endpoints with `responses = true`


def upstream_path(call: ChatCall, ep: EndpointSpec) -> UpstreamPath:
    """Where an embeddings or completions request goes on `ep`'s server."""
    if call.ask.op is Operation.EMBEDDINGS:
        return OLLAMA_EMBED_PATH if ep.kind is Api.OLLAMA else EMBEDDINGS_PATH
    return INFILL_PATH if call.ask.fim and ep.fim is Fim.INFILL else COMPLETIONS_PATH


def operation_request(call: ChatCall, ep: EndpointSpec, ask_usage: bool = False) -> tuple[bytes, UpstreamPath]:
    """The body and path of an embeddings or completions request for `ep` (which
    `fleet.operations.can_serve` allowed): passed on with the endpoint's model name, or
    translated for Ollama's /api/embed and llama.cpp's /infill."""
    where = upstream_path(call, ep)
    if where is OLLAMA_EMBED_PATH:
        return orjson.dumps(to_ollama_embed(call.body, ep.name)), where
    if where is EMBEDDINGS_PATH:
        return orjson.dumps({**call.body, "model": ep.name}), where
    if where is INFILL_PATH:
        return orjson.dumps(to_infill(call.body, ep)), where
    return upstream_body(call.body, ep, ask_usage), where


def operation_reply(call: ChatCall, ep: EndpointSpec, where: UpstreamPath, reply: UpstreamReply) -> UpstreamReply:
    """A whole embeddings or completions answer in OpenAI's shape: as received, or
    translated from Ollama's /api/embed or llama.cpp's /infill. An answer that is not
    what the path answers fails the attempt (`UpstreamProtocolError`: tried elsewhere)."""
    translated: Mapping[str, Any] | None
    if where is OLLAMA_EMBED_PATH:
        encoding = call.body.get("encoding_format")
        translated = from_ollama_embed(reply.payload, ep.name, encoding if isinstance(encoding, str) else None)
    elif where is INFILL_PATH:
        translated = from_infill(reply.payload, ep.name, f"cmpl-{call.request_id}", int(time.time()))
    else:
        return reply
    if translated is None:
        raise UpstreamProtocolError(ep.id, f"the answer from {where.path} is not in the shape that API answers in")
    return UpstreamReply(reply.status, orjson.dumps(translated), dict(translated), reply.latency_ms)


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


@dataclass(frozen=True, slots=True)
class Readiness:
    """What `/ready` answers (see `Gateway.readiness`)."""

    ready: bool
    status: str  # "ready", "starting" (first probe round not finished), "unavailable"
    healthy_endpoints: int  # healthy and not failing their latest probe
    unavailable_groups: tuple[str, ...]


def _hint(value: object, enum: type[Importance] | type[TaskType], param: str) -> Any:
    if value is None:
        return None
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidRequest(f"'{param}' must be one of {allowed}; got {value!r}", param=param) from None


def decode_chat(
    body: dict[str, Any], headers: Mapping[str, str], default_importance: Importance, request_id: str
) -> ChatCall:
    """Validate a parsed chat body and lift the routing hints out of it.

    Body fields win over headers; both are removed before forwarding.
    """
    problem = check_chat_body(body)
    if problem is not None:
        raise InvalidRequest(problem[1], param=problem[0])
    # the body's hint, else the header's; most requests give neither, and pay no call for them
    importance = given = body.pop("importance", None)
    header = headers.get("X-Octoroute-Importance")
    if given is not None or header is not None:
        importance = _hint(given, Importance, "importance") or _hint(header, Importance, "X-Octoroute-Importance")
    task_type = given = body.pop("task_type", None)
    header = headers.get("X-Octoroute-Task-Type")
    if given is not None or header is not None:
        task_type = _hint(given, TaskType, "task_type") or _hint(header, TaskType, "X-Octoroute-Task-Type")
    return ChatCall(
        body=body,
        model=str(body.get("model") or AUTO),
        stream=bool(body.get("stream", False)),
        importance=importance or default_importance,
        task_type=task_type,
        request_id=request_id,
        session=session_of(headers),
    )


def asks_usage_for(call: ChatCall, group: GroupSpec) -> bool:
    """Does the gateway ask the upstream for this stream's usage itself (`[groups.X]
    stream_usage`, and the client did not)? Then the relay drops that chunk again."""
    return call.stream and group.options.stream_usage and not wants_usage(call.body)


DEFAULT_GROUP_OPTIONS = GroupOptions()
NO_NEEDS = Needs()


def _only(able: frozenset[str], allows: Callable[[str], bool]) -> Callable[[str], bool]:
    """`allows`, limited to the endpoints in `able`."""
    return lambda endpoint_id: endpoint_id in able and allows(endpoint_id)


def body_for(
    call: ChatCall, ep: EndpointSpec, ask_usage: bool = False, options: GroupOptions = DEFAULT_GROUP_OPTIONS
) -> tuple[bytes, tuple[str, ...]]:
    """The request body in the endpoint's API, and what translating it dropped:
    OpenAI bodies as `upstream_body` makes them (a translated one shaped by the group's
    `options` first); a Responses request untouched but for `model` to an endpoint that
    speaks Responses; for Anthropic-native endpoints the client's own Messages request
    untouched but for `model` (pass-through), or the OpenAI body translated."""
    if ep.kind is not Api.ANTHROPIC:
        if call.responses_body is not None:
            if ep.responses:
                return orjson.dumps({**call.responses_body, "model": ep.name}), ()
            shaped, degraded = translated_body(call.body, call.thinking, options)
            return upstream_body(shaped, ep, ask_usage), degraded
        if call.anthropic_body is None and call.thinking is None:
            return upstream_body(call.body, ep, ask_usage), ()
        wanted = read_thinking(call.anthropic_body) if call.anthropic_body is not None else call.thinking
        shaped, degraded = translated_body(call.body, wanted, options)
        return upstream_body(shaped, ep, ask_usage), degraded
    if call.anthropic_body is not None:
        return orjson.dumps({**call.anthropic_body, "model": ep.name}), ()
    body, lost = openai_to_anthropic_request(
        call.body, default_max_tokens=ep.max_tokens or 4096, late_system=options.late_system
    )
    body["model"] = ep.name
    kinds = {d.kind.value for d in lost}
    if call.thinking is not None and call.thinking.enabled:  # no budget to ask an Anthropic server for
        kinds.add(DegradationKind.THINKING.value)
    return orjson.dumps(body), tuple(sorted(kinds))


def headers_for(ep: EndpointSpec, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The client headers passed on to `ep`: `anthropic-*` ones (`anthropic-beta`,
    `anthropic-version`) only to Anthropic-native endpoints, never to OpenAI-kind ones."""
    if ep.kind is Api.ANTHROPIC or not any(k.lower().startswith("anthropic-") for k in headers):
        return headers
    return {k: v for k, v in headers.items() if not k.lower().startswith("anthropic-")}


def openai_payload(ep: EndpointSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming answer in OpenAI's shape, whatever API the endpoint speaks."""
    if ep.kind is not Api.ANTHROPIC:
        return payload
    converted, _ = anthropic_to_openai_response(payload, model=ep.name, created=int(time.time()))
    return converted


def describe_upstream_error(error: UpstreamError) -> str:
    """The error as an operator wants to read it: for an error status, `HTTP <status>:`
    and the upstream's own message (extracted and redacted by the upstream client)."""
    return error.message


def features_of(call: ChatCall) -> Features:
    """What routing looks at in a request (computed over bounded text)."""
    return extract_features(
        call.body["messages"],
        tools_present=bool(call.body.get("tools")),
        importance=call.importance,
        task_type=call.task_type,
    )


def router_failure(error: UpstreamError) -> JudgeFailure:
    """Why one router-model attempt failed: a timeout; a refusal with a status the
    attempt loop does not retry (a 4xx but 429; for `tool` typically a server that does
    not take `tools` or `tool_choice`); else unavailable."""
    if isinstance(error, UpstreamTimeout):
        return JudgeFailure.TIMEOUT
    if isinstance(error, UpstreamStatusError) and 400 <= error.status < 500 and not error.retryable:
        return JudgeFailure.REJECTED
    return JudgeFailure.UNAVAILABLE


def build_capabilities(config: Config) -> CapabilityRegistry:
    """The bundled capability table with the config's `[capabilities]` corrections."""
    return CapabilityRegistry.bundled({k: v.model_dump(exclude_none=True) for k, v in config.capabilities.items()})


def capability_warnings(config: Config, topology: Topology, capabilities: CapabilityRegistry) -> list[str]:
    """Config that is valid but cannot work as meant, by the capability table: with
    `strategy = "tool"`, router-tier endpoints whose model does not call tools are
    never asked (and when none does, every decision falls back)."""
    if config.routing.strategy is not Strategy.TOOL:
        return []
    tier = config.routing.router_tier
    group = topology.groups.get(tier)
    unable = [ep for ep in group.endpoints if not capabilities.lookup(ep.name).tools] if group else []
    if not unable:
        return []
    names = ", ".join(f"{ep.id} ({ep.name})" for ep in unable)
    return [
        f"strategy tool: router tier '{tier}' endpoint(s) {names} cannot call tools by the capability "
        'table, so they are never asked; if the model can, set [capabilities."<model>"] tools = true'
    ]


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


def upstream_body(body: Mapping[str, Any], ep: EndpointSpec, ask_usage: bool = False) -> bytes:
    """The client's JSON with only `model` replaced and the endpoint's defaults filled in;
    with `ask_usage` (see `asks_usage_for`), the stream also asks for its usage chunk."""
    out = dict(body)
    out["model"] = ep.name
    if ask_usage:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    if ep.max_tokens is not None and "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = ep.max_tokens
    if ep.temperature is not None and "temperature" not in out:
        out["temperature"] = ep.temperature
    return orjson.dumps(out)


class Gateway:
    """Everything one worker needs to serve requests; built by `create_gateway`."""

    def __init__(
        self,
        config: Config,
        topology: Topology,
        pool: UpstreamPool,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        started_at: float | None = None,
        score_model: ScoreModel | None = None,
        state: StateStore | None = None,
    ) -> None:
        """`score_model`: the learned scorer's model (the bundled one when None; tests pass a fake).
        `state`: the `[state]` store shared with other workers and replicas (health verdicts,
        probe leases); None keeps health in this process alone."""
        self.config = config
        self.topology = topology
        self.pool = pool
        self.clock = clock
        self.rng = rng or random.Random()
        self.board = HealthBoard(topology, config.health.failure_threshold)
        self.probe_rounds = 0  # active health-check rounds finished
        self.probe_failures: dict[str, str] = {}  # endpoint id -> why its latest probe failed
        self.rotation = Rotation()  # cooldowns (429) and refused credentials (401/403)
        self.state = state
        self._verdicts = SharedVerdicts(topology.endpoints) if state is not None else None
        self.inflight = InflightShare(config.state.inflight_interval_seconds)
        self._publishing = asyncio.Lock()  # verdicts go out in the order they were reached
        self._published: set[asyncio.Task[None]] = set()
        self.selectors = build_selectors(topology)
        self.default_tier = default_tier(config)
        self.router = Router.from_config(
            config.routing, self._ask_router, default_tier=self.default_tier, model=score_model
        )
        self.started_at = time.time() if started_at is None else started_at
        self.capabilities = build_capabilities(config)
        self.context = ContextBook(topology.endpoints.values(), self.capabilities.known_window)
        self._context_chains: dict[
            tuple[str, int], tuple[tuple[str, ...], tuple[EndpointSpec, ...], tuple[str, ...]]
        ] = {}
        self.observer = observer or Observer(Recorder())
        self.metrics = self.observer.metrics
        self.shadow: ShadowRouter | None = None
        self.shadow_tasks = ShadowTasks(config.routing.shadow.max_pending if config.routing.shadow else 1)
        if config.routing.shadow is not None:
            self.shadow = ShadowRouter(
                config.routing.shadow, config.routing, self.default_tier, self._ask_router, model=score_model
            )
            self.metrics.shadow_configured(self.shadow.strategy)
        self._capable_selectors: dict[tuple[bool, bool], dict[str, GroupSelector]] = {}
        self.filters = {
            name: OutputFilter(g.options.strip_think, g.options.drop_reasoning, g.options.stop_markers)
            for name, g in topology.groups.items()
        }
        self._filtering = frozenset(name for name, f in self.filters.items() if f.active)
        self._model_ids = (AUTO, *topology.groups, *(e for e in topology.endpoints if e not in topology.groups))
        eps = topology.endpoints.values()
        board = SlotBoard({ep.id: ep.max_concurrency for ep in eps}, {ep.id: ep.weight for ep in eps})
        affinity = config.affinity
        table = (
            AffinityTable(max_entries=affinity.max_entries, ttl_seconds=affinity.ttl_seconds, clock=clock)
            if affinity.enabled
            else None
        )
        self.slots = Admission(
            board, config.queue, self.metrics, affinity=table, least_busy=config.selection.least_busy
        )
        for ep in eps:
            self.metrics.slots(ep.id, ep.max_concurrency)
        self._able: dict[Ask, frozenset[str]] = {}
        # Worked out once per config (a reload builds a new Gateway), so a chat request pays a set
        # lookup: the groups and endpoint ids a client may name for chat (`_check_serves` passes),
        # and the groups whose fallback chain serves chat throughout, whose attempts need no
        # `able` filter (escalation groups are chosen among those that serve chat).
        groups = topology.groups
        chat_able = able_endpoints(groups.values(), CHAT)
        named_groups = (g for g, spec in groups.items() if g not in topology.endpoints)  # an id wins, as there
        self._chat_models = frozenset(
            [*(g for g in named_groups if any(ep.id in chat_able for ep in groups[g].endpoints)), *chat_able]
        )
        self._chat_plain = frozenset(
            g for g in groups if all(Operation.CHAT in groups[c].options.serves for c in topology.fallback_chain(g))
        )

    # -- reloading ---------------------------------------------------------

    def take_over(self, old: Gateway) -> dict[str, str]:
        """Become the successor of `old` (a reloaded config; nothing serves on self yet):
        endpoints that are the same server and model (`fleet.carry`) keep their health,
        cooldowns, refused credentials (while the key is unchanged), context windows and
        discovered slots; the slot board and its waiting lines are shared, so in-flight
        counts stay true across the reload; pending shadow decisions are kept. Returns
        {new id: old id} of the endpoints carried over; the others start fresh."""
        pairs = carried_endpoints(old.topology.endpoints, self.topology.endpoints)
        eps, before = self.topology.endpoints, old.topology.endpoints
        self.board.carry_over(old.board, pairs)
        if self._verdicts is not None and old._verdicts is not None:  # verdicts seen stay seen
            self._verdicts.carry_over(old._verdicts, pairs)
        self.rotation.carry_over(
            old.rotation, pairs, {n for n, o in pairs.items() if eps[n].api_key == before[o].api_key}
        )
        self.context.carry_over(old.context, pairs)
        capacity: dict[str, int | None] = {}
        for ep in eps.values():
            facts = self.context.facts(ep.id)
            learned = facts.total_slots if facts is not None and facts.total_slots else None
            capacity[ep.id] = ep.max_concurrency if ep.max_concurrency is not None else learned
        table = self.slots.affinity
        if table is not None and old.slots.affinity is not None and self.config.affinity == old.config.affinity:
            table = old.slots.affinity  # conversations keep their endpoints
        old.slots.reconfigure(
            capacity,
            {ep.id: ep.weight for ep in eps.values()},
            self.config.queue,
            affinity=table,
            least_busy=self.config.selection.least_busy,
        )
        self.slots = old.slots
        self.inflight.carry_over(old.inflight)
        for ep_id in eps:  # this gateway's constructor set the configured counts; the board has the real ones
            self.metrics.slots(ep_id, self.slots.board.capacity(ep_id))
        self.shadow_tasks = old.shadow_tasks
        self.shadow_tasks.limit = self.config.routing.shadow.max_pending if self.config.routing.shadow else 1
        self.started_at = old.started_at
        self.probe_rounds = old.probe_rounds  # a reload is not a start: /ready keeps its verdict
        self.probe_failures = {n: old.probe_failures[o] for n, o in pairs.items() if o in old.probe_failures}
        self.metrics.topology_changed(
            eps, self.topology.groups, [e for e in before if e not in eps]
        )  # series are by id
        self.metrics.reprice(prices_of(eps.values()), self.config.usage.currency)
        for ep_id in eps:
            self.metrics.health(ep_id, self.board.is_healthy(ep_id))
        return pairs

    async def discover_new(self, carried: Collection[str]) -> None:
        """Discovery for the endpoints a reload added (those not in `carried`)."""
        if not self.config.health.discover:
            return
        fresh = [ep for ep in self.topology.endpoints.values() if ep.id not in carried]
        await asyncio.gather(*(self.discover(ep) for ep in fresh))

    # -- model names -------------------------------------------------------

    @property
    def model_ids(self) -> tuple[str, ...]:
        return self._model_ids

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

    def post_process(self, group: str, call: ChatCall) -> PostProcess | None:
        """The serving group's filters and, when the request declared tools and the
        group allows it, tool-call repair; None when the answer passes untouched."""
        if group not in self._filtering and "tools" not in call.body:  # the common case: nothing to do
            return None
        options = self.topology.groups[group].options
        declared = declared_tools(call.body) if options.tool_repair else frozenset()
        return PostProcess.build(self.filters.get(group), declared, call_id_factory(call.request_id))

    # -- deciding ----------------------------------------------------------

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

    # -- shadow mode -------------------------------------------------------

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

    # -- the attempt loop --------------------------------------------------

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

    def is_available(self, endpoint_id: str) -> bool:
        """In rotation and healthy, or (without active probes) unhealthy or refused for
        longer than the check interval: then one request may try it, as the probe would have."""
        if self.rotation.engaged and not self._in_rotation(endpoint_id):  # no clock read in the common case
            return False
        health = self.board.get(endpoint_id)
        if health.healthy:
            return True
        if self.config.health.active or health.last_check_at is None:
            return False
        return self.clock() - health.last_check_at >= self.config.health.check_interval_seconds

    def _in_rotation(self, endpoint_id: str) -> bool:
        """Not cooling down, and not refused except for its one re-test per check interval."""
        now = self.clock()
        if self.rotation.refused_since(endpoint_id) is not None:
            return self.rotation.retest_due(endpoint_id, now, self.config.health.check_interval_seconds)
        return self.rotation.cooldown_left(endpoint_id, now) == 0.0

    def _fail_open_pick(self, endpoints: Sequence[EndpointSpec]) -> EndpointSpec | None:
        """Nothing is usable: the endpoint most likely to have recovered, among those that are
        only unhealthy (not cooling down, not refusing our credentials)."""
        now = self.clock()
        candidates = [ep for ep in endpoints if self.rotation.in_rotation(ep.id, now)]
        return most_likely_recovered(candidates, lambda ep_id: self.board.get(ep_id).last_check_at)

    def _exhausted(self, plan: AttemptPlan, decision: RoutingDecision) -> OctorouteError:
        """The error for a request no attempt served (`fleet.rotation.unserved_error`)."""
        if decision.endpoint_id is not None:
            ids = [decision.endpoint_id]
        else:
            chain = self.topology.fallback_chain(decision.group)
            ids = [ep.id for g in chain for ep in self.topology.groups[g].endpoints]
        return unserved_error(plan, self.rotation, ids, self.clock(), self.config.health.check_interval_seconds)

    def _note_status(self, ep: EndpointSpec, error: UpstreamStatusError, now: float) -> bool:
        """Back-pressure (429, busy, loading) and refused credentials (401/403) say nothing
        about the server's health: they change its rotation instead. True when handled."""
        if error.status in (401, 403):
            if self.rotation.refuse(ep.id, now, error.message):
                where = (
                    f"check that ${ep.api_key_env} holds the key this server expects"
                    if ep.api_key_env
                    else "it has no api_key_env: set one naming the variable that holds its key"
                )
                log.warning(
                    "endpoint %s refused octoroute's credentials (%s); out of rotation until a request "
                    "succeeds (one is let through every check_interval_seconds); %s",
                    ep.id,
                    error.message,
                    where,
                )
                self.observer.credentials_changed(ep.id, True, error.message)
            return True
        pressure = pressure_of_error(error)
        if pressure in COOLDOWN_PRESSURES:
            wall = time.time()
            seconds = cooldown_seconds(error.retry_after, wall, self.config.health.rate_limit_cooldown_seconds)
            until = self.rotation.cool_down(ep.id, now, seconds)
            log.info("endpoint %s asked to back off (%s); out of rotation for %.1fs", ep.id, error.message, seconds)
            self.observer.cooled_down(ep.id, pressure.value, seconds, wall + (until - now))
            if self._verdicts is not None:  # the other processes keep off it too
                self._publish(self._publish_cooldown(ep.id, wall + (until - now)))
            return True
        return pressure is Pressure.LOADING

    def _record(
        self, ep: EndpointSpec, error: UpstreamError | None, latency_ms: float = 0.0, *, probe: bool = False
    ) -> None:
        """Feed an outcome to health and rotation. A successful `probe` proves the server is up,
        not that it takes our key (llama.cpp answers `/v1/models` to anyone)."""
        now = self.clock()
        if error is not None:
            self.observer.upstream_error(ep.id, error.error_type, describe_upstream_error(error))
            if isinstance(error, UpstreamStatusError) and self._note_status(ep, error, now):
                self.board.get(ep.id).note_error(describe_upstream_error(error))
                return
        elif not probe and self.rotation.restore(ep.id):
            log.info("endpoint %s accepted octoroute's credentials again; back in rotation", ep.id)
            self.observer.credentials_changed(ep.id, False, "answered")
        if error is None or (
            isinstance(error, UpstreamStatusError)
            and (not error.retryable or isinstance(error, UpstreamContextOverflow))
        ):
            # A 4xx is the request's fault: the endpoint answered, so it is alive.
            transition = self.board.record_success(ep.id, now, latency_ms)
        else:
            transition = self.board.record_failure(ep.id, now, str(error.message))
        if transition is not None:
            healthy = transition is Transition.BECAME_HEALTHY
            detail = error.message if error else "answered"
            log.log(
                logging.INFO if healthy else logging.WARNING, "endpoint %s %s (%s)", ep.id, transition.value, detail
            )
            self.observer.health_changed(ep.id, healthy, detail)
            if self._verdicts is not None:  # versioned now: verdicts keep the order they were reached in
                self._publish(self._publish_verdict(ep.id, self._verdicts.publishing(ep.id, healthy, time.time())))

    def _publish(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name="octoroute-publish")
        self._published.add(task)
        task.add_done_callback(self._published.discard)

    async def _publish_cooldown(self, endpoint_id: str, until_wall: float) -> None:
        assert self.state is not None
        async with self._publishing:
            await self.state.put_many(COOLDOWNS, {endpoint_id: until_wall})

    async def _publish_verdict(self, endpoint_id: str, value: float) -> None:
        """Tell the other workers and replicas (`fleet.health.SharedVerdicts`); they adopt it
        within a sync interval."""
        assert self.state is not None
        async with self._publishing:
            await self.state.put_many(VERDICTS, {endpoint_id: value})

    async def stop_publishing(self) -> None:
        """Cancel verdicts still being published (at shutdown, before the store closes)."""
        for task in list(self._published):
            task.cancel()
        await asyncio.gather(*self._published, return_exceptions=True)

    async def sync_health(self) -> None:
        """Adopt every verdict another process published since the last sync."""
        assert self.state is not None
        assert self._verdicts is not None
        ids = self._verdicts.endpoint_ids
        values = await self.state.read_many(VERDICTS, ids)
        now = self.clock()
        self._adopt_cooldowns(ids, await self.state.read_many(COOLDOWNS, ids), now)
        for endpoint_id, healthy in self._verdicts.news(ids, values):
            transition = self.board.get(endpoint_id).adopt(healthy, now, "marked down by another gateway process")
            if transition is not None:
                log.log(
                    logging.INFO if healthy else logging.WARNING,
                    "endpoint %s %s (verdict shared by another gateway process)",
                    endpoint_id,
                    transition.value,
                )
                self.observer.health_changed(endpoint_id, healthy, "shared verdict")

    def _adopt_cooldowns(self, ids: Sequence[str], untils: Sequence[float | None], now: float) -> None:
        """Cool down every endpoint another process was asked to back off from, for the time
        it has left (wall clock: replicas on other machines share no monotonic clock)."""
        wall = time.time()
        for endpoint_id, until in zip(ids, untils, strict=True):
            if until is None or until <= wall:
                continue
            left = until - wall
            if left > self.rotation.cooldown_left(endpoint_id, now) + COOLDOWN_SLACK_SECONDS:
                self.rotation.cool_down(endpoint_id, now, left)
                log.info(
                    "endpoint %s: another gateway process was asked to back off; out of rotation for %.1fs",
                    endpoint_id,
                    left,
                )

    async def run_state_sync(self) -> None:
        """Read shared verdicts forever, every `[state] sync_interval_seconds` (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.config.state.sync_interval_seconds)
            await self.sync_health()

    async def sync_inflight(self) -> None:
        """Publish this process's in-flight counts for the current interval and adopt the
        others' from the previous one (`fleet.inflight`); off the request path."""
        assert self.state is not None
        share, board = self.inflight, self.slots.board
        n = share.interval_of(time.time())
        if not share.already_published(n):
            counts = {k: v for k, v in board.counts().items() if v > 0}
            if counts:
                await self.state.incr_many(share.key(n), counts, ttl_seconds=share.ttl_seconds)
            share.published(n, counts)
        ids = list(self.topology.endpoints)
        totals = await self.state.read_many(share.key(n - 1), ids)
        board.set_elsewhere(share.others(n - 1, ids, totals))

    async def run_inflight_sync(self) -> None:
        """`sync_inflight` once per `[state] inflight_interval_seconds`, a tenth into each
        interval by the wall clock (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.inflight.seconds_to_next(time.time()))
            await self.sync_inflight()

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
                    if reply is not None and where is not None:
                        reply = operation_reply(call, ep, where, reply)
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
        raise self._exhausted(plan, decision)

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

    # -- slots -------------------------------------------------------------

    def learn_slots(self, ep: EndpointSpec, total_slots: int | None) -> None:
        """A server said how many requests it runs at once (llama.cpp `/props`
        `total_slots`): that is the endpoint's limit unless `max_concurrency` is configured."""
        self.slots.learn_slots(ep.id, ep.max_concurrency, total_slots)

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

    # -- reporting ---------------------------------------------------------

    def context_info(self, endpoint_id: str) -> dict[str, object]:
        """An endpoint's context window, where it comes from, and its discovered slots
        (for `/models` and `/metrics.json`)."""
        window = self.context.window(endpoint_id)
        facts = self.context.facts(endpoint_id)
        return {
            "window": window.tokens,
            "source": window.source.value,
            "told_by": window.told_by.value if window.told_by else None,
            "total_slots": facts.total_slots if facts else None,
        }

    async def refresh_usage(self) -> None:
        """Read the shared store's usage totals for `/metrics.json` (no-op without a shared
        store): those of every known client key through every group's endpoints."""
        pairs = [(name, ep.id) for name, group in self.topology.groups.items() for ep in group.endpoints]
        await self.observer.usage.refresh(pairs)

    def snapshot(self) -> dict[str, object]:
        """The `/metrics.json` document (docs/metrics-json.md)."""
        decisions, errors = self.observer.windows()
        endpoints = [
            EndpointInfo(
                ep.id,
                ep.group,
                ep.name,
                ep.kind.value,
                ep.base_url,
                self.context_info(ep.id),
                self.slots.board.in_flight_elsewhere(ep.id),
            )
            for ep in self.topology.endpoints.values()
        ]
        families = list(self.metrics.collect())
        shared = self.observer.usage.shared
        costs = (
            self.metrics.costs_of(shared.token_totals()) if shared is not None else self.metrics.usage_costs(families)
        )
        return build_snapshot(
            SnapshotInputs(
                version=__version__,
                now=time.time(),
                started_at=self.started_at,
                workers=self.observer.workers,
                groups=tuple(self.topology.groups),
                endpoints=endpoints,
                rate_limit_enabled=self.config.rate_limit.enabled,
                families=families,
                decisions=decisions,
                errors=errors,
                shadow=self.config.routing.shadow,
                live_strategy=self.config.routing.strategy,
                usage_costs=costs,
                currency=self.config.usage.currency,
                usage_totals=shared,
            )
        )

    # -- the router model (LLM judge and tool strategy) --------------------

    async def _ask_router(self, body: dict[str, object]) -> dict[str, Any]:
        """Send a judge or tool body to the router tier: short timeout, retries on other
        endpoints; the answer in OpenAI's shape. Endpoints whose model lacks what the
        body needs (tools, by the capability table) are not asked."""
        routing = self.config.routing
        group = self.topology.groups[routing.router_tier]
        wants_tools = selection_needs(body).tools
        able = {ep.id for ep in group.endpoints if not (wants_tools and self._lacking(Needs(tools=True), ep))}
        if not able:
            raise JudgeUnavailable(
                JudgeFailure.TOOLS_UNSUPPORTED,
                f"no model on router tier '{group.name}' calls tools, by the capability table",
            )
        retry = self.config.retry.model_copy(update={"max_attempts": routing.llm_retries + 1})
        plan = AttemptPlan([group], self.selectors, lambda eid: eid in able and self.is_available(eid), retry, self.rng)
        failures: list[JudgeFailure] = []
        while (attempt := plan.next_attempt()) is not None:
            ep = attempt.endpoint
            payload, _ = body_for(ChatCall(body, AUTO, False, Importance.NORMAL, None, "judge"), ep)
            self.metrics.attempt_started(group.name)
            sent_at = time.perf_counter()
            self.slots.acquire(ep.id)  # counted, never queued: the judge has its own short timeout
            try:
                async with asyncio.timeout(routing.llm_timeout_seconds):
                    reply = await self.pool.complete(ep, payload, {})
            except TimeoutError:
                failures.append(JudgeFailure.TIMEOUT)
                self.metrics.attempt_finished(ep.id, ErrorType.TIMEOUT, time.perf_counter() - sent_at)
                plan.record(UpstreamTimeout(ep.id, TimeoutPhase.TOTAL, routing.llm_timeout_seconds))
                continue
            except UpstreamError as error:
                error.attempt = attempt.number
                self._attempt_failed(ep, error, sent_at, None)
                failures.append(router_failure(error))
                plan.record(error)
                continue
            finally:
                self.slots.release(ep.id)
            self._attempt_committed(ep, None, sent_at, None)
            self._record(ep, None, reply.latency_ms)
            return openai_payload(ep, reply.payload)
        if failures and failures[-1] is JudgeFailure.REJECTED:  # a refusal ends the plan: it is the verdict
            kind = JudgeFailure.REJECTED
        elif failures and all(f is JudgeFailure.TIMEOUT for f in failures):
            kind = JudgeFailure.TIMEOUT
        else:
            kind = JudgeFailure.UNAVAILABLE
        raise JudgeUnavailable(kind, f"router tier '{group.name}' did not answer ({len(failures)} attempts)")

    # -- health ------------------------------------------------------------

    async def probe_all(self) -> dict[str, str]:
        """One active health check of every endpoint, concurrently; returns (and keeps,
        for `readiness`) the endpoints whose probe failed, with why."""
        timeout = self.config.health.check_timeout_seconds
        failures: dict[str, str] = {}

        lease = self.config.health.check_interval_seconds * PROBE_LEASE_SHARE

        async def one(ep: EndpointSpec) -> None:
            # One probe per endpoint per interval across every process sharing the state;
            # the others learn the verdict from `sync_health`.
            if self.state is not None and not await self.state.lease(f"probe:{ep.id}", lease):
                return
            try:
                latency = await self.pool.probe(ep, timeout)
            except UpstreamError as error:
                failures[ep.id] = describe_upstream_error(error)
                self._record(ep, error, probe=True)
            else:
                self._record(ep, None, latency, probe=True)
                refusal = self.rotation.refusal(ep.id)
                if refusal is not None:  # still refused: keep saying why
                    self.board.get(ep.id).note_error(refusal)
                if self.config.health.discover and self.context.worth_asking(ep.id):
                    await self.discover(ep)

        await asyncio.gather(*(one(ep) for ep in self.topology.endpoints.values()))
        self.probe_failures = failures
        self.probe_rounds += 1
        return failures

    def readiness(self) -> Readiness:
        """`/ready`'s verdict. Not ready while active probes have not finished their first
        round. Then ready when every group can answer: it, or a group on its fallback
        chain, has an endpoint that is healthy and did not fail its latest probe."""
        up = {
            ep_id
            for ep_id in self.topology.endpoints
            if self.board.is_healthy(ep_id) and ep_id not in self.probe_failures
        }
        if self.config.health.active and self.probe_rounds == 0:
            return Readiness(False, "starting", len(up), ())
        groups = self.topology.groups
        down = tuple(
            name
            for name in groups
            if not any(ep.id in up for g in self.topology.fallback_chain(name) for ep in groups[g].endpoints)
        )
        return Readiness(not down, "unavailable" if down else "ready", len(up), down)

    def summarise_probes(self, failures: Mapping[str, str]) -> None:
        """The one startup line about upstreams, after the first probe round."""
        total = len(self.topology.endpoints)
        if not failures:
            log.info("upstreams: all %d answered the first health check", total)
            return
        why = "; ".join(f"{ep_id} ({reason})" for ep_id, reason in failures.items())
        log.warning("upstreams: %d of %d did not answer the first health check: %s", len(failures), total, why)

    async def discover(self, ep: EndpointSpec) -> None:
        """Ask the endpoint's server for its context window and slots (upstream.discovery),
        within the health check timeout; the answer goes to `self.context`."""
        known = self.context.facts(ep.id)
        found = await discover(self.pool, ep, self.config.health.check_timeout_seconds, known.source if known else None)
        if found.facts is not None:
            if self.context.learn(ep.id, found.facts):
                self._facts_learned(ep, found.facts)
        elif found.reached and known is None:
            self.context.mark_silent(ep.id)

    def _facts_learned(self, ep: EndpointSpec, facts: ServerFacts) -> None:
        """A server said something new about itself (`self.context` has it already): the
        hook for whatever else depends on it; its slots limit it (`learn_slots`)."""
        log.info(
            "endpoint %s: %s says context window %s, %s slots",
            ep.id,
            facts.source.value,
            facts.context_window,
            facts.total_slots,
        )
        self.learn_slots(ep, facts.total_slots)

    async def discover_all(self) -> None:
        """Discovery for every endpoint at once (at startup, before serving)."""
        if not self.config.health.discover:
            return
        await asyncio.gather(*(self.discover(ep) for ep in self.topology.endpoints.values()))

    async def run_health_checks(self) -> None:
        """Probe forever on the configured interval (cancelled at shutdown). The first
        round of the process (not of a reloaded config) ends with the startup line."""
        first = self.probe_rounds == 0
        failures = await self.probe_all()
        if first:
            self.summarise_probes(failures)
        while True:
            await asyncio.sleep(self.config.health.check_interval_seconds)
            await self.probe_all()

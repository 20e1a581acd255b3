"""`Gateway`: everything one worker needs to serve requests, assembled from one part
per job (`Deciding`, `ShadowMode`, `AttemptLoop`, `RouterModel`, `HealthKeeping`,
`Probing`); its construction, a reload's take-over, post-processing and reporting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection

from octoroute import __version__
from octoroute.admission import Admission
from octoroute.config.models import Config
from octoroute.config.topology import EndpointSpec, Topology, default_tier
from octoroute.core.state import StateStore
from octoroute.core.types import Operation, Strategy
from octoroute.fleet.affinity import AffinityTable
from octoroute.fleet.capabilities import CapabilityRegistry
from octoroute.fleet.carry import carried_endpoints
from octoroute.fleet.context import ContextBook
from octoroute.fleet.health import HealthBoard, SharedVerdicts
from octoroute.fleet.inflight import InflightShare
from octoroute.fleet.operations import CHAT, Ask, able_endpoints
from octoroute.fleet.rotation import Rotation
from octoroute.fleet.selector import GroupSelector, build_selectors
from octoroute.fleet.slots import SlotBoard
from octoroute.observe.metrics import Recorder
from octoroute.observe.observer import Observer
from octoroute.observe.snapshot import EndpointInfo, SnapshotInputs, build_snapshot
from octoroute.observe.usage import prices_of
from octoroute.protocols.filters import OutputFilter
from octoroute.protocols.postprocess import PostProcess, declared_tools
from octoroute.protocols.repair import call_id_factory
from octoroute.routing.router import Router
from octoroute.routing.scoring import ScoreModel, model_for
from octoroute.routing.shadow import ShadowRouter, ShadowTasks
from octoroute.service.call import AUTO, ChatCall
from octoroute.service.probes import Probing
from octoroute.service.router_model import RouterModel
from octoroute.service.shadow import ShadowMode
from octoroute.upstream.client import UpstreamPool


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


class Gateway(RouterModel, ShadowMode, Probing):
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
        """`score_model`: the learned scorer's model (None: `routing.learned_weights`' model, else the
        bundled one, read once here for the router and the shadow candidate; tests pass a fake).
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
        score_model = score_model or model_for(config.routing)
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

    def post_process(self, group: str, call: ChatCall) -> PostProcess | None:
        """The serving group's filters and, when the request declared tools and the
        group allows it, tool-call repair; None when the answer passes untouched."""
        if group not in self._filtering and "tools" not in call.body:  # the common case: nothing to do
            return None
        options = self.topology.groups[group].options
        declared = declared_tools(call.body) if options.tool_repair else frozenset()
        return PostProcess.build(self.filters.get(group), declared, call_id_factory(call.request_id))

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
                self.slots.board.in_flight(ep.id),
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
                live_model=None if self.router.learned is None else self.router.learned.model.version,
                shadow_model=None if self.shadow is None else self.shadow.model_version,
                usage_costs=costs,
                currency=self.config.usage.currency,
                usage_totals=shared,
            )
        )

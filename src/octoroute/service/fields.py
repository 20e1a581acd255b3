"""`GatewayFields`: the attributes the parts of `Gateway` share, in one place.

`Gateway` is assembled from one class per job (deciding, the attempt loop,
health, probes, shadow mode, the router model); each reads the gateway's state
through these declarations, so the type checker sees one set of names and types.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from octoroute.admission import Admission
from octoroute.config.models import Config
from octoroute.config.topology import EndpointSpec, Topology
from octoroute.core.state import StateStore
from octoroute.core.types import Tier
from octoroute.fleet.capabilities import CapabilityRegistry
from octoroute.fleet.context import ContextBook
from octoroute.fleet.health import HealthBoard, SharedVerdicts
from octoroute.fleet.inflight import InflightShare
from octoroute.fleet.operations import Ask
from octoroute.fleet.rotation import Rotation
from octoroute.fleet.selector import GroupSelector
from octoroute.observe.metrics import Recorder
from octoroute.observe.observer import Observer
from octoroute.protocols.filters import OutputFilter
from octoroute.routing.router import Router
from octoroute.routing.shadow import ShadowRouter, ShadowTasks
from octoroute.upstream.client import UpstreamPool


class GatewayFields:
    """The state every part of `Gateway` reads, declared once for the type checker;
    `Gateway.__init__` sets each of them (and `Gateway.take_over` some, on a reload)."""

    config: Config
    topology: Topology
    pool: UpstreamPool
    clock: Callable[[], float]
    rng: random.Random
    board: HealthBoard
    probe_rounds: int
    probe_failures: dict[str, str]
    rotation: Rotation
    state: StateStore | None
    _verdicts: SharedVerdicts | None
    inflight: InflightShare
    _publishing: asyncio.Lock
    _published: set[asyncio.Task[None]]
    selectors: dict[str, GroupSelector]
    default_tier: Tier
    router: Router
    started_at: float
    capabilities: CapabilityRegistry
    context: ContextBook
    _context_chains: dict[tuple[str, int], tuple[tuple[str, ...], tuple[EndpointSpec, ...], tuple[str, ...]]]
    observer: Observer
    metrics: Recorder
    shadow: ShadowRouter | None
    shadow_tasks: ShadowTasks
    _capable_selectors: dict[tuple[bool, bool], dict[str, GroupSelector]]
    filters: dict[str, OutputFilter]
    _filtering: frozenset[str]
    _model_ids: tuple[str, ...]
    slots: Admission
    _able: dict[Ask, frozenset[str]]
    _chat_models: frozenset[str]
    _chat_plain: frozenset[str]

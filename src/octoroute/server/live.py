"""The running config of an app, and swapping it for a reloaded one.

Every request reads `Live.gateway` once, when it starts, and keeps that `Gateway`
(config, topology, selectors, router, pools) to its end: a reload builds a new
`Gateway`, lets it take over the state of the endpoints that stay
(`Gateway.take_over`), and replaces the attribute. Requests and streams already
running finish on the config they started with; the next request gets the new one.

    live = app[LIVE]
    report = await live.reload(config, env)   # or live.refuse(problems) when it did not load
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from octoroute.config.models import Config
from octoroute.config.reload import config_digest, needs_restart, runnable
from octoroute.config.topology import Topology, build_topology, config_warnings
from octoroute.core.errors import ConfigError
from octoroute.service import Gateway, capability_warnings

log = logging.getLogger("octoroute.config")


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What a reload did: `result` "ok" or "refused"; the generation and digest running now."""

    result: str
    generation: int
    digest: str
    changed: bool = False  # False: refused, or the config was the same
    added: tuple[str, ...] = ()  # endpoint ids that start fresh
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # endpoint ids whose state carried over
    needs_restart: tuple[str, ...] = ()  # changed keys a reload cannot apply (their old values run on)
    problems: tuple[str, ...] = ()


class Live:
    """The app's current `Gateway` and its generation; owns the health-check and
    shared-state sync tasks."""

    def __init__(self, gateway: Gateway, build: Callable[[Config, Topology], Gateway]) -> None:
        self.gateway = gateway  # read once per request: the only cost a reload adds to the hot path
        self.generation = 1
        self.digest = config_digest(gateway.config)
        self.needs_restart: tuple[str, ...] = ()
        self._build = build
        self._health_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None  # shared verdicts ([state]), when shared
        self._inflight_task: asyncio.Task[None] | None = None  # in-flight counts shared ([state]), when shared
        self._lock: asyncio.Lock | None = None

    def info(self) -> dict[str, object]:
        """For /health (JSON) and /metrics.json."""
        return {"generation": self.generation, "hash": self.digest, "needs_restart": list(self.needs_restart)}

    async def start(self) -> None:
        gateway = self.gateway
        _warn(gateway)
        await gateway.pool.start()
        await gateway.discover_all()  # context windows and slots, before the first request
        self._start_health_checks()

    async def stop(self) -> None:
        await self._stop_health_checks()
        gateway = self.gateway
        await gateway.shadow_tasks.close()  # shadow judge calls still waiting need the pool
        await gateway.pool.close()

    def refuse(self, problems: Sequence[str], source: str = "config") -> ReloadReport:
        """A reloaded config that did not load: logged with every problem, counted; the
        running config stays."""
        log.warning(
            "config reload refused: %s has %d problem(s); still serving generation %d (%s)",
            source,
            len(problems),
            self.generation,
            self.digest,
        )
        for problem in problems:
            log.warning("  %s", problem)
        self.gateway.metrics.config_reloaded("refused", self.generation)
        return ReloadReport("refused", self.generation, self.digest, problems=tuple(problems))

    async def reload(self, loaded: Config, env: Mapping[str, str], source: str = "config") -> ReloadReport:
        """Apply `loaded` (validated by `config.load_config`), keeping the restart-only
        keys (`config.reload`) at their running values. One reload at a time."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._reload(loaded, env, source)

    async def _reload(self, loaded: Config, env: Mapping[str, str], source: str) -> ReloadReport:
        old = self.gateway
        digest = config_digest(loaded)
        restart = needs_restart(old.config, loaded)
        if digest == self.digest:
            log.info("config reload: %s is unchanged; generation %d (%s) runs on", source, self.generation, digest)
            old.metrics.config_reloaded("ok", self.generation)
            return ReloadReport("ok", self.generation, digest, needs_restart=self.needs_restart)
        applied = runnable(old.config, loaded)
        try:
            topology = build_topology(applied, env)
        except ConfigError as exc:
            return self.refuse([str(p) for p in exc.problems], source)
        try:
            new = self._build(applied, topology)
        except ValueError as exc:  # the learned weights file went bad after the config check
            return self.refuse([f"routing.learned_weights: {exc}"], source)
        pairs = new.take_over(old)
        await new.pool.start(taking_over=old.pool)
        await new.discover_new(pairs)
        await self._stop_health_checks()
        self.gateway = new
        self.generation += 1
        self.digest = digest
        self.needs_restart = restart
        self._start_health_checks()
        report = ReloadReport(
            "ok",
            self.generation,
            digest,
            changed=True,
            added=tuple(e for e in topology.endpoints if e not in pairs),
            removed=tuple(e for e in old.topology.endpoints if e not in pairs.values()),
            kept=tuple(pairs),
            needs_restart=restart,
        )
        new.metrics.config_reloaded("ok", self.generation)
        _log_applied(report, source)
        _warn(new)
        return report

    def _start_health_checks(self) -> None:
        if self.gateway.config.health.active:
            self._health_task = asyncio.create_task(self.gateway.run_health_checks(), name="octoroute-health")
        if self.gateway.state is not None:
            self._sync_task = asyncio.create_task(self.gateway.run_state_sync(), name="octoroute-state-sync")
        if self.gateway.state is not None and self.gateway.config.selection.least_busy:
            self._inflight_task = asyncio.create_task(self.gateway.run_inflight_sync(), name="octoroute-inflight-sync")
        else:  # least_busy turned off by a reload: forget what the others had
            self.gateway.slots.board.set_elsewhere({})

    async def _stop_health_checks(self) -> None:
        tasks = (self._health_task, self._sync_task, self._inflight_task)
        self._health_task = self._sync_task = self._inflight_task = None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _warn(gateway: Gateway) -> None:
    capabilities = capability_warnings(gateway.config, gateway.topology, gateway.capabilities)
    for warning in (*config_warnings(gateway.config, gateway.topology), *capabilities):
        gateway.observer.config_warning(warning)


def _log_applied(report: ReloadReport, source: str) -> None:
    def ids(values: tuple[str, ...]) -> str:
        return ", ".join(values) or "none"

    log.info(
        "config reloaded from %s: generation %d (%s); endpoints kept %s, added %s, removed %s",
        source,
        report.generation,
        report.digest,
        ids(report.kept),
        ids(report.added),
        ids(report.removed),
    )
    for key in report.needs_restart:
        log.warning("config reload: %s changed but needs a restart; the running value stays", key)

"""Active health checks (`probe_all`, `run_health_checks`), what `/ready` answers
(`readiness`), and asking servers their context window and slots (`discover`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import UpstreamError
from octoroute.core.facts import ServerFacts
from octoroute.fleet.health import PROBE_LEASE_SHARE
from octoroute.service.health import HealthKeeping, describe_upstream_error
from octoroute.upstream.discovery import discover

log = logging.getLogger("octoroute.health")


@dataclass(frozen=True, slots=True)
class Readiness:
    """What `/ready` answers (see `Gateway.readiness`)."""

    ready: bool
    status: str  # "ready", "starting" (first probe round not finished), "unavailable"
    healthy_endpoints: int  # healthy and not failing their latest probe
    unavailable_groups: tuple[str, ...]


class Probing(HealthKeeping):
    """`Gateway`'s probes, readiness and discovery."""

    def learn_slots(self, ep: EndpointSpec, total_slots: int | None) -> None:
        """A server said how many requests it runs at once (llama.cpp `/props`
        `total_slots`): that is the endpoint's limit unless `max_concurrency` is configured."""
        self.slots.learn_slots(ep.id, ep.max_concurrency, total_slots)

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

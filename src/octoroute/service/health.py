"""Attempt outcomes into health and rotation: whether an endpoint may be tried
(`is_available`), recording an outcome (`_record`: health, cooldowns, refused
credentials), and sharing verdicts, cooldowns and in-flight counts with the other
processes through the `[state]` store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import (
    COOLDOWN_PRESSURES,
    Pressure,
    UpstreamContextOverflow,
    UpstreamError,
    UpstreamStatusError,
)
from octoroute.fleet.health import COOLDOWNS, VERDICTS, Transition
from octoroute.fleet.policy import most_likely_recovered
from octoroute.fleet.rotation import cooldown_seconds, pressure_of_error
from octoroute.service.fields import GatewayFields

log = logging.getLogger("octoroute.health")
COOLDOWN_SLACK_SECONDS = 0.5  # a shared cooldown this close to the local one is the same one


def describe_upstream_error(error: UpstreamError) -> str:
    """The error as an operator wants to read it: for an error status, `HTTP <status>:`
    and the upstream's own message (extracted and redacted by the upstream client)."""
    return error.message


class HealthKeeping(GatewayFields):
    """`Gateway`'s health and rotation bookkeeping, and its shared-state sync."""

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

"""Four simulated upstreams on loopback and the octoroute config that uses them.

`octoroute serve --demo` runs this so routing, retries and fallback can be seen
without a GPU::

    fleet = DemoFleet()
    await fleet.start()
    config = parse_config(fleet.config_dict(server_port=3000), env={})
    ...
    await fleet.stop()

The flaky endpoint fails half its requests and sits above the healthy fast
endpoint (priority 2 over 1), so retries and fallback show up in the logs.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from octoroute.core.types import Tier
from octoroute.demo.simulated import Behaviour, Mode, SimulatedUpstream

# Health: three passive failures in a row before flaky (50% failures) is marked
# down, so it is rarely taken out; active probes every 2 s bring it back quickly.
HEALTH = {"failure_threshold": 3, "check_interval_seconds": 2.0, "check_timeout_seconds": 1.0, "active": True}


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One endpoint of the demo fleet: where it sits in the config and how it behaves."""

    id: str
    tier: Tier
    priority: int
    label: str
    first_byte_delay: float
    token_delay: float
    mode: Mode = Mode.NORMAL
    failure_rate: float = 0.0

    def behaviour(self, seed: int) -> Behaviour:
        return Behaviour(
            mode=self.mode,
            label=self.label,
            first_byte_delay=self.first_byte_delay,
            token_delay=self.token_delay,
            failure_rate=self.failure_rate,
            rng=random.Random(seed),
        )


MEMBERS: tuple[FleetMember, ...] = (
    FleetMember("sim-flaky", Tier.FAST, 2, "simulated-flaky", 0.02, 0.01, Mode.FLAKY, failure_rate=0.5),
    FleetMember("sim-fast", Tier.FAST, 1, "simulated-fast", 0.02, 0.01),
    FleetMember("sim-balanced", Tier.BALANCED, 1, "simulated-balanced", 0.06, 0.025),
    FleetMember("sim-deep", Tier.DEEP, 1, "simulated-deep", 0.15, 0.05),
)


class DemoFleet:
    """Starts every `MEMBERS` entry as a `SimulatedUpstream` on an ephemeral port.

    `upstreams` maps endpoint id ("sim-fast", ...) to its server, whose
    `behaviour` can be changed while the demo runs.
    """

    def __init__(self, *, host: str = "127.0.0.1", seed: int = 0, record: bool = False) -> None:
        self.host = host
        self.members = MEMBERS
        self.upstreams: dict[str, SimulatedUpstream] = {
            m.id: SimulatedUpstream(m.behaviour(seed + i), record=record) for i, m in enumerate(MEMBERS)
        }
        self._started = False

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("DemoFleet is already started")
        results = await asyncio.gather(
            *(up.start(self.host, 0) for up in self.upstreams.values()), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._stop_all()
            raise failure
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self._stop_all()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(up.stop() for up in self.upstreams.values()))

    async def __aenter__(self) -> DemoFleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def config_dict(self, *, server_host: str = "127.0.0.1", server_port: int = 3000) -> dict[str, Any]:
        """An octoroute config (the TOML document's shape) pointing at the running servers."""
        if not self._started:
            raise RuntimeError("start the DemoFleet before asking for its config")
        models: dict[str, list[dict[str, Any]]] = {}
        for m in self.members:
            endpoint = {
                "name": m.label,
                "base_url": self.upstreams[m.id].base_url,
                "priority": m.priority,
                "weight": 1.0,
                "id": m.id,
            }
            models.setdefault(str(m.tier), []).append(endpoint)
        return {
            "server": {"host": server_host, "port": server_port},
            "models": models,
            "health": dict(HEALTH),
        }

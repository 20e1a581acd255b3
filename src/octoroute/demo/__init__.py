"""Simulated upstreams for the demo and for tests.

`SimulatedUpstream` is a real aiohttp server speaking the OpenAI chat API with
programmable failure modes (`Behaviour`, `Mode`); `DemoFleet` starts four of
them and writes the octoroute config that points at them.

May import aiohttp, orjson, `octoroute.core` and `octoroute.config` only.
Submodules load lazily so `python -m octoroute.demo.simulated` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octoroute.demo.fleet import DemoFleet
    from octoroute.demo.simulated import Behaviour, Mode, RecordedRequest, SimulatedUpstream

__all__ = ["Behaviour", "DemoFleet", "Mode", "RecordedRequest", "SimulatedUpstream"]

_HOMES = {
    "Behaviour": "octoroute.demo.simulated",
    "Mode": "octoroute.demo.simulated",
    "RecordedRequest": "octoroute.demo.simulated",
    "SimulatedUpstream": "octoroute.demo.simulated",
    "DemoFleet": "octoroute.demo.fleet",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

"""Which endpoints of a reloaded config are the ones already running.

An endpoint is the same when it reaches the same server for the same model:
its kind, `base_url` (without a trailing slash) and model `name`. Its id may
change (a rename keeps what was learned about the server); anything else, such
as weight, priority or timeouts, may change too. A different `base_url` or model
is a new endpoint that starts fresh. Pure.

    pairs = carried_endpoints(old.endpoints, new.endpoints)   # {new id: old id}
"""

from __future__ import annotations

from collections.abc import Mapping

from octoroute.config.topology import EndpointSpec
from octoroute.core.types import Api


def identity(ep: EndpointSpec) -> tuple[Api, str, str]:
    """What makes two endpoint specs the same upstream: kind, server address, model."""
    return ep.kind, ep.base_url.rstrip("/"), ep.name


def carried_endpoints(old: Mapping[str, EndpointSpec], new: Mapping[str, EndpointSpec]) -> dict[str, str]:
    """{new id: old id} for every new endpoint that is an old one; each old endpoint is
    matched at most once, by the same id first, then in config order."""
    pairs: dict[str, str] = {}
    for ep_id, ep in new.items():
        before = old.get(ep_id)
        if before is not None and identity(before) == identity(ep):
            pairs[ep_id] = ep_id
    free: dict[tuple[Api, str, str], list[str]] = {}
    taken = set(pairs.values())
    for ep_id, ep in old.items():
        if ep_id not in taken:
            free.setdefault(identity(ep), []).append(ep_id)
    for ep_id, ep in new.items():
        if ep_id not in pairs and free.get(identity(ep)):
            pairs[ep_id] = free[identity(ep)].pop(0)
    return pairs

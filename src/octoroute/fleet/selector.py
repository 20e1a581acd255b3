"""Choosing endpoints within a group: priority first, then weight, health and exclusion.

The rule: only healthy, non-excluded endpoints are candidates. The highest
priority level (larger `priority` is preferred) with at least one candidate is
used first; within a level, endpoints are drawn by weighted random sampling
without replacement; lower levels follow in descending priority. A group with
no candidate yields nothing: what to do then is the policy's decision.

Least busy first: given a `load` function, `pick` keeps only the candidates
of a level with the lowest load, and draws among those by weight; when all
loads are equal (an idle fleet) the draw is exactly the weighted one above.

`order_candidates` gives the whole ordering; `GroupSelector.pick` (and
`pick_endpoint`) gives its first element on the hot path from levels and
cumulative weights computed once per group:

    selectors = build_selectors(topology)
    ep = pick_endpoint(selectors["fast"], healthy=board.is_healthy, excluded=tried, rng=rng)
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from itertools import accumulate

from octoroute.config.topology import EndpointSpec, Topology

HealthyFn = Callable[[str], bool]
LoadFn = Callable[[str], float]  # lower is less busy (`fleet.slots.SlotBoard.load`)


def _weighted_index(cumulative: Sequence[float], rng: random.Random) -> int:
    """Index drawn with probability proportional to its weight, from cumulative weights."""
    x = rng.random() * cumulative[-1]
    # random() < 1, but the product can round up to the total: clamp to the last index.
    return min(bisect_right(cumulative, x), len(cumulative) - 1)


def _levels(endpoints: Sequence[EndpointSpec]) -> list[list[EndpointSpec]]:
    """Endpoints grouped by priority, highest first, config order kept within a level."""
    by_priority: dict[int, list[EndpointSpec]] = {}
    for ep in endpoints:
        by_priority.setdefault(ep.priority, []).append(ep)
    return [by_priority[p] for p in sorted(by_priority, reverse=True)]


def _weighted_shuffle(endpoints: list[EndpointSpec], rng: random.Random) -> list[EndpointSpec]:
    """Weighted random sampling without replacement (levels are small: quadratic is fine)."""
    remaining = list(endpoints)
    out = []
    while len(remaining) > 1:
        i = _weighted_index(list(accumulate(ep.weight for ep in remaining)), rng)
        out.append(remaining.pop(i))
    out.extend(remaining)
    return out


def order_candidates(
    endpoints: Sequence[EndpointSpec],
    *,
    healthy: HealthyFn,
    excluded: Collection[str] = (),
    rng: random.Random,
) -> list[EndpointSpec]:
    """Healthy, non-excluded endpoints in the order to try them; [] if there are none."""
    candidates = [ep for ep in endpoints if ep.id not in excluded and healthy(ep.id)]
    out: list[EndpointSpec] = []
    for level in _levels(candidates):
        out.extend(_weighted_shuffle(level, rng))
    return out


class _Level:
    __slots__ = ("cumulative", "endpoints")

    def __init__(self, endpoints: Sequence[EndpointSpec]) -> None:
        self.endpoints = tuple(endpoints)
        self.cumulative = tuple(accumulate(ep.weight for ep in endpoints))


def _least_loaded(
    eps: Sequence[EndpointSpec], healthy: HealthyFn, excluded: Collection[str], load: LoadFn
) -> list[EndpointSpec] | None:
    """The usable endpoints with the lowest load; all of `eps` (the same tuple's items)
    when every one is usable and equally loaded; None when none is usable."""
    usable = [e for e in eps if e.id not in excluded and healthy(e.id)]
    if not usable:
        return None
    loads = [load(e.id) for e in usable]
    low = min(loads)
    return [e for e, x in zip(usable, loads, strict=True) if x == low]


class GroupSelector:
    """One group's endpoints, pre-split into priority levels with cumulative weights.

    Build once per group at startup; `pick` is the per-request hot path.
    """

    __slots__ = ("_levels", "endpoints")

    def __init__(self, endpoints: Sequence[EndpointSpec]) -> None:
        self.endpoints = tuple(endpoints)
        self._levels = tuple(_Level(level) for level in _levels(self.endpoints))

    def pick(
        self,
        *,
        healthy: HealthyFn,
        excluded: Collection[str] = (),
        rng: random.Random,
        load: LoadFn | None = None,
    ) -> EndpointSpec | None:
        """The first endpoint `order` would return, or None, in one weighted draw when
        the drawn endpoint is usable (the common case). With `load`, among the least
        loaded usable endpoints of the level."""
        for level in self._levels:
            eps = level.endpoints
            if load is not None and len(eps) > 1:
                least = _least_loaded(eps, healthy, excluded, load)
                if least is None:
                    continue
                if len(least) < len(eps):
                    if len(least) == 1:
                        return least[0]
                    return least[_weighted_index(list(accumulate(e.weight for e in least)), rng)]
            if len(eps) == 1:
                only = eps[0]
                if only.id not in excluded and healthy(only.id):
                    return only
                continue
            ep = eps[_weighted_index(level.cumulative, rng)]
            if ep.id not in excluded and healthy(ep.id):
                return ep
            # Redraw among the usable ones only: P(i) = w_i / sum(usable weights) overall,
            # the same as a draw restricted to usable endpoints from the start.
            usable = [e for e in eps if e.id not in excluded and healthy(e.id)]
            if usable:
                if len(usable) == 1:
                    return usable[0]
                return usable[_weighted_index(list(accumulate(e.weight for e in usable)), rng)]
        return None

    def order(
        self,
        *,
        healthy: HealthyFn,
        excluded: Collection[str] = (),
        rng: random.Random,
    ) -> list[EndpointSpec]:
        """Every usable endpoint in the order to try them (see `order_candidates`)."""
        return order_candidates(self.endpoints, healthy=healthy, excluded=excluded, rng=rng)


def pick_endpoint(
    selector: GroupSelector,
    *,
    healthy: HealthyFn,
    excluded: Collection[str] = (),
    rng: random.Random,
) -> EndpointSpec | None:
    """The endpoint to try next in `selector`'s group, or None if none is usable."""
    return selector.pick(healthy=healthy, excluded=excluded, rng=rng)


def build_selectors(topology: Topology) -> dict[str, GroupSelector]:
    """A selector per group name, built once at startup."""
    return {name: GroupSelector(group.endpoints) for name, group in topology.groups.items()}

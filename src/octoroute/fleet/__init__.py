"""Pure endpoint state: health, selection, retry/fallback policy.

Owns the per-endpoint health state machine (`health`), the priority + weighted
pick with exclusion (`selector`) and the attempt plan the service drives for one
request (`policy`). Nothing here performs I/O, sleeps, reads the clock or the
global random source: callers pass `now` (monotonic seconds) and a
`random.Random`.

May import `octoroute.core` and `octoroute.config` only.
"""

from octoroute.fleet.health import EndpointHealth, EndpointStatus, HealthBoard, Transition
from octoroute.fleet.policy import Attempt, AttemptPlan, backoff_seconds
from octoroute.fleet.selector import GroupSelector, build_selectors, order_candidates, pick_endpoint

__all__ = [
    "Attempt",
    "AttemptPlan",
    "EndpointHealth",
    "EndpointStatus",
    "GroupSelector",
    "HealthBoard",
    "Transition",
    "backoff_seconds",
    "build_selectors",
    "order_candidates",
    "pick_endpoint",
]

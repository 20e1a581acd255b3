"""Prometheus metrics, on a registry owned by each app (no module-level state).

`Recorder` is the interface the request path calls, and does nothing: it is
what a gateway with `[observability] metrics = false` gets, so the hot path
never tests a flag. `PrometheusRecorder` records into prometheus_client.

Label values come only from enums and from names in the config (groups,
endpoint ids, registered routes); the request path maps anything else to a
fixed value (`other`, `unmatched`) before it gets here, so cardinality is
bounded whatever clients send.

With several worker processes, prometheus_client's multiprocess mode is used:
`octoroute serve --workers N` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before the workers start, each worker writes its values to files
there, and whichever worker answers a scrape merges all of them. Gauges say
how they merge: connections and buckets are summed over live workers, health
is the most recent verdict of any live worker.
"""

from __future__ import annotations

import contextlib
import enum
import glob
import os
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from octoroute.core.errors import COOLDOWN_PRESSURES, ErrorType
from octoroute.core.facts import ContextEvent
from octoroute.core.types import DegradationKind, Strategy
from octoroute.observe.usage import CostBook, Price, UsageKey

# The classic text format, which every Prometheus reads; all our names are plain ASCII.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTING_BUCKETS_MS = (0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000)
HTTP_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UPSTREAM_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OK = "ok"
ATTEMPT_OUTCOMES = (OK, *(e.value for e in ErrorType if e is not ErrorType.MID_STREAM))


QUEUE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
AFFINITY_RESULTS = ("hit", "new", "broken")
RELOAD_RESULTS = ("ok", "refused")  # fleet.affinity.AffinityResult values (observe may not import fleet)
# fleet.ratelimit.LimitReason values (observe may not import fleet): why [rate_limit] refused a request
RATE_LIMIT_REASONS = ("requests", "tokens", "too_large")


class QueueOutcome(enum.StrEnum):
    """How a request left the waiting line for a slot (metric label)."""

    SERVED = "served"  # a slot was handed to it
    FULL = "full"  # the line was full: 503 at once
    TIMEOUT = "timeout"  # no slot within max_wait_seconds: 503
    GONE = "gone"  # its client went away while it waited


class FleetRefusal(enum.StrEnum):
    """Why a request was refused without an endpoint serving it, the fleet being unable to
    take it: the `reason` label of octoroute_fleet_refusals."""

    COOLING_DOWN = "cooling_down"  # 429: every candidate cools down after a 429 or "server busy"
    NO_HEALTHY = "no_healthy"  # 503: none is healthy, or every one refused our credentials


class AuthOutcome(enum.StrEnum):
    """How `[auth]` answered a request: the `outcome` label of octoroute_client_requests."""

    ACCEPTED = "accepted"
    UNAUTHENTICATED = "unauthenticated"  # no key or an unknown one: key label "-"
    FORBIDDEN = "forbidden"  # a model the key may not use
    BUDGET = "budget"  # the key's day or month token budget is spent


NO_KEY = "-"


class _Children(dict[tuple[str, ...], Any]):
    """The labelled children of one metric, by label values: `children[("a", "b")]`.
    Each is made by prometheus_client's `labels()` (which validates and locks) once,
    on first use; after that a lookup is a plain dict subscript. Label sets are bounded."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        super().__init__()
        self._metric = metric

    def __missing__(self, values: tuple[str, ...]) -> Any:
        child = self[values] = self._metric.labels(*values)
        return child

    def ensure(self, *values: str) -> Any:
        """The child for `values`, made now if it does not exist yet (its series shows at 0)."""
        return self[values]


class _Counts(dict[tuple[str, ...], Any]):
    """The values of a counter's children, by label values, for the request path:
    `counts[("a", "b")].inc(1)`. prometheus_client's `Counter.inc` checks on every call
    that the metric is a labelled child and the amount is not negative; both hold here
    by construction (children come from `labels()`, callers add counts and token
    numbers), so the request path adds to the child's value, as `inc` then does.
    Counter children are never removed, so a value stays the child's."""

    def __init__(self, children: _Children) -> None:
        super().__init__()
        self._children = children

    def __missing__(self, values: tuple[str, ...]) -> Any:
        value = self[values] = self._children[values]._value
        return value


class _Buckets:
    """What `Histogram.observe` does for one child, past its per-call check that the
    metric is a labelled child: add to the sum and to the first bucket whose bound holds
    the amount (found by bisection; prometheus_client walks the bounds in order)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._sum = child._sum
        self._bounds = tuple(child._upper_bounds)
        self._buckets = child._buckets

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        i = bisect_left(self._bounds, amount)
        if i < len(self._bounds) and amount <= self._bounds[i]:  # NaN falls in no bucket, as there
            self._buckets[i].inc(1)


class _Histograms(dict[tuple[str, ...], _Buckets]):
    """`_Buckets` of a histogram's children, by label values (children are never removed)."""

    def __init__(self, children: _Children) -> None:
        super().__init__()
        self._children = children

    def __missing__(self, values: tuple[str, ...]) -> _Buckets:
        buckets = self[values] = _Buckets(self._children[values])
        return buckets


class Recorder:
    """What the request path records; this base class records nothing."""

    enabled = False

    def http_started(self) -> None:
        """A client request is being served (until `http_finished`)."""

    def http_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        """A client request ended; `route` is a registered route or 'unmatched'."""

    def routed(self, tier: str, strategy: Strategy, routing_ms: float) -> None:
        """A routing decision was made for a request, taking `routing_ms`."""

    def attempt_started(self, tier: str) -> None:
        """An upstream model is about to be called for the group `tier`."""

    def attempt_finished(self, endpoint: str, error: ErrorType | None, seconds: float | None) -> None:
        """An attempt reached its commit point (`error` None) or failed before it.
        `seconds` is the upstream request's duration; None for a stream that goes on
        (its duration is recorded by `stream_finished`)."""

    def stream_finished(self, endpoint: str, seconds: float) -> None:
        """A relayed upstream stream ended (cleanly or not) after `seconds`."""

    def first_token(self, endpoint: str, seconds: float) -> None:
        """A stream's first event arrived `seconds` after the request was sent."""

    def tokens(self, endpoint: str, input_tokens: int, output_tokens: int) -> None:
        """Token counts the upstream reported in its usage."""

    def health(self, endpoint: str, healthy: bool) -> None:
        """The endpoint's health as this worker now sees it."""

    def retry(self) -> None:
        """An attempt after the first in a request (same group or a fallback)."""

    def fallback(self, from_group: str, to_group: str) -> None:
        """A request moved from one group of its fallback chain to the next."""

    def mid_stream(self, endpoint: str) -> None:
        """A stream failed after its commit point."""

    def buckets(self, live: int) -> None:
        """The rate limiter now holds `live` client buckets in this worker."""

    def degradations(self, kinds: Iterable[str]) -> None:
        """Request fields or capabilities that could not be honoured (DegradationKind values)."""

    def shadow_configured(self, strategy: Strategy) -> None:
        """Shadow mode is on with this candidate (its series start at 0)."""

    def shadow_decided(self, strategy: Strategy, live_tier: str, shadow_tier: str) -> None:
        """The shadow candidate decided `shadow_tier` for a request routed live to `live_tier`."""

    def shadow_pending(self, strategy: Strategy, delta: int) -> None:
        """A background (judge) shadow decision started (+1) or ended (-1)."""

    def shadow_dropped(self, strategy: Strategy) -> None:
        """A judge shadow decision was not started: too many were already pending."""

    def in_flight(self, endpoint: str, count: int) -> None:
        """Requests `endpoint` is serving now (its slots in use)."""

    def slots(self, endpoint: str, capacity: int | None) -> None:
        """How many requests `endpoint` serves at once (None: unbounded)."""

    def waiting(self, group: str, count: int) -> None:
        """Requests waiting for a free slot in `group`'s line now."""

    def queue_left(self, group: str, outcome: QueueOutcome, seconds: float) -> None:
        """A request left `group`'s waiting line after `seconds`, as `outcome` says."""

    def affinity(self, group: str, result: str) -> None:
        """Whether a request kept its conversation's endpoint (AffinityResult value)."""

    def context_event(self, group: str, event: ContextEvent) -> None:
        """A request's size mattered: an endpoint of `group` skipped or overflowed, the
        request served there after escalating, or rejected (its requested group)."""

    def cooldown(self, endpoint: str, reason: str, until: float) -> None:
        """The upstream asked to back off (`reason`, a `fleet.rotation.Pressure` value): the
        endpoint is out of rotation until `until` (unix seconds)."""

    def loading_wait(self, endpoint: str) -> None:
        """The upstream is loading its model; the attempt waits and asks again."""

    def credentials_refused(self, endpoint: str, refused: bool) -> None:
        """The endpoint refused our credentials (401/403) and left rotation, or came back."""

    def fail_open(self, group: str) -> None:
        """Every endpoint was unusable; one was tried anyway (fail-open)."""

    def client_request(self, key: str | None, outcome: AuthOutcome) -> None:
        """`[auth]` answered a request from the key named `key` (None: no known key)."""

    def rate_limited(self, reason: str) -> None:
        """`[rate_limit]` refused a request (`reason`: a `fleet.ratelimit.LimitReason` value)."""

    def fleet_refused(self, reason: FleetRefusal) -> None:
        """A request got no endpoint: all cooling down, or none healthy."""

    def state_backend(self, up: bool) -> None:
        """The shared state backend ([state]) is answering (True) or this process fell back to local state."""

    def state_backend_error(self) -> None:
        """A call to the shared state backend failed or timed out."""

    def usage(self, client: str, group: str, endpoint: str, tokens_in: int, tokens_out: int, reported: bool) -> None:
        """A request `endpoint` served for `client` used these tokens (`reported`: the
        upstream said so; else they are 0 and the request is counted as missing usage)."""

    def topology_changed(self, endpoints: Iterable[str], groups: Iterable[str], removed: Iterable[str]) -> None:
        """A reload: series for new `endpoints` and `groups` start at 0; the gauges of
        `removed` endpoints go (counters keep their totals)."""

    def config_reloaded(self, result: str, generation: int) -> None:
        """A reload ended with `result` (`RELOAD_RESULTS`); `generation` runs now."""

    def reprice(self, prices: Mapping[str, Price], currency: str) -> None:
        """A reload: tokens from now on cost `prices`; those counted so far keep theirs."""

    def usage_costs(self, families: Iterable[Metric]) -> dict[UsageKey, Decimal | None]:
        """The exact cost of each (client, group, endpoint)'s tokens in `families` (None: no price)."""
        return {}

    def costs_of(self, totals: Mapping[UsageKey, tuple[int, int]]) -> dict[UsageKey, Decimal | None]:
        """The exact cost of (input, output) token totals per (client, group, endpoint)."""
        return {}

    def exposition(self) -> bytes:
        return b""

    def collect(self) -> Iterable[Metric]:
        """Every metric family, merged over workers in multiprocess mode."""
        return ()


class _WorkerFiles:
    """prometheus_client's multiprocess merge of every worker's files, less the files
    still 0 bytes long. A worker creates a file the first time it writes a metric of a
    new kind and sizes it a moment later; a scrape in between would fail on the empty
    file (prometheus/client_python#1199), and a worker killed in between would leave it
    to fail every scrape after. A file with nothing in it holds no values to lose."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._directory, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # a dead worker's live gauges, just removed
                if os.path.getsize(path) > 0:  # sized once, never shrunk: non-empty stays readable
                    files.append(path)
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


class PrometheusRecorder(Recorder):
    """The gateway's Prometheus metrics. `routing_unit`: "ms" keeps octoroute 1.0's
    `octoroute_routing_duration_ms`; "seconds" names it in base units instead
    (`octoroute_routing_duration_seconds`), which promtool's lint accepts.
    `multiprocess_dir`: the directory of prometheus_client's multiprocess mode, or
    None for a single process."""

    enabled = True

    def __init__(
        self,
        endpoints: Iterable[str],
        groups: Iterable[str],
        *,
        routing_unit: Literal["ms", "seconds"] = "ms",
        multiprocess_dir: str | None = None,
        client_keys: Iterable[str] = (),
        prices: Mapping[str, Price] | None = None,
        currency: str = "USD",
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self._book = CostBook({ep: p for ep, p in (prices or {}).items() if p.priced})
        self.currency = currency
        self._requests = Counter(
            "octoroute_requests",
            "Routed requests, by the tier (group) chosen and the strategy that chose it.",
            ["tier", "strategy"],
            registry=registry,
        )
        if routing_unit == "ms":  # octoroute 1.0's name and buckets
            self._routing = Histogram(
                "octoroute_routing_duration_ms",
                "Time spent deciding where a request goes, in milliseconds.",
                ["strategy"],
                buckets=ROUTING_BUCKETS_MS,
                registry=registry,
            )
            self._routing_scale = 1.0
        else:  # base units, as Prometheus naming (and promtool's lint) asks
            self._routing = Histogram(
                "octoroute_routing_duration_seconds",
                "Time spent deciding where a request goes, in seconds.",
                ["strategy"],
                buckets=tuple(b / 1000 for b in ROUTING_BUCKETS_MS),
                registry=registry,
            )
            self._routing_scale = 0.001
        self._invocations = Counter(
            "octoroute_model_invocations",
            "Upstream model calls (every attempt, retries and router-judge calls "
            "included), by the tier (group) of the endpoint called.",
            ["tier"],
            registry=registry,
        )
        self._http = Counter(
            "octoroute_http_requests",
            "Client HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self._http_duration = Histogram(
            "octoroute_http_request_duration_seconds",
            "Client HTTP request duration (to the end of the stream for streams), in seconds.",
            ["route"],
            buckets=HTTP_BUCKETS_S,
            registry=registry,
        )
        self._state_up = Gauge(
            "octoroute_state_backend_up",
            "1 while the shared state backend ([state]) answers, 0 while this gateway uses local state instead "
            "(the lowest of any worker).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._state_errors = Counter(
            "octoroute_state_backend_errors",
            "Calls to the shared state backend that failed or timed out (each answered from local state).",
            registry=registry,
        )
        self._active = Gauge(
            "octoroute_active_connections",
            "Client requests being served now, open streams included.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._attempts = Counter(
            "octoroute_upstream_attempts",
            "Upstream attempts by how they ended before the commit point: ok or an error type.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self._errors = Counter(
            "octoroute_upstream_errors",
            "Upstream failures by endpoint and error type (mid_stream: after the commit point).",
            ["endpoint", "error_type"],
            registry=registry,
        )
        self._upstream_duration = Histogram(
            "octoroute_upstream_request_duration_seconds",
            "Upstream request duration, to the last byte of the answer or the failure, in seconds.",
            ["endpoint"],
            buckets=UPSTREAM_BUCKETS_S,
            registry=registry,
        )
        self._ttft = Histogram(
            "octoroute_time_to_first_token_seconds",
            "Streams: time from sending the request upstream to its first event, in seconds.",
            ["endpoint"],
            buckets=UPSTREAM_BUCKETS_S,
            registry=registry,
        )
        self._tokens = Counter(
            "octoroute_tokens",
            "Tokens reported in upstream usage, by endpoint and direction (input: prompt, output: completion).",
            ["endpoint", "direction"],
            registry=registry,
        )
        self._healthy = Gauge(
            "octoroute_endpoint_healthy",
            "1 when the endpoint is healthy, 0 when it is not (the latest verdict of any worker).",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self._retries = Counter(
            "octoroute_retries",
            "Upstream attempts after the first in a request (fallback attempts included).",
            registry=registry,
        )
        self._fallbacks = Counter(
            "octoroute_fallbacks",
            "Requests moved from one group of a fallback chain to the next.",
            ["from_group", "to_group"],
            registry=registry,
        )
        self._mid_stream = Counter(
            "octoroute_mid_stream_failures",
            "Streams that failed after their commit point, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self._buckets = Gauge(
            "octoroute_rate_limiter_buckets",
            "Live per-client rate-limit buckets (summed over workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._degradations = Counter(
            "octoroute_degradations",
            "Request fields or capabilities a translation or the serving endpoint could not honour, by kind.",
            ["kind"],
            registry=registry,
        )
        self._shadow_decisions = Counter(
            "octoroute_shadow_decisions",
            "Shadow mode: requests the candidate strategy decided, by candidate, the live tier "
            "and the candidate's tier (equal tiers: agreement).",
            ["strategy", "live_tier", "shadow_tier"],
            registry=registry,
        )
        self._shadow_pending = Gauge(
            "octoroute_shadow_pending",
            "Shadow mode: candidate decisions waiting for the router model (summed over workers).",
            ["strategy"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._shadow_dropped = Counter(
            "octoroute_shadow_dropped",
            "Shadow mode: judge candidate decisions not made because max_pending were in flight.",
            ["strategy"],
            registry=registry,
        )
        self._c_shadow = _Children(self._shadow_decisions)
        self._c_shadow_dropped = _Children(self._shadow_dropped)
        self._c_shadow_pending = _Children(self._shadow_pending)
        self._in_flight = Gauge(
            "octoroute_endpoint_in_flight",
            "Requests each endpoint is serving now (slots in use; summed over workers).",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._slots = Gauge(
            "octoroute_endpoint_slots",
            "Requests each endpoint serves at once (max_concurrency, configured or discovered; "
            "absent when unbounded). Each worker enforces it on its own.",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._context = Counter(
            "octoroute_context_events",
            "Context-window events by group: endpoints skipped (request too large for their window) "
            "or answering with a context overflow, requests served after escalating, requests rejected.",
            ["group", "event"],
            registry=registry,
        )
        self._c_context = _Children(self._context)
        self._cooldowns = Counter(
            "octoroute_upstream_cooldowns",
            "Times an upstream asked to back off (429, or 503 busy), by endpoint and reason.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self._cooldown_until = Gauge(
            "octoroute_endpoint_cooldown_until_seconds",
            "Unix time when the endpoint's latest cooldown ends; it is cooling down while this is above time().",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._waiting = Gauge(
            "octoroute_queue_waiting",
            "Requests waiting for a free slot, by group (summed over workers).",
            ["group"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._queue = Histogram(
            "octoroute_queue_wait_seconds",
            "Time requests spent waiting for a free slot, by group and how the wait ended "
            "(served, full: refused at once, timeout, gone: the client left).",
            ["group", "outcome"],
            buckets=QUEUE_BUCKETS_S,
            registry=registry,
        )
        self._affinity = Counter(
            "octoroute_affinity",
            "Requests by whether they kept their conversation's endpoint (hit), started one (new) "
            "or had to move (broken), by the group that served them.",
            ["group", "result"],
            registry=registry,
        )
        self._c_in_flight = _Children(self._in_flight)
        self._c_slots = _Children(self._slots)
        self._c_waiting = _Children(self._waiting)
        self._c_queue = _Children(self._queue)
        self._c_affinity = _Children(self._affinity)
        self._loading_waits = Counter(
            "octoroute_upstream_loading_waits",
            "Times an attempt waited for an upstream answering 503 while loading its model.",
            ["endpoint"],
            registry=registry,
        )
        self._refused = Gauge(
            "octoroute_endpoint_credentials_refused",
            "1 while the endpoint is out of rotation because it answered 401/403 to our credentials.",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self._fail_open = Counter(
            "octoroute_fail_open_attempts",
            "Attempts made although every endpoint of the request's groups was unhealthy, by group.",
            ["group"],
            registry=registry,
        )
        self._clients = Counter(
            "octoroute_client_requests",
            "Requests seen by [auth], by client key name (never the key; '-' when none was "
            "recognised) and outcome: accepted, unauthenticated, forbidden, budget.",
            ["key", "outcome"],
            registry=registry,
        )
        self._c_clients = _Children(self._clients)
        self._rate_limited = Counter(
            "octoroute_rate_limited",
            "Requests [rate_limit] refused, by reason: requests (429, request rate), tokens "
            "(429, token budget), too_large (413, larger than the whole per-minute token budget).",
            ["reason"],
            registry=registry,
        )
        self._c_rate_limited = _Children(self._rate_limited)
        for limit_reason in RATE_LIMIT_REASONS:
            self._c_rate_limited.ensure(limit_reason)
        self._fleet_refusals = Counter(
            "octoroute_fleet_refusals",
            "Requests refused because no endpoint could take them, by reason: cooling_down (429: every "
            "candidate cooling down after a 429 or 'server busy'), no_healthy (503: none healthy, or every "
            "one refused our credentials).",
            ["reason"],
            registry=registry,
        )
        self._c_fleet_refusals = _Children(self._fleet_refusals)
        for fleet_reason in FleetRefusal:
            self._c_fleet_refusals.ensure(fleet_reason.value)
        # Usage per client key: keys come from [auth] (bounded by the keys file and config) or
        # are 'anonymous', and each endpoint is in one group, so there are at most
        # (keys + 1) x endpoints series of each.
        self._usage_tokens = Counter(
            "octoroute_usage_tokens",
            "Tokens in upstream usage by client key name ('anonymous' without [auth]), group, "
            "endpoint and direction (input: prompt, output: completion).",
            ["client", "group", "endpoint", "direction"],
            registry=registry,
        )
        self._usage_requests = Counter(
            "octoroute_usage_requests",
            "Requests served, by client key name, group, endpoint and whether the upstream "
            "reported usage (reported) or not (missing: counted as 0 tokens).",
            ["client", "group", "endpoint", "usage"],
            registry=registry,
        )
        self._c_usage_tokens = _Children(self._usage_tokens)
        self._c_usage_requests = _Children(self._usage_requests)
        # (client, group, endpoint, reported) -> its requests, input and output children: one lookup per request
        self._usage_children: dict[tuple[str, str, str, bool], tuple[Any, Any, Any]] = {}
        self._c_clients.ensure(NO_KEY, AuthOutcome.UNAUTHENTICATED.value)
        for name in client_keys:
            for auth_outcome in (AuthOutcome.ACCEPTED, AuthOutcome.FORBIDDEN, AuthOutcome.BUDGET):
                self._c_clients.ensure(name, auth_outcome.value)
        self._c_cooldowns = _Children(self._cooldowns)
        self._c_cooldown_until = _Children(self._cooldown_until)
        self._c_loading_waits = _Children(self._loading_waits)
        self._c_refused = _Children(self._refused)
        self._c_fail_open = _Children(self._fail_open)
        self._c_requests = _Children(self._requests)
        self._c_routing = _Children(self._routing)
        self._c_invocations = _Children(self._invocations)
        self._c_http = _Children(self._http)
        self._c_http_duration = _Children(self._http_duration)
        self._c_attempts = _Children(self._attempts)
        self._c_errors = _Children(self._errors)
        self._c_upstream_duration = _Children(self._upstream_duration)
        self._c_ttft = _Children(self._ttft)
        self._c_tokens = _Children(self._tokens)
        self._c_healthy = _Children(self._healthy)
        self._c_fallbacks = _Children(self._fallbacks)
        self._c_mid_stream = _Children(self._mid_stream)
        self._c_degradations = _Children(self._degradations)
        # the request path's counters and histograms, past prometheus_client's per-call checks
        self._active_value = self._active._value
        self._v_http = _Counts(self._c_http)
        self._v_requests = _Counts(self._c_requests)
        self._v_invocations = _Counts(self._c_invocations)
        self._v_attempts = _Counts(self._c_attempts)
        self._v_tokens = _Counts(self._c_tokens)
        self._v_affinity = _Counts(self._c_affinity)
        self._h_http_duration = _Histograms(self._c_http_duration)
        self._h_routing = _Histograms(self._c_routing)
        self._h_upstream_duration = _Histograms(self._c_upstream_duration)
        self._reloads = Counter(
            "octoroute_config_reloads",
            "Config reloads (SIGHUP or --watch) by result: ok (applied, or unchanged) or refused "
            "(the config had problems; the running one was kept).",
            ["result"],
            registry=registry,
        )
        self._c_reloads = _Children(self._reloads)
        for result in RELOAD_RESULTS:
            self._c_reloads.ensure(result)
        self._generation = Gauge(
            "octoroute_config_generation",
            "The running config's generation in each worker: 1 at start, one more per applied reload.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self._generation.set(1)
        # Every series a config can name exists from the start, at 0, so rates and
        # absent-series alerts work before the first event.
        for kind in DegradationKind:
            self._c_degradations.ensure(kind.value)
        for strategy in Strategy:
            self._c_routing.ensure(strategy.value)
        self._ensure_series(endpoints, groups)

    def _ensure_series(self, endpoints: Iterable[str], groups: Iterable[str]) -> None:
        for group in groups:
            self._c_invocations.ensure(group)
            self._c_waiting.ensure(group)
            for result in AFFINITY_RESULTS:
                self._c_affinity.ensure(group, result)
            for queue_outcome in QueueOutcome:
                self._c_queue.ensure(group, queue_outcome.value)
            for event in ContextEvent:
                self._c_context.ensure(group, event.value)
            self._c_fail_open.ensure(group)
        for ep in endpoints:
            self._c_in_flight.ensure(ep)
            self._c_cooldown_until.ensure(ep)
            for pressure in COOLDOWN_PRESSURES:
                self._c_cooldowns.ensure(ep, pressure.value)
            self._c_refused.ensure(ep)
            self._c_loading_waits.ensure(ep)
            if (ep,) not in self._c_healthy:
                self._c_healthy.ensure(ep).set(1)
            self._c_mid_stream.ensure(ep)
            for direction in ("input", "output"):
                self._c_tokens.ensure(ep, direction)
            for outcome in ATTEMPT_OUTCOMES:
                self._c_attempts.ensure(ep, outcome)

    def topology_changed(self, endpoints: Iterable[str], groups: Iterable[str], removed: Iterable[str]) -> None:
        self._ensure_series(endpoints, groups)
        if self.multiprocess_dir is not None:
            return  # prometheus_client cannot remove series in multiprocess mode; they stay until restart
        for ep in removed:  # gauges describe the present; counters keep their totals
            for children, gauge in (
                (self._c_healthy, self._healthy),
                (self._c_in_flight, self._in_flight),
                (self._c_refused, self._refused),
                (self._c_cooldown_until, self._cooldown_until),
                (self._c_slots, self._slots),
            ):
                if children.pop((ep,), None) is not None:
                    gauge.remove(ep)

    def config_reloaded(self, result: str, generation: int) -> None:
        self._c_reloads[result,].inc()
        self._generation.set(generation)

    def http_started(self) -> None:
        self._active_value.inc(1)

    def http_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        self._active_value.inc(-1)
        self._v_http[route, method, str(status)].inc(1)
        self._h_http_duration[route,].observe(seconds)

    def routed(self, tier: str, strategy: Strategy, routing_ms: float) -> None:
        self._v_requests[tier, strategy.value].inc(1)
        self._h_routing[strategy.value,].observe(routing_ms * self._routing_scale)

    def attempt_started(self, tier: str) -> None:
        self._v_invocations[tier,].inc(1)

    def attempt_finished(self, endpoint: str, error: ErrorType | None, seconds: float | None) -> None:
        if error is None:
            self._v_attempts[endpoint, OK].inc(1)
        else:
            self._c_attempts[endpoint, error.value].inc()
            self._c_errors[endpoint, error.value].inc()
        if seconds is not None:
            self._h_upstream_duration[endpoint,].observe(seconds)

    def stream_finished(self, endpoint: str, seconds: float) -> None:
        self._c_upstream_duration[endpoint,].observe(seconds)

    def first_token(self, endpoint: str, seconds: float) -> None:
        self._c_ttft[endpoint,].observe(seconds)

    def tokens(self, endpoint: str, input_tokens: int, output_tokens: int) -> None:
        if input_tokens > 0:
            self._v_tokens[endpoint, "input"].inc(input_tokens)
        if output_tokens > 0:
            self._v_tokens[endpoint, "output"].inc(output_tokens)

    def health(self, endpoint: str, healthy: bool) -> None:
        self._c_healthy[endpoint,].set(1 if healthy else 0)

    def retry(self) -> None:
        self._retries.inc()

    def fallback(self, from_group: str, to_group: str) -> None:
        self._c_fallbacks[from_group, to_group].inc()

    def mid_stream(self, endpoint: str) -> None:
        self._c_mid_stream[endpoint,].inc()
        self._c_errors[endpoint, ErrorType.MID_STREAM.value].inc()

    def buckets(self, live: int) -> None:
        self._buckets.set(live)

    def state_backend(self, up: bool) -> None:
        self._state_up.set(1 if up else 0)

    def state_backend_error(self) -> None:
        self._state_errors.inc()

    def degradations(self, kinds: Iterable[str]) -> None:
        for kind in kinds:
            self._c_degradations[DegradationKind(kind).value,].inc()

    def shadow_configured(self, strategy: Strategy) -> None:
        self._c_shadow_dropped.ensure(strategy.value)
        self._c_shadow_pending.ensure(strategy.value)

    def shadow_decided(self, strategy: Strategy, live_tier: str, shadow_tier: str) -> None:
        self._c_shadow[strategy.value, live_tier, shadow_tier].inc()

    def shadow_pending(self, strategy: Strategy, delta: int) -> None:
        self._c_shadow_pending[strategy.value,].inc(delta)

    def shadow_dropped(self, strategy: Strategy) -> None:
        self._c_shadow_dropped[strategy.value,].inc()

    def in_flight(self, endpoint: str, count: int) -> None:
        self._c_in_flight[endpoint,].set(count)

    def slots(self, endpoint: str, capacity: int | None) -> None:
        if capacity is None:
            if (endpoint,) in self._c_slots:
                del self._c_slots[endpoint,]
                self._slots.remove(endpoint)
            return
        self._c_slots[endpoint,].set(capacity)

    def waiting(self, group: str, count: int) -> None:
        self._c_waiting[group,].set(count)

    def queue_left(self, group: str, outcome: QueueOutcome, seconds: float) -> None:
        self._c_queue[group, outcome.value].observe(seconds)

    def affinity(self, group: str, result: str) -> None:
        self._v_affinity[group, result].inc(1)

    def context_event(self, group: str, event: ContextEvent) -> None:
        self._c_context[group, event.value].inc()

    def cooldown(self, endpoint: str, reason: str, until: float) -> None:
        self._c_cooldowns[endpoint, reason].inc()
        self._c_cooldown_until[endpoint,].set(until)

    def loading_wait(self, endpoint: str) -> None:
        self._c_loading_waits[endpoint,].inc()

    def credentials_refused(self, endpoint: str, refused: bool) -> None:
        self._c_refused[endpoint,].set(1 if refused else 0)

    def client_request(self, key: str | None, outcome: AuthOutcome) -> None:
        self._c_clients[key or NO_KEY, outcome.value].inc()

    def rate_limited(self, reason: str) -> None:
        self._c_rate_limited[reason,].inc()

    def fleet_refused(self, reason: FleetRefusal) -> None:
        self._c_fleet_refusals[reason.value,].inc()

    def fail_open(self, group: str) -> None:
        self._c_fail_open[group,].inc()

    def usage(self, client: str, group: str, endpoint: str, tokens_in: int, tokens_out: int, reported: bool) -> None:
        key = (client, group, endpoint, reported)
        children = self._usage_children.get(key)
        if children is None:  # once per key: both directions exist from the first request, so rate() sees them
            children = self._usage_children[key] = (
                self._c_usage_requests[client, group, endpoint, "reported" if reported else "missing"]._value,
                self._c_usage_tokens[client, group, endpoint, "input"]._value,
                self._c_usage_tokens[client, group, endpoint, "output"]._value,
            )
        children[0].inc(1)
        if tokens_in:  # adding 0 changes nothing
            children[1].inc(tokens_in)
        if tokens_out:
            children[2].inc(tokens_out)

    def _source(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        merged = CollectorRegistry()
        merged.register(_WorkerFiles(self.multiprocess_dir))
        return merged

    def exposition(self) -> bytes:
        return generate_latest(_Families(self.collect()))

    def collect(self) -> Iterable[Metric]:
        families = list(self._source().collect())
        if self._book.prices or self._book.banked:
            families.append(self._cost(families))
        return families

    def reprice(self, prices: Mapping[str, Price], currency: str) -> None:
        self._book.reprice({ep: p for ep, p in prices.items() if p.priced}, _token_totals(self._source().collect()))
        self.currency = currency

    def usage_costs(self, families: Iterable[Metric]) -> dict[UsageKey, Decimal | None]:
        return self._book.costs(_token_totals(families))

    def costs_of(self, totals: Mapping[UsageKey, tuple[int, int]]) -> dict[UsageKey, Decimal | None]:
        return self._book.costs(totals)

    def _cost(self, families: Iterable[Metric]) -> Metric:
        """`octoroute_usage_cost_total`, made at each read from the exact token totals times
        the prices (never a float sum of per-request costs), merged over workers."""
        cost = CounterMetricFamily(
            "octoroute_usage_cost",
            "What the tokens in usage cost at the configured prices per million tokens, by client "
            "key name, group and endpoint, in the currency of the label (endpoints with a price only).",
            labels=["client", "group", "endpoint", "currency"],
        )
        for (client, group, endpoint), value in sorted(self.usage_costs(families).items()):
            if value is not None:
                cost.add_metric([client, group, endpoint, self.currency], float(value))
        return cost


def _token_totals(families: Iterable[Metric]) -> dict[UsageKey, tuple[int, int]]:
    """(input, output) tokens per (client, group, endpoint) from `octoroute_usage_tokens`."""
    tokens: dict[UsageKey, list[int]] = {}
    for family in families:
        if family.name != "octoroute_usage_tokens":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                both = tokens.setdefault((labels["client"], labels["group"], labels["endpoint"]), [0, 0])
                both[0 if labels["direction"] == "input" else 1] += round(sample.value)
    return {key: (both[0], both[1]) for key, both in tokens.items()}


class _Families(CollectorRegistry):
    """Metric families already collected, in the shape `generate_latest` reads."""

    def __init__(self, families: Iterable[Metric]) -> None:
        super().__init__(auto_describe=False)
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)

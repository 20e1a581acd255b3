"""The JSON snapshot behind `GET /metrics.json` (documented in docs/metrics-json.md).

Counts come from the Prometheus metrics, merged over every worker in
multiprocess mode; latency percentiles, recent decisions and last errors come
from the decision and error windows (`observe.decisions`). `build_snapshot` is
pure: the caller collects the inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from prometheus_client.metrics_core import Metric

from octoroute.config.models import ShadowConfig
from octoroute.core.errors import COOLDOWN_PRESSURES, ErrorType
from octoroute.core.facts import ContextEvent
from octoroute.core.types import DegradationKind, Strategy, Tier
from octoroute.observe.decisions import percentiles
from octoroute.observe.metrics import (
    AFFINITY_RESULTS,
    OK,
    RATE_LIMIT_REASONS,
    AuthOutcome,
    FleetRefusal,
    QueueOutcome,
)
from octoroute.observe.usage import UsageKey, UsageRow, UsageTotals, format_cost, total_cost, usage_rows

DECISIONS_SHOWN = 100
API_ROUTES = ("/v1/chat/completions", "/v1/messages", "/chat", "/api/chat", "/api/generate")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    id: str
    group: str
    model: str
    kind: str
    base_url: str
    context: Mapping[str, object] | None = None  # window, its source, total_slots (Gateway.context_info)
    in_flight_elsewhere: int = 0  # other workers' and replicas' requests on it, as last published
    in_flight_here: int = 0  # the answering worker's own requests on it now


@dataclass(frozen=True, slots=True)
class SnapshotInputs:
    version: str
    now: float
    started_at: float
    workers: int
    groups: Sequence[str]  # in config order
    endpoints: Sequence[EndpointInfo]
    rate_limit_enabled: bool
    families: Iterable[Metric]
    decisions: Sequence[bytes]  # JSON records from the decisions window(s)
    errors: Sequence[bytes]  # JSON records from the error window(s)
    shadow: ShadowConfig | None = None  # `[routing.shadow]`, when shadow mode is on
    live_strategy: Strategy | None = None  # `[routing] strategy`, what shadow mode compares with
    live_model: str | None = None  # the live learned model's version, when the live strategy is `learned`
    shadow_model: str | None = None  # the candidate's learned model's version, when it scores with one
    usage_costs: Mapping[UsageKey, Decimal | None] = field(default_factory=dict)  # exact, from the recorder
    currency: str = "USD"
    # the shared [state] store's fleet-wide usage totals; None: this gateway's counters
    usage_totals: UsageTotals | None = None


def _samples(families: Iterable[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in families:
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def _sum_by(rows: list[tuple[dict[str, str], float]], *keys: str) -> dict[tuple[str, ...], int]:
    totals: dict[tuple[str, ...], int] = defaultdict(int)
    for labels, value in rows:
        totals[tuple(labels.get(k, "") for k in keys)] += round(value)
    return totals


def _records(raw: Sequence[bytes]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for record in raw:
        try:
            value = orjson.loads(record)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    out.sort(key=lambda r: float(r.get("time") or 0), reverse=True)  # type: ignore[arg-type]
    return out


def _ordered(counts: dict[str, int], order: Sequence[str]) -> dict[str, int]:
    """`counts` in the given key order (keys not in it last, sorted), so views do not reshuffle."""
    known = [k for k in order if k in counts]
    return {k: counts[k] for k in [*known, *sorted(set(counts) - set(known))]}


def _numbers(records: Iterable[dict[str, object]], key: str) -> list[float]:
    return [float(v) for r in records if isinstance(v := r.get(key), int | float)]


def _queue(samples: dict[str, list[tuple[dict[str, str], float]]], groups: Sequence[str]) -> dict[str, object]:
    """Requests waiting for a slot now, by group, and how many left the line each way."""
    waiting = {g: n for (g,), n in _sum_by(samples["octoroute_queue_waiting"], "group").items()}
    left = _sum_by(samples["octoroute_queue_wait_seconds_count"], "outcome")
    return {
        "waiting": _ordered(waiting, groups),
        **{o.value: left.get((o.value,), 0) for o in QueueOutcome},
    }


def _replicas(ep: EndpointInfo, gateway: int) -> int:
    """Other gateways' requests on `ep`: what the answering worker sees elsewhere, less its
    sibling workers' (this gateway's requests beyond its own, already in `in_flight`).
    The two are read at different times (the others' as last published), so never below 0."""
    return max(ep.in_flight_elsewhere - max(gateway - ep.in_flight_here, 0), 0)


def _cooling_until(until: float, now: float) -> float | None:
    """When a cooldown still running ends (unix seconds), None when there is none."""
    return round(until, 3) if until > now else None


def _refusals(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, object]:
    """Requests the gateway itself refused, by reason, every reason listed (0 when it never
    happened): [rate_limit], [auth], the waiting line for slots, the context check, and
    the fleet (every candidate cooling down, none healthy)."""
    limited = _sum_by(samples["octoroute_rate_limited_total"], "reason")
    auth = _sum_by(samples["octoroute_client_requests_total"], "outcome")
    queue = _sum_by(samples["octoroute_queue_wait_seconds_count"], "outcome")
    context = _sum_by(samples["octoroute_context_events_total"], "event")
    by_reason = {f"rate_limit_{r}": limited.get((r,), 0) for r in RATE_LIMIT_REASONS}
    for outcome in (AuthOutcome.UNAUTHENTICATED, AuthOutcome.FORBIDDEN, AuthOutcome.BUDGET):
        by_reason[f"auth_{outcome.value}"] = auth.get((outcome.value,), 0)
    for waited in (QueueOutcome.FULL, QueueOutcome.TIMEOUT):
        by_reason[f"queue_{waited.value}"] = queue.get((waited.value,), 0)
    by_reason["context_rejected"] = context.get((ContextEvent.REJECTED.value,), 0)
    fleet = _sum_by(samples["octoroute_fleet_refusals_total"], "reason")
    for why in FleetRefusal:
        by_reason[why.value] = fleet.get((why.value,), 0)
    return {"total": sum(by_reason.values()), "by_reason": by_reason}


def build_snapshot(inputs: SnapshotInputs) -> dict[str, object]:
    """The snapshot as a JSON-ready dict."""
    samples = _samples(inputs.families)
    decisions = _records(inputs.decisions)
    errors = _records(inputs.errors)
    requests = _sum_by(samples["octoroute_requests_total"], "tier", "strategy")
    by_tier: dict[str, int] = defaultdict(int)
    by_strategy: dict[str, int] = defaultdict(int)
    for (tier, strategy), n in requests.items():
        by_tier[tier] += n
        by_strategy[strategy] += n
    by_tier = _ordered(by_tier, inputs.groups)
    by_strategy = _ordered(by_strategy, [s.value for s in Strategy])
    by_status: dict[str, int] = defaultdict(int)
    for (route, status), n in _sum_by(samples["octoroute_http_requests_total"], "route", "status").items():
        if route in API_ROUTES and n:
            by_status[f"{status[:1]}xx"] += n
    attempts = _sum_by(samples["octoroute_upstream_attempts_total"], "endpoint", "outcome")
    upstream_errors = _sum_by(samples["octoroute_upstream_errors_total"], "endpoint", "error_type")
    mid_stream = _sum_by(samples["octoroute_mid_stream_failures_total"], "endpoint")
    tokens = _sum_by(samples["octoroute_tokens_total"], "endpoint", "direction")
    healthy = {labels["endpoint"]: value for labels, value in samples["octoroute_endpoint_healthy"]}
    in_flight = _sum_by(samples["octoroute_endpoint_in_flight"], "endpoint")
    slots = {labels["endpoint"]: round(value) for labels, value in samples["octoroute_endpoint_slots"]}
    cool_until = {labels["endpoint"]: value for labels, value in samples["octoroute_endpoint_cooldown_until_seconds"]}
    refused = {labels["endpoint"]: value for labels, value in samples["octoroute_endpoint_credentials_refused"]}
    cooldowns = _sum_by(samples["octoroute_upstream_cooldowns_total"], "endpoint", "reason")
    last_error: dict[str, dict[str, object]] = {}
    for record in errors:  # newest first: keep the first seen per endpoint
        endpoint = str(record.get("endpoint"))
        if endpoint not in last_error:
            last_error[endpoint] = {k: record.get(k) for k in ("time", "error_type", "message")}
    endpoints = []
    for ep in inputs.endpoints:
        outcomes = {o: n for (e, o), n in attempts.items() if e == ep.id and n}
        served = [r for r in decisions if r.get("endpoint") == ep.id]
        endpoints.append(
            {
                "id": ep.id,
                "group": ep.group,
                "model": ep.model,
                "kind": ep.kind,
                "base_url": ep.base_url,
                "healthy": healthy.get(ep.id, 1.0) >= 1.0,
                "cooldown_seconds": round(max(0.0, cool_until.get(ep.id, 0.0) - inputs.now), 3),
                "cooldown_until": _cooling_until(cool_until.get(ep.id, 0.0), inputs.now),
                "cooldowns": {p.value: cooldowns.get((ep.id, p.value), 0) for p in COOLDOWN_PRESSURES},
                "credentials_refused": refused.get(ep.id, 0.0) >= 1.0,
                "attempts": sum(outcomes.values()),
                "outcomes": outcomes,
                "errors": sum(n for o, n in outcomes.items() if o != OK),
                "mid_stream_failures": mid_stream.get((ep.id,), 0),
                "last_error": last_error.get(ep.id),
                "latency_ms": percentiles(_numbers(served, "latency_ms")),
                "tokens": {"input": tokens.get((ep.id, "input"), 0), "output": tokens.get((ep.id, "output"), 0)},
                "in_flight": in_flight.get((ep.id,), 0),
                "inflight_elsewhere": ep.in_flight_elsewhere,
                "inflight_replicas": _replicas(ep, in_flight.get((ep.id,), 0)),
                "max_concurrency": slots.get(ep.id),
                "context": ep.context,
            }
        )
    degradations = _sum_by(samples["octoroute_degradations_total"], "kind")
    buckets = sum(value for _, value in samples["octoroute_rate_limiter_buckets"])
    affinity = _sum_by(samples["octoroute_affinity_total"], "result")
    return {
        "version": inputs.version,
        "time": round(inputs.now, 3),
        "started_at": round(inputs.started_at, 3),
        "uptime_seconds": round(max(inputs.now - inputs.started_at, 0.0), 3),
        "workers": inputs.workers,
        "groups": list(inputs.groups),
        "requests": {
            "total": sum(by_tier.values()),
            "by_tier": dict(by_tier),
            "by_strategy": dict(by_strategy),
            "by_status": dict(sorted(by_status.items())),
        },
        "latency_ms": percentiles(_numbers(decisions, "latency_ms")),
        "ttft_ms": percentiles(_numbers(decisions, "ttft_ms")),
        "endpoints": endpoints,
        "retries": sum(round(v) for _, v in samples["octoroute_retries_total"]),
        "fallbacks": [
            {"from_group": f, "to_group": t, "count": n}
            for (f, t), n in sorted(_sum_by(samples["octoroute_fallbacks_total"], "from_group", "to_group").items())
        ],
        "upstream_errors": [
            {"endpoint": e, "error_type": t, "count": n}
            for (e, t), n in sorted(upstream_errors.items())
            if n and t in ErrorType.__members__.values()
        ],
        "mid_stream_failures": sum(mid_stream.values()),
        "context_events": [
            {"group": g, "event": e, "count": n}
            for (g, e), n in sorted(_sum_by(samples["octoroute_context_events_total"], "group", "event").items())
            if n
        ],
        "degradations": {k.value: degradations.get((k.value,), 0) for k in DegradationKind},
        "rate_limiter": {"enabled": inputs.rate_limit_enabled, "buckets": round(buckets)},
        # [auth]: requests per key name (never a key) and outcome; empty with auth off.
        "clients": [
            {"key": k, "outcome": o, "count": round(n)}
            for (k, o), n in sorted(_sum_by(samples["octoroute_client_requests_total"], "key", "outcome").items())
            if n
        ],
        "queue": _queue(samples, inputs.groups),
        "refusals": _refusals(samples),
        "affinity": {r: affinity.get((r,), 0) for r in AFFINITY_RESULTS},
        "shadow": shadow_summary(inputs, samples),
        "usage": usage_summary(samples, inputs.usage_costs, inputs.currency, inputs.usage_totals),
        "decisions": decisions[:DECISIONS_SHOWN],
    }


def usage_summary(
    samples: dict[str, list[tuple[dict[str, str], float]]],
    costs: Mapping[UsageKey, Decimal | None],
    currency: str,
    totals: UsageTotals | None = None,
) -> dict[str, object]:
    """Tokens and cost per client key, group and endpoint, and their totals: `totals`
    (the shared store's) when given, else this gateway's counters. Costs are decimal
    strings (exact), null where the endpoint has no price."""
    if totals is not None:
        rows = usage_rows(totals.requests, totals.tokens, costs)
    else:
        keys = ("client", "group", "endpoint")
        requests = _sum_by(samples["octoroute_usage_requests_total"], *keys, "usage")
        tokens = _sum_by(samples["octoroute_usage_tokens_total"], *keys, "direction")
        rows = usage_rows(requests, tokens, costs)  # type: ignore[arg-type]
    return {
        "currency": currency,
        "rows": [_usage_row(r) for r in rows],
        "total": {
            "requests": sum(r.requests for r in rows),
            "unreported": sum(r.unreported for r in rows),
            "input_tokens": sum(r.input_tokens for r in rows),
            "output_tokens": sum(r.output_tokens for r in rows),
            "cost": format_cost(total_cost(rows)),
        },
    }


def _usage_row(row: UsageRow) -> dict[str, object]:
    return {
        "client": row.client,
        "group": row.group,
        "endpoint": row.endpoint,
        "requests": row.requests,
        "unreported": row.unreported,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost": format_cost(row.cost),
    }


def shadow_summary(
    inputs: SnapshotInputs, samples: dict[str, list[tuple[dict[str, str], float]]]
) -> dict[str, object] | None:
    """Shadow mode's candidate against the live strategy: how often they agree, both
    tier mixes over the same requests, and the live x candidate counts; None when off."""
    shadow, live_strategy, groups = inputs.shadow, inputs.live_strategy, inputs.groups
    if shadow is None:
        return None
    strategy = shadow.strategy.value
    decided = _sum_by(samples["octoroute_shadow_decisions_total"], "strategy", "live_tier", "shadow_tier")
    cells = {(live, cand): n for (s, live, cand), n in decided.items() if s == strategy and n}
    tiers = [g for g in groups if g in Tier.__members__.values()]
    tiers += sorted({t for pair in cells for t in pair} - set(tiers))
    confusion = {live: {cand: cells.get((live, cand), 0) for cand in tiers} for live in tiers}
    total = sum(cells.values())
    agreed = sum(confusion[t][t] for t in tiers)
    dropped = _sum_by(samples["octoroute_shadow_dropped_total"], "strategy")
    return {
        "strategy": strategy,
        "live_strategy": None if live_strategy is None else live_strategy.value,
        "model": inputs.shadow_model,
        "live_model": inputs.live_model,
        "allow_judge": shadow.allow_judge,
        "sample": shadow.sample,
        "decisions": total,
        "agreed": agreed,
        "agreement": round(agreed / total, 4) if total else None,
        "live_by_tier": {t: sum(confusion[t].values()) for t in tiers},
        "shadow_by_tier": {t: sum(confusion[live][t] for live in tiers) for t in tiers},
        "confusion": confusion,
        "pending": round(sum(v for labels, v in samples["octoroute_shadow_pending"] if labels["strategy"] == strategy)),
        "dropped": dropped.get((strategy,), 0),
    }

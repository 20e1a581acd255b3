"""The pure half of `octoroute stats`: one `/metrics.json` snapshot (the dict
documented in docs/metrics-json.md, typed here) in, rich renderables out.

    Console().print(render_view(snapshot, "http://127.0.0.1:3000/metrics.json"))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NotRequired

from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, before Python 3.12

from octoroute.core.types import Strategy

DECISIONS_ONCE = 15
BAR_WIDTH = 20
_STRATEGY_ORDER = {s.value: i for i, s in enumerate(Strategy)}


# --- the snapshot, as the gateway sends it (docs/metrics-json.md) -------------
# Fields the view cannot do without are required; the rest are NotRequired so a
# slightly older or newer gateway still gets a view.


class Percentiles(TypedDict):
    p50: float | None
    p90: float | None
    p99: float | None
    count: int


class LastError(TypedDict):
    time: float | None
    error_type: str
    message: str | None


class EndpointContext(TypedDict):
    window: int | None
    source: str
    told_by: NotRequired[str | None]
    total_slots: NotRequired[int | None]


class EndpointStats(TypedDict):
    id: str
    group: str
    model: str
    healthy: bool
    attempts: int
    errors: int
    last_error: LastError | None
    latency_ms: NotRequired[Percentiles]
    credentials_refused: NotRequired[bool]
    cooldown_seconds: NotRequired[float]
    cooldown_until: NotRequired[float | None]
    cooldowns: NotRequired[dict[str, int]]
    in_flight: NotRequired[int]
    inflight_elsewhere: NotRequired[int]
    inflight_replicas: NotRequired[int]
    max_concurrency: NotRequired[int | None]
    context: NotRequired[EndpointContext | None]


class RequestCounts(TypedDict):
    total: int
    by_tier: dict[str, int]
    by_strategy: dict[str, int]
    by_status: NotRequired[dict[str, int]]


class FallbackCount(TypedDict):
    from_group: str
    to_group: str
    count: int


class UpstreamErrorCount(TypedDict):
    endpoint: str
    error_type: str
    count: int


class RateLimiter(TypedDict):
    enabled: bool
    buckets: int


class Refusals(TypedDict):
    total: int
    by_reason: dict[str, int]


class Decision(TypedDict):
    time: float
    request_id: str
    model: str | None
    tier: str | None  # the group routing chose; None (like strategy and reason) before routing
    group: NotRequired[str | None]  # the group that served (differs from tier after a fallback)
    endpoint: str | None
    strategy: str | None
    reason: str | None
    status: int | None
    latency_ms: float | None
    fallback_from: NotRequired[str | None]


class ShadowStats(TypedDict):
    strategy: str
    decisions: int
    agreed: int
    agreement: float | None
    live_by_tier: dict[str, int]
    shadow_by_tier: dict[str, int]
    live_strategy: NotRequired[str | None]
    model: NotRequired[str | None]
    live_model: NotRequired[str | None]
    allow_judge: NotRequired[bool]
    sample: NotRequired[float]
    pending: NotRequired[int]
    dropped: NotRequired[int]


class UsageRow(TypedDict):
    client: str
    group: str
    endpoint: str
    requests: int
    unreported: int
    input_tokens: int
    output_tokens: int
    cost: str | None  # exact decimal text; None: the endpoint has no price


class UsageTotal(TypedDict):
    requests: int
    unreported: int
    input_tokens: int
    output_tokens: int
    cost: str | None


class UsageStats(TypedDict):
    currency: str
    rows: list[UsageRow]
    total: UsageTotal


class Snapshot(TypedDict):
    time: float
    uptime_seconds: float
    workers: int
    requests: RequestCounts
    latency_ms: Percentiles
    endpoints: list[EndpointStats]
    decisions: list[Decision]
    version: NotRequired[str]
    ttft_ms: NotRequired[Percentiles]
    retries: NotRequired[int]
    fallbacks: NotRequired[list[FallbackCount]]
    upstream_errors: NotRequired[list[UpstreamErrorCount]]
    mid_stream_failures: NotRequired[int]
    degradations: NotRequired[dict[str, int]]
    rate_limiter: NotRequired[RateLimiter]
    refusals: NotRequired[Refusals]
    shadow: NotRequired[ShadowStats | None]
    usage: NotRequired[UsageStats]


# --- rendering (pure: a snapshot in, renderables out) -------------------------


def render_view(
    snapshot: Snapshot,
    url: str,
    *,
    previous: Snapshot | None = None,
    problem: str | None = None,
    max_decisions: int = DECISIONS_ONCE,
) -> RenderableType:
    """Everything: header, endpoints, summaries and the recent decisions."""
    overview = render_overview(snapshot, url, previous=previous, problem=problem)
    return Group(overview, render_decisions(snapshot["decisions"], max_decisions))


def render_overview(
    snapshot: Snapshot, url: str, *, previous: Snapshot | None = None, problem: str | None = None
) -> RenderableType:
    """The view without the decisions table."""
    parts: list[RenderableType] = [render_header(snapshot, url, previous)]
    if problem:
        parts.append(Text(problem, style="bold red"))
    parts.append(render_endpoints(snapshot["endpoints"], snapshot["time"]))
    panels = [
        render_tiers(snapshot),
        render_strategies(snapshot["requests"]),
        render_latency(snapshot),
        render_problems(snapshot),
    ]
    shadow = snapshot.get("shadow")
    if shadow:
        panels.append(render_shadow(shadow))
    parts.append(Columns(panels, padding=(0, 1)))
    usage = snapshot.get("usage")
    if usage and usage["rows"]:
        parts.append(render_usage(usage))
    return Group(*parts)


def request_rate(previous: Snapshot | None, current: Snapshot) -> float | None:
    """Requests per second between two snapshots; None without a usable pair
    (first refresh, or the gateway restarted and its counters went back)."""
    if previous is None:
        return None
    seconds = current["time"] - previous["time"]
    served = current["requests"]["total"] - previous["requests"]["total"]
    if seconds <= 0 or served < 0:
        return None
    return served / seconds


def render_header(snapshot: Snapshot, url: str, previous: Snapshot | None = None) -> Text:
    rate = request_rate(previous, snapshot)
    version = snapshot.get("version")
    workers = snapshot["workers"]
    header = Text()
    header.append("octoroute" + (f" {version}" if version else ""), style="bold cyan")
    header.append(f" · {url}")
    header.append(f" · up {format_duration(snapshot['uptime_seconds'])}")
    header.append(f" · {workers} worker{'s' if workers != 1 else ''} · ")
    total = snapshot["requests"]["total"]
    header.append(f"{total} request{'s' if total != 1 else ''}", style="bold")
    header.append(f" · {'–' if rate is None else f'{rate:.1f}'} req/s")
    header.append(f" · at {time.strftime('%H:%M:%S', time.localtime(snapshot['time']))}", style="dim")
    return header


class ByWidth:
    """`wide` where it fits whole in the width it is given, else `narrow`: rich
    shrinks a table that does not fit by squeezing columns, down to zero width,
    which leaves headers and values unreadable (an 80-column terminal)."""

    def __init__(self, wide: RenderableType, narrow: RenderableType) -> None:
        self.wide = wide
        self.narrow = narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = Measurement.get(console, options.update(max_width=100_000), self.wide).maximum
        fits = natural <= options.max_width
        yield self.wide if fits else self.narrow


def render_endpoints(endpoints: Sequence[EndpointStats], now: float) -> RenderableType:
    return ByWidth(_endpoints_wide(endpoints, now), _endpoints_narrow(endpoints, now))


def _endpoints_narrow(endpoints: Sequence[EndpointStats], now: float) -> RenderableType:
    """About 75 columns: group and model under the endpoint id; load, context windows and
    why an endpoint is out of rotation in a table of their own, last errors in another."""
    table = Table(title="endpoints", title_justify="left", box=None, padding=(0, 1), show_edge=False)
    table.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("health", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("p90", justify="right", no_wrap=True)
    state = Table(
        title="load, context, rotation",
        title_justify="left",
        caption=IN_FLIGHT_LEGEND,
        caption_justify="left",
        box=None,
        padding=(0, 1),
        show_edge=False,
    )
    state.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=26)
    state.add_column("in flight", justify="right", no_wrap=True)
    state.add_column("context", no_wrap=True, overflow="ellipsis", max_width=22)
    state.add_column("out of rotation", overflow="fold", ratio=1, min_width=10)
    errors = Table(title="last errors", title_justify="left", box=None, padding=(0, 1), show_edge=False)
    errors.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=26)
    errors.add_column("last error", overflow="fold", ratio=1)
    for ep in endpoints:
        latency = ep.get("latency_ms")
        who = Text(ep["id"], style="bold")
        who.append(f"\n{ep['group']} · {ep['model']}", style="dim")
        table.add_row(
            who,
            _health(ep),
            str(ep["attempts"]),
            Text(str(ep["errors"]), style="red" if ep["errors"] else ""),
            format_ms(latency["p50"] if latency else None),
            format_ms(latency["p90"] if latency else None),
        )
        if _has_routing_state(ep):
            state.add_row(ep["id"], _in_flight(ep), _context(ep), _rotation(ep, now))
        if ep["last_error"] is not None:
            errors.add_row(ep["id"], _last_error(ep["last_error"], now))
    if not endpoints:
        table.add_row("no endpoints", *[""] * 5)
    parts = [table, state] if state.row_count else [table]
    return Group(*parts, errors) if errors.row_count else Group(*parts)


def _endpoints_wide(endpoints: Sequence[EndpointStats], now: float) -> Table:
    show_state = any(_has_routing_state(ep) for ep in endpoints)
    table = Table(
        title="endpoints",
        title_justify="left",
        caption=IN_FLIGHT_LEGEND if show_state else None,
        caption_justify="left",
        expand=False,
    )
    table.add_column("endpoint", no_wrap=True, style="bold")
    table.add_column("group", no_wrap=True)
    table.add_column("model", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("health", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("p90", justify="right", no_wrap=True)
    if show_state:
        table.add_column("in flight", justify="right", no_wrap=True)
        table.add_column("context", no_wrap=True, max_width=24, overflow="ellipsis")
        table.add_column("out of rotation", no_wrap=True)
    table.add_column("last error", max_width=60, no_wrap=True, overflow="ellipsis")
    for ep in endpoints:
        latency = ep.get("latency_ms")
        state = [_in_flight(ep), _context(ep, "\n"), _rotation(ep, now)] if show_state else []
        table.add_row(
            ep["id"],
            ep["group"],
            ep["model"],
            _health(ep),
            str(ep["attempts"]),
            Text(str(ep["errors"]), style="red" if ep["errors"] else ""),
            format_ms(latency["p50"] if latency else None),
            format_ms(latency["p90"] if latency else None),
            *state,
            _last_error(ep["last_error"], now),
        )
    if not endpoints:
        table.add_row("no endpoints", *[""] * (len(table.columns) - 1))
    return table


IN_FLIGHT_LEGEND = "in flight: this gateway +other gateways (least-busy counts them) / slots"
_ROUTING_STATE = ("in_flight", "inflight_elsewhere", "context", "cooldown_seconds", "credentials_refused")


def _has_routing_state(ep: EndpointStats) -> bool:
    """Whether the gateway sent any of the fields behind the in-flight, context and
    cooldown columns (an older one sends none)."""
    return any(key in ep for key in _ROUTING_STATE)


def _health(ep: EndpointStats) -> Text:
    return Text("healthy", style="green") if ep["healthy"] else Text("unhealthy", style="bold red")


def _in_flight(ep: EndpointStats) -> Text:
    """'1 +2 / 4': this gateway's requests on the endpoint (every worker), other gateways'
    sharing its `[state]` (as they last published), and the slots; red when this gateway's
    fill them (slots bound each process, so the others' requests never make an endpoint
    full). A gateway older than `inflight_replicas` gives only what its answering worker
    sees elsewhere, sibling workers included."""
    here, slots = ep.get("in_flight", 0), ep.get("max_concurrency")
    elsewhere = ep.get("inflight_replicas", ep.get("inflight_elsewhere", 0))
    text = Text(str(here), style="bold red" if slots is not None and here >= slots else "")
    if elsewhere:
        text.append(f" +{elsewhere}", style="cyan")
    if slots is not None:
        text.append(f" / {slots}", style="dim")
    return text


def _context(ep: EndpointStats, sep: str = " ") -> Text:
    """'2048 overflow_error': the window in tokens and who said it (or where it comes from)."""
    context = ep.get("context")
    if not context:
        return Text("–", style="dim")
    window, told_by = context["window"], context.get("told_by")
    said = Text(told_by or context["source"], style="yellow" if told_by == "overflow_error" else "dim")
    if window is None:  # not known: only where it would have come from
        return said
    return Text(str(window) + sep).append_text(said)


def _rotation(ep: EndpointStats, now: float) -> Text:
    """Why the endpoint is out of rotation, if it is: what is left of a cooldown ('28s until
    12:04:31'), refused credentials; then, dim, the times the upstream asked to back off
    (429: rate limited, busy: 503 server busy) since the start."""
    left = ep.get("cooldown_seconds", 0.0)
    until = ep.get("cooldown_until")
    lines: list[Text] = []
    if left > 0:
        line = Text(f"{left:.0f}s" if left >= 1 else f"{left:.1f}s", style="bold yellow")
        if until is not None:
            line.append(f" until {time.strftime('%H:%M:%S', time.localtime(until))}", style="yellow")
        lines.append(line)
    if ep.get("credentials_refused"):
        lines.append(Text("credentials refused", style="bold red"))
    asked = [f"{_PRESSURE_NAMES.get(r, r)}×{n}" for r, n in ep.get("cooldowns", {}).items() if n]
    if asked:
        lines.append(Text(" ".join(asked), style="dim"))
    return Text("\n").join(lines) if lines else Text("–", style="dim")


_PRESSURE_NAMES = {"rate_limited": "429", "busy": "busy"}


def _last_error(error: LastError | None, now: float) -> Text:
    if error is None:
        return Text("–", style="dim")
    text = Text(f"{error['error_type']}: ", style="red")
    text.append(shorten(error["message"] or "", 44), style="")
    if error["time"] is not None:
        text.append(f" ({format_duration(max(now - error['time'], 0))} ago)", style="dim")
    return text


def render_usage(usage: UsageStats) -> RenderableType:
    """Tokens and cost per client key, group and endpoint, with a total row. Numbers are
    shown whole (the same as /metrics.json), never rounded."""
    return ByWidth(_usage_wide(usage), _usage_narrow(usage))


def _usage_title(usage: UsageStats) -> str:
    return f"usage by client (cost in {usage['currency']})"


def _usage_wide(usage: UsageStats) -> Table:
    table = Table(title=_usage_title(usage), title_justify="left", expand=False)
    table.add_column("client", no_wrap=True, style="bold")
    table.add_column("group", no_wrap=True)
    table.add_column("endpoint", no_wrap=True)
    for name in ("requests", "no usage", "tokens in", "tokens out", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in usage["rows"]:
        table.add_row(row["client"], row["group"], row["endpoint"], *_usage_numbers(row))
    total = usage["total"]
    table.add_row(Text("total", style="bold"), "", "", *_usage_numbers(total), style="bold")
    return table


def _usage_narrow(usage: UsageStats) -> Table:
    """About 78 columns: the group under the endpoint; names give way (cut with an
    ellipsis) so that numbers and costs are always shown whole."""
    table = Table(
        title=_usage_title(usage),
        title_justify="left",
        box=None,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("client", no_wrap=True, overflow="ellipsis", min_width=6, max_width=14, style="bold")
    table.add_column("endpoint", no_wrap=True, overflow="ellipsis", min_width=8, max_width=18)
    lines = [*usage["rows"], usage["total"]]
    for i, name in enumerate(("req", "no use", "in", "out", "cost")):
        widest = max(len(str(_usage_numbers(line)[i])) for line in lines)
        table.add_column(name, justify="right", no_wrap=True, min_width=max(widest, len(name)))
    for row in usage["rows"]:
        where = Text(row["endpoint"])
        where.append(f"\n{row['group']}", style="dim")
        table.add_row(row["client"], where, *_usage_numbers(row))
    table.add_row(Text("total", style="bold"), "", *_usage_numbers(usage["total"]), style="bold")
    return table


def _usage_numbers(row: UsageRow | UsageTotal) -> list[RenderableType]:
    missing = row["unreported"]
    return [
        str(row["requests"]),
        Text(str(missing), style="yellow" if missing else "dim"),
        str(row["input_tokens"]),
        str(row["output_tokens"]),
        Text("–", style="dim") if row["cost"] is None else row["cost"],
    ]


def render_tiers(snapshot: Snapshot) -> Table:
    """Requests per tier (group), every configured group listed even at zero, in
    config order so rows stay put between refreshes."""
    by_tier = snapshot["requests"]["by_tier"]
    counts = {ep["group"]: by_tier.get(ep["group"], 0) for ep in snapshot["endpoints"]}
    counts |= {tier: n for tier, n in sorted(by_tier.items()) if tier not in counts}
    total = sum(counts.values())
    table = Table(title="tier mix", title_justify="left", box=None, padding=(0, 1))
    table.add_column("tier", style="bold")
    table.add_column("n", justify="right")
    table.add_column("%", justify="right")
    table.add_column("")
    for tier, count in counts.items():
        share = count / total if total else 0.0
        table.add_row(tier, str(count), f"{share:.0%}", Text("█" * round(share * BAR_WIDTH), style="cyan"))
    return table


def render_strategies(requests: RequestCounts) -> Table:
    table = Table(title="routing", title_justify="left", box=None, padding=(0, 1))
    table.add_column("")
    table.add_column("n", justify="right")
    by_strategy = requests["by_strategy"]
    for strategy in sorted(by_strategy, key=lambda k: (_STRATEGY_ORDER.get(k, len(_STRATEGY_ORDER)), k)):
        table.add_row(strategy, str(by_strategy[strategy]))
    for status, count in sorted(requests.get("by_status", {}).items()):
        table.add_row(Text(status, style=_status_style(status)), str(count))
    return table


def render_latency(snapshot: Snapshot) -> Table:
    table = Table(title="latency (recent)", title_justify="left", box=None, padding=(0, 1))
    for name in ("", "p50", "p90", "p99", "n"):
        table.add_column(name, justify="right" if name else "left")
    rows: list[tuple[str, Percentiles | None]] = [("total", snapshot["latency_ms"]), ("TTFT", snapshot.get("ttft_ms"))]
    for name, pct in rows:
        if pct is None:
            table.add_row(name, "–", "–", "–", "0")
        else:
            table.add_row(name, format_ms(pct["p50"]), format_ms(pct["p90"]), format_ms(pct["p99"]), str(pct["count"]))
    return table


def render_problems(snapshot: Snapshot) -> Table:
    """Retries, fallbacks, upstream errors, mid-stream failures, degradations, and the
    requests the gateway refused itself (rate limit, auth, slots, context, fleet)."""
    table = Table(title="retries / errors", title_justify="left", box=None, padding=(0, 1))
    table.add_column("")
    table.add_column("n", justify="right")
    fallbacks = snapshot.get("fallbacks", [])
    errors = snapshot.get("upstream_errors", [])
    table.add_row("retries", str(snapshot.get("retries", 0)))
    table.add_row("fallbacks", str(sum(f["count"] for f in fallbacks)))
    for fb in sorted(fallbacks, key=lambda f: -f["count"])[:4]:
        table.add_row(Text(f"  {fb['from_group']} → {fb['to_group']}", style="yellow"), str(fb["count"]))
    table.add_row("upstream errors", str(sum(e["count"] for e in errors)))
    for err in sorted(errors, key=lambda e: -e["count"])[:5]:
        table.add_row(Text(f"  {err['endpoint']} {err['error_type']}", style="red"), str(err["count"]))
    table.add_row("mid-stream failures", str(snapshot.get("mid_stream_failures", 0)))
    for kind, count in snapshot.get("degradations", {}).items():
        if count:
            table.add_row(f"degraded: {kind}", str(count))
    limiter = snapshot.get("rate_limiter")
    if limiter and limiter["enabled"]:
        table.add_row("rate-limit buckets", str(limiter["buckets"]))
    refusals = snapshot.get("refusals")
    if refusals is not None:
        _refusal_rows(table, refusals)
    return table


REFUSAL_NAMES = {
    "rate_limit_requests": "rate limit: requests",
    "rate_limit_tokens": "rate limit: tokens",
    "rate_limit_too_large": "rate limit: too large",
    "auth_unauthenticated": "auth: no valid key",
    "auth_forbidden": "auth: model forbidden",
    "auth_budget": "auth: budget spent",
    "queue_full": "slots: line full",
    "queue_timeout": "slots: waited too long",
    "context_rejected": "context: too large",
    "cooling_down": "fleet: all cooling down",
    "no_healthy": "fleet: none healthy",
}


def _refusal_rows(table: Table, refusals: Refusals) -> None:
    """Requests the gateway refused itself: the total, then each reason that happened."""
    total = refusals["total"]
    table.add_row("refused", Text(str(total), style="bold yellow" if total else ""))
    for reason, count in refusals["by_reason"].items():
        if count:
            table.add_row(Text(f"  {REFUSAL_NAMES.get(reason, reason)}", style="yellow"), str(count))


def render_shadow(shadow: ShadowStats) -> Table:
    """Shadow mode: agreement with the live strategy and both tier mixes, side by side."""
    live = shadow.get("live_strategy") or "live"
    candidate = shadow["strategy"]
    title = f"shadow: {_with_model(candidate, shadow.get('model'))} vs {_with_model(live, shadow.get('live_model'))}"
    if candidate == live:  # two models of one strategy: name the columns by role
        live, candidate = "live", "shadow"
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    table.add_column("tier", style="bold")
    table.add_column(shorten(live, 8), justify="right")
    table.add_column(shorten(candidate, 8), justify="right")
    agreement = shadow["agreement"]
    share = "–" if agreement is None else f"{agreement:.0%}"
    table.add_row(
        Text("agree", style="cyan"), Text(share, style="bold cyan"), f"{shadow['agreed']}/{shadow['decisions']}"
    )
    by_live, by_shadow = shadow["live_by_tier"], shadow["shadow_by_tier"]
    total = shadow["decisions"]
    for tier in [*by_live, *(t for t in by_shadow if t not in by_live)]:
        table.add_row(tier, _share(by_live.get(tier, 0), total), _share(by_shadow.get(tier, 0), total))
    pending, dropped = shadow.get("pending", 0), shadow.get("dropped", 0)
    if shadow.get("allow_judge") or pending or dropped:
        table.add_row("pending", "", str(pending))
        table.add_row("dropped", "", Text(str(dropped), style="yellow" if dropped else ""))
    return table


def _with_model(strategy: str, model: str | None) -> str:
    """'learned (trained-3f2a9c1e)': a strategy and the learned model it scores with."""
    return f"{strategy} ({model})" if model else strategy


def _share(count: int, total: int) -> str:
    """'3 38%': a count and its share of `total`."""
    return f"{count} {count / total:.0%}" if total else str(count)


def render_decisions(decisions: Sequence[Decision], limit: int) -> RenderableType:
    """The newest `limit` decisions, newest first."""
    return ByWidth(_decisions_wide(decisions, limit), _decisions_narrow(decisions, limit))


def _decisions_narrow(decisions: Sequence[Decision], limit: int) -> Table:
    """About 75 columns: request id and model dropped, strategy and reason in one wrapping column."""
    newest = sorted(decisions, key=lambda d: d["time"], reverse=True)[: max(limit, 0)]
    table = Table(
        title=f"recent decisions ({len(newest)} of {len(decisions)})",
        title_justify="left",
        box=None,
        padding=(0, 1),
        show_edge=False,
    )
    table.add_column("time", no_wrap=True, style="dim")
    table.add_column("tier", no_wrap=True, style="bold")
    table.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=22)
    table.add_column("status", justify="right", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("strategy: reason", overflow="fold", ratio=1, min_width=16)
    for d in newest:
        reason = d["reason"] or "–"
        if d.get("fallback_from"):
            reason += f", fell back from {d.get('fallback_from')}"
        status = d["status"]
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(d["time"])),
            d.get("group") or d["tier"] or "–",
            d["endpoint"] or Text("none", style="red"),
            Text("–" if status is None else str(status), style=_status_style(status)),
            format_ms(d["latency_ms"]),
            f"{d['strategy'] or '–'}: {reason}",
        )
    if not decisions:
        table.add_row("", "", "", "", "", "no requests yet")
    return table


def _decisions_wide(decisions: Sequence[Decision], limit: int) -> Table:
    newest = sorted(decisions, key=lambda d: d["time"], reverse=True)[: max(limit, 0)]
    table = Table(title=f"recent decisions ({len(newest)} of {len(decisions)})", title_justify="left")
    table.add_column("time", no_wrap=True, style="dim")
    table.add_column("request", no_wrap=True)
    table.add_column("model", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("tier", no_wrap=True, style="bold")
    table.add_column("endpoint", no_wrap=True)
    table.add_column("strategy", no_wrap=True)
    table.add_column("reason", no_wrap=True, max_width=60, overflow="ellipsis")
    table.add_column("status", justify="right", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    for d in newest:
        reason = d["reason"] or "–"
        if d.get("fallback_from"):
            reason += f", fell back from {d.get('fallback_from')}"
        status = d["status"]
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(d["time"])),
            short_id(d["request_id"]),
            d["model"] or "–",
            d.get("group") or d["tier"] or "–",
            d["endpoint"] or Text("none", style="red"),
            d["strategy"] or "–",
            reason,
            Text("–" if status is None else str(status), style=_status_style(status)),
            format_ms(d["latency_ms"]),
        )
    if not decisions:
        table.add_row("", "no requests yet", *[""] * 7)
    return table


# --- formatting ------------------------------------------------------------------


def _status_style(status: int | str | None) -> str:
    first = str(status)[:1] if status is not None else ""
    return {"2": "green", "3": "cyan", "4": "yellow", "5": "bold red"}.get(first, "dim")


def format_ms(value: float | None) -> str:
    """'12.3 ms', '1.24 s', or '–' for no value."""
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms"


def format_duration(seconds: float) -> str:
    """'42s', '3m 05s', '2h 03m', '4d 01h'."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def short_id(request_id: str) -> str:
    """Ids up to 16 characters whole; longer ones as head…tail."""
    return request_id if len(request_id) <= 16 else f"{request_id[:7]}…{request_id[-6:]}"


def shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

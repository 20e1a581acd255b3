"""`octoroute stats`: a live terminal view of a running gateway, from `GET /metrics.json`.

Two halves. The pure half turns one snapshot (the dict documented in
docs/metrics-json.md) into rich renderables: `render_view(snapshot, url)`.
The I/O half fetches snapshots (`fetch_snapshot`) and drives the refresh loop
(`run_stats`). Every way the fetch can fail becomes a `StatsError` whose text
is one line a person can act on.

    snapshot = fetch_snapshot("http://127.0.0.1:3000/metrics.json", token=None)
    Console().print(render_view(snapshot, "http://127.0.0.1:3000/metrics.json"))
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import NotRequired
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import TypeAdapter, ValidationError
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, before Python 3.12

from octoroute.core.types import Strategy

DEFAULT_URL = "http://127.0.0.1:3000"
TOKEN_ENV = "OCTOROUTE_METRICS_TOKEN"
FETCH_TIMEOUT = 2.0
MAX_BODY = 16 * 1024 * 1024
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


class EndpointStats(TypedDict):
    id: str
    group: str
    model: str
    healthy: bool
    attempts: int
    errors: int
    last_error: LastError | None
    latency_ms: NotRequired[Percentiles]


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


_SNAPSHOT = TypeAdapter(Snapshot)


class StatsError(Exception):
    """A snapshot could not be had; the message is one line for the user."""


# --- fetching ----------------------------------------------------------------


def snapshot_url(url: str) -> str:
    """The /metrics.json URL for what the user typed: a base URL, the SDK base URL
    (…/v1) or the full URL.

    >>> snapshot_url("localhost:3000")
    'http://localhost:3000/metrics.json'
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid:
        raise StatsError(f"--url must be an http(s) URL such as {DEFAULT_URL}, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/metrics.json"):
        path = path.removesuffix("/v1") + "/metrics.json"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch_snapshot(url: str, token: str | None, timeout: float = FETCH_TIMEOUT) -> Snapshot:
    """GET `url` (a /metrics.json URL) and parse it; any failure is a `StatsError`."""
    headers = {"Accept": "application/json", "User-Agent": "octoroute-stats"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            body: bytes = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise StatsError(_http_problem(url, exc, token)) from exc
    except urllib.error.URLError as exc:
        raise StatsError(_unreachable(url, exc.reason, timeout)) from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts and resets while reading
        raise StatsError(_unreachable(url, exc, timeout)) from exc
    if len(body) > MAX_BODY:
        raise StatsError(f"{url} did not answer with an octoroute snapshot (the body is over {MAX_BODY} bytes)")
    return parse_snapshot(url, body)


def parse_snapshot(url: str, body: bytes) -> Snapshot:
    """The snapshot in `body`, checked against the documented shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise StatsError(f"{url} did not answer with an octoroute snapshot (the body is not JSON)") from exc
    try:
        return _SNAPSHOT.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise StatsError(
            f"{url} did not answer with an octoroute snapshot ({where}: {first['msg'].lower()}); "
            "is this an octoroute gateway?"
        ) from exc


def _opener(url: str) -> urllib.request.OpenerDirector:
    # A proxy cannot reach this machine's loopback, and a global http_proxy
    # without no_proxy is common: never send loopback traffic through one.
    if _is_loopback(urlsplit(url).hostname or ""):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unreachable(url: str, reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(reason, socket.gaierror):
        why = f"cannot resolve the host {urlsplit(url).hostname!r}"
    elif isinstance(reason, TimeoutError):
        why = f"no answer within {timeout:g}s"
    elif isinstance(reason, ConnectionResetError):  # http.client.RemoteDisconnected is one
        why = "the connection was closed without an answer"
    elif isinstance(reason, OSError) and reason.strerror:
        why = reason.strerror.lower()
    else:
        why = str(reason) or type(reason).__name__
    return f"cannot reach the gateway at {url}: {why} — is `octoroute serve` running? (try --url)"


def _http_problem(url: str, exc: urllib.error.HTTPError, token: str | None) -> str:
    status = f"HTTP {exc.code}"
    if exc.code in (401, 403):
        if token:
            return f"the gateway at {url} refused the metrics token ({status}): check --token or ${TOKEN_ENV}"
        return f"the gateway at {url} wants a metrics token ({status}): pass --token or set ${TOKEN_ENV}"
    if exc.code == 404:
        return f"{url} did not answer with an octoroute snapshot ({status} not found); is this an octoroute gateway?"
    detail = _error_message(exc)
    return f"the gateway at {url} answered {status}" + (f": {detail}" if detail else "")


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style error body, if the answer has one."""
    try:
        body = orjson.loads(exc.read(64 * 1024))
        return str(body["error"]["message"])
    except (OSError, http.client.HTTPException, orjson.JSONDecodeError, KeyError, TypeError):
        return ""


# --- the loop ------------------------------------------------------------------


def run_stats(url: str | None, token: str | None, interval: float, once: bool, env: Mapping[str, str]) -> int:
    """`octoroute stats`: 0 after --once or Ctrl-C, 1 when the first fetch fails."""
    if interval < 0.1:
        print(f"octoroute stats: --interval must be at least 0.1 seconds, got {interval:g}", file=sys.stderr)
        return 2
    token = token or env.get(TOKEN_ENV) or None
    try:
        target = snapshot_url(url or DEFAULT_URL)
        snapshot = fetch_snapshot(target, token)
        console = Console()
        if once:
            console.print(render_view(snapshot, target))
            return 0
        _watch(console, target, token, interval, snapshot)
    except StatsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _watch(console: Console, url: str, token: str | None, interval: float, snapshot: Snapshot) -> None:
    """Refresh until Ctrl-C; a failed fetch shows in the view and the loop keeps trying."""
    previous: Snapshot | None = None
    problem: str | None = None
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(_fitted_view(console, snapshot, url, previous, problem), refresh=True)
            time.sleep(interval)
            try:
                fresh = fetch_snapshot(url, token)
            except StatsError as exc:
                problem = f"{time.strftime('%H:%M:%S')} {exc}; retrying every {interval:g}s"
                continue
            previous, snapshot, problem = snapshot, fresh, None


def _fitted_view(
    console: Console, snapshot: Snapshot, url: str, previous: Snapshot | None, problem: str | None
) -> RenderableType:
    """The view with as many decisions as fit under the rest on this terminal."""
    top = render_overview(snapshot, url, previous=previous, problem=problem)
    used = len(console.render_lines(top, console.options, pad=False))
    room = console.height - used - 6  # the decisions table's title, header, rules and a spare line
    return Group(top, render_decisions(snapshot["decisions"], max(room, 3)))


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
    parts.append(
        Columns(
            [
                render_tiers(snapshot),
                render_strategies(snapshot["requests"]),
                render_latency(snapshot),
                render_problems(snapshot),
            ],
            padding=(0, 1),
        )
    )
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


def render_endpoints(endpoints: Sequence[EndpointStats], now: float) -> Table:
    table = Table(title="endpoints", title_justify="left", expand=False)
    table.add_column("endpoint", no_wrap=True, style="bold")
    table.add_column("group", no_wrap=True)
    table.add_column("model", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("health", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("p90", justify="right", no_wrap=True)
    table.add_column("last error", max_width=60, no_wrap=True, overflow="ellipsis")
    for ep in endpoints:
        latency = ep.get("latency_ms")
        table.add_row(
            ep["id"],
            ep["group"],
            ep["model"],
            Text("healthy", style="green") if ep["healthy"] else Text("unhealthy", style="bold red"),
            str(ep["attempts"]),
            Text(str(ep["errors"]), style="red" if ep["errors"] else ""),
            format_ms(latency["p50"] if latency else None),
            format_ms(latency["p90"] if latency else None),
            _last_error(ep["last_error"], now),
        )
    if not endpoints:
        table.add_row("no endpoints", *[""] * 8)
    return table


def _last_error(error: LastError | None, now: float) -> Text:
    if error is None:
        return Text("–", style="dim")
    text = Text(f"{error['error_type']}: ", style="red")
    text.append(shorten(error["message"] or "", 44), style="")
    if error["time"] is not None:
        text.append(f" ({format_duration(max(now - error['time'], 0))} ago)", style="dim")
    return text


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
    """Retries, fallbacks, upstream errors, mid-stream failures, degradations."""
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
    return table


def render_decisions(decisions: Sequence[Decision], limit: int) -> Table:
    """The newest `limit` decisions, newest first."""
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

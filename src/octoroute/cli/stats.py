"""`octoroute stats`: a live terminal view of a running gateway, from `GET /metrics.json`.

This module fetches snapshots (`fetch_snapshot`) and drives the refresh loop
(`run_stats`); `stats_view` turns one snapshot into rich renderables. Every
way the fetch can fail becomes a `StatsError` whose text is one line a person
can act on.

    snapshot = fetch_snapshot("http://127.0.0.1:3000/metrics.json", token=None)
    Console().print(render_view(snapshot, "http://127.0.0.1:3000/metrics.json"))
"""

from __future__ import annotations

import http.client
import ipaddress
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import TypeAdapter, ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live

from octoroute.cli.stats_view import (
    Snapshot,
    render_decisions,
    render_overview,
    render_view,
)

DEFAULT_URL = "http://127.0.0.1:3000"
TOKEN_ENV = "OCTOROUTE_METRICS_TOKEN"
FETCH_TIMEOUT = 2.0
MAX_BODY = 16 * 1024 * 1024


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
    """Refresh until Ctrl-C; a failed fetch shows in the view and the loop keeps trying.
    Ctrl-C is how the view ends, so it is made to work even when the process was started
    with SIGINT ignored (as a shell does for `&` jobs), where Python would not raise
    `KeyboardInterrupt` and the view could only be killed."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
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

"""`octoroute stats`: the renderer on a sample snapshot, and the real command
against a real gateway (fixture upstreams, official SDK traffic)."""

from __future__ import annotations

import copy
import http.server
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console
from tests.support import endpoint, fleet_config

from octoroute.cli.stats import StatsError, parse_snapshot, snapshot_url
from octoroute.cli.stats_view import render_view, request_rate, short_id
from octoroute.demo.simulated import Mode

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
URL = "http://127.0.0.1:3000/metrics.json"

SAMPLE: dict[str, Any] = {
    "version": "0.1.0",
    "time": 1763786033.123,
    "started_at": 1763785000.0,
    "uptime_seconds": 3723.0,
    "workers": 2,
    "requests": {
        "total": 120,
        "by_tier": {"fast": 80, "balanced": 30, "deep": 10},
        "by_strategy": {"rule": 100, "direct": 20},
        "by_status": {"2xx": 110, "4xx": 5, "5xx": 5},
    },
    "latency_ms": {"p50": 12.1, "p90": 40.2, "p99": 1234.0, "count": 120},
    "ttft_ms": {"p50": 5.0, "p90": 9.0, "p99": 12.0, "count": 30},
    "endpoints": [
        {
            "id": "fast/qwen",
            "group": "fast",
            "model": "qwen2.5:3b",
            "kind": "openai",
            "base_url": "http://127.0.0.1:11434/v1",
            "healthy": True,
            "attempts": 50,
            "outcomes": {"ok": 48, "timeout": 2},
            "errors": 2,
            "mid_stream_failures": 0,
            "last_error": {"time": 1763786000.5, "error_type": "timeout", "message": "no first byte within 5s"},
            "latency_ms": {"p50": 11.0, "p90": 30.0, "p99": 31.0, "count": 48},
            "tokens": {"input": 1000, "output": 2000},
        },
        {
            "id": "balanced/llama",
            "group": "balanced",
            "model": "llama3.1:8b",
            "kind": "openai",
            "base_url": "http://127.0.0.1:11435/v1",
            "healthy": False,
            "attempts": 9,
            "outcomes": {"ok": 4, "http_5xx": 5},
            "errors": 5,
            "mid_stream_failures": 0,
            "last_error": {"time": 1763786030.0, "error_type": "http_5xx", "message": "upstream said 503"},
            "latency_ms": {"p50": None, "p90": None, "p99": None, "count": 0},
            "tokens": {"input": 0, "output": 0},
        },
    ],
    "retries": 3,
    "fallbacks": [{"from_group": "balanced", "to_group": "deep", "count": 2}],
    "upstream_errors": [{"endpoint": "balanced/llama", "error_type": "http_5xx", "count": 5}],
    "mid_stream_failures": 1,
    "degradations": {"thinking": 0, "images": 4},
    "rate_limiter": {"enabled": False, "buckets": 0},
    "decisions": [
        {
            "time": 1763786033.0 - i,
            "request_id": f"req-{i:03d}",
            "route": "/v1/chat/completions",
            "model": "auto",
            "tier": "fast",
            "endpoint": "fast/qwen",
            "strategy": "rule",
            "reason": "rule_casual_short",
            "status": 200,
            "latency_ms": 41.7,
            "ttft_ms": None,
            "attempts": 1,
            "fallback_from": None,
            "input_tokens": 12,
            "output_tokens": 30,
        }
        for i in range(20)
    ],
}


def rendered(snapshot: dict[str, Any], **kw: Any) -> str:
    console = Console(record=True, width=160)
    console.print(render_view(parse_snapshot(URL, _dumps(snapshot)), URL, **kw))
    return plain(console.export_text())


def plain(text: str) -> str:
    """Output with the table borders between cells blanked, so a row reads as words."""
    return re.sub(r"[│┃]", " ", ANSI.sub("", text))


def rows_of(out: str, first_cell: str) -> list[str]:
    """Every table row whose first cell is `first_cell`, with its continuation lines (cells
    of two or more lines) joined to it: one string of words per row."""
    lines = out.splitlines()
    rows = []
    for i, line in enumerate(lines):
        cells = line.split()
        if not cells or cells[0] != first_cell:
            continue
        indent = len(line) - len(line.lstrip())
        row = cells
        for more in lines[i + 1 :]:
            if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                break
            row = [*row, *more.split()]
        rows.append(" ".join(row))
    return rows


def has_row(out: str, first_cell: str, pattern: str) -> bool:
    return any(re.fullmatch(pattern, row) for row in rows_of(out, first_cell))


def _dumps(data: object) -> bytes:
    import orjson

    return orjson.dumps(data)


# -- rendering ------------------------------------------------------------------


def test_view_shows_endpoints_health_tiers_and_summaries():
    text = rendered(SAMPLE)
    for expected in ("fast/qwen", "balanced/llama", "qwen2.5:3b", "llama3.1:8b"):
        assert expected in text
    assert re.search(r"fast/qwen\s.*\shealthy\s", text)
    assert re.search(r"balanced/llama\s.*\sunhealthy\s", text)
    assert "timeout: no first byte within 5s (32s ago)" in text
    assert re.search(r"fast\s+80\s+67%\s+█+", text)
    assert re.search(r"balanced\s+30\s+25%", text)
    assert re.search(r"deep\s+10\s+8%", text)
    assert re.search(r"rule\s+100", text)
    assert re.search(r"5xx\s+5", text)
    assert re.search(r"total\s+12\.1 ms\s+40\.2 ms\s+1\.23 s\s+120", text)
    assert re.search(r"TTFT\s+5\.0 ms\s+9\.0 ms\s+12\.0 ms\s+30", text)
    assert re.search(r"retries\s+3", text)
    assert re.search(r"balanced → deep\s+2", text)
    assert re.search(r"balanced/llama http_5xx\s+5", text)
    assert re.search(r"degraded: images\s+4", text)
    assert "degraded: thinking" not in text
    assert "up 1h 02m" in text
    assert "2 workers" in text
    assert "120 requests" in text


def test_decisions_are_newest_first_and_capped():
    text = rendered(SAMPLE, max_decisions=15)
    shown = re.findall(r"req-\d{3}", text)
    assert shown == [f"req-{i:03d}" for i in range(15)]
    assert "recent decisions (15 of 20)" in text
    assert re.search(r"req-000\s+auto\s+fast\s+fast/qwen\s+rule\s+rule_casual_short\s+200\s+41\.7 ms", text)


def test_decisions_in_any_order_are_shown_newest_first():
    sample = copy.deepcopy(SAMPLE)
    sample["decisions"].reverse()
    assert re.findall(r"req-\d{3}", rendered(sample, max_decisions=3)) == ["req-000", "req-001", "req-002"]


def test_failed_and_fallback_decisions_say_so():
    sample = copy.deepcopy(SAMPLE)
    long_id = "a1b2c3d4e5f6000000000abc"
    sample["decisions"][0].update(request_id=long_id, endpoint=None, status=502, tier="balanced")
    sample["decisions"][1].update(fallback_from="balanced", tier="deep", endpoint="deep/big")
    text = rendered(sample)
    assert re.search(r"a1b2c3d…000abc\s+auto\s+balanced\s+none\s+rule\s+rule_casual_short\s+502", text)
    assert "rule_casual_short, fell back from balanced" in text
    assert short_id(long_id) == "a1b2c3d…000abc"
    assert short_id("req-001") == "req-001"


def test_a_request_that_failed_before_routing_renders():
    sample = copy.deepcopy(SAMPLE)
    sample["decisions"][0].update(model="", tier=None, strategy=None, reason=None, endpoint=None, status=400)
    sample["endpoints"][0]["last_error"] = {"time": None, "error_type": "connect", "message": None}
    text = rendered(sample)
    assert re.search(r"req-000\s+–\s+–\s+none\s+–\s+–\s+400\s", text)
    assert re.search(r"fast/qwen\s.*\sconnect:\s", text)


def test_a_fresh_gateway_renders_without_data():
    sample = copy.deepcopy(SAMPLE)
    sample["requests"] = {"total": 0, "by_tier": {}, "by_strategy": {}, "by_status": {}}
    sample["latency_ms"] = sample["ttft_ms"] = {"p50": None, "p90": None, "p99": None, "count": 0}
    sample["decisions"] = []
    text = rendered(sample)
    assert "no requests yet" in text
    assert re.search(r"fast\s+0\s+0%", text)  # every configured group is listed, even at zero
    assert re.search(r"total\s+–\s+–\s+–\s+0", text)


def test_an_older_gateway_without_the_optional_fields_still_renders():
    sample = {k: v for k, v in SAMPLE.items() if k in ("time", "uptime_seconds", "workers", "requests")}
    sample |= {"latency_ms": SAMPLE["latency_ms"], "endpoints": [], "decisions": []}
    text = rendered(sample)
    assert "no endpoints" in text
    assert re.search(r"retries\s+0", text)


def test_request_rate_between_refreshes():
    first = parse_snapshot(URL, _dumps(SAMPLE))
    later = copy.deepcopy(first)
    later["time"] += 2
    later["requests"]["total"] += 7
    assert request_rate(None, first) is None
    assert request_rate(first, later) == pytest.approx(3.5)
    restarted = copy.deepcopy(later)
    restarted["requests"]["total"] = 1
    assert request_rate(later, restarted) is None  # counters went back: a restart, not a negative rate
    header = rendered(dict(later), previous=first)
    assert "3.5 req/s" in header
    assert "– req/s" in rendered(SAMPLE)


def test_a_fetch_problem_shows_in_the_view():
    text = rendered(SAMPLE, problem="12:00:00 cannot reach the gateway; retrying every 2s")
    assert "cannot reach the gateway; retrying every 2s" in text
    assert "fast/qwen" in text  # the last good data stays


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000/metrics.json"),
        ("http://127.0.0.1:3000/", "http://127.0.0.1:3000/metrics.json"),
        ("localhost:3000", "http://localhost:3000/metrics.json"),
        ("http://gw:3000/metrics.json", "http://gw:3000/metrics.json"),
        ("http://gw:3000/v1", "http://gw:3000/metrics.json"),
        ("https://example.com/octo/", "https://example.com/octo/metrics.json"),
    ],
)
def test_snapshot_url_accepts_what_people_type(typed, url):
    assert snapshot_url(typed) == url


@pytest.mark.parametrize("typed", ["ftp://gw/", "http://", "http://gw:notaport/"])
def test_snapshot_url_rejects_non_http(typed):
    with pytest.raises(StatsError, match="--url must be an http"):
        snapshot_url(typed)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<html>hello</html>", "the body is not JSON"),
        (b'{"ok": true}', "time: field required"),
        (b"[]", "the body: input should be a valid dictionary"),
    ],
)
def test_parse_rejects_what_is_not_a_snapshot(body, detail):
    with pytest.raises(StatsError) as info:
        parse_snapshot(URL, body)
    assert str(info.value).startswith(f"{URL} did not answer with an octoroute snapshot")
    assert detail in str(info.value)


# -- the real command against a real gateway ---------------------------------------


def octoroute_stats(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OCTOROUTE_METRICS_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "octoroute", "stats", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fleet(upstreams, **sections: Any) -> dict[str, Any]:
    fast, balanced, deep = upstreams("fast"), upstreams("balanced"), upstreams("deep")
    return fleet_config(
        {
            "fast": [endpoint(fast, "small-model", id="fast-1")],
            "balanced": [endpoint(balanced, "mid-model", id="bal-1")],
            "deep": [endpoint(deep, "big-model", id="deep-1")],
        },
        **sections,
    )


def _ask(client, request_id: str, model: str, content: str) -> None:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], extra_headers={"X-Request-Id": request_id}
    )


def test_stats_once_shows_a_live_gateway(upstreams, gateway, sdk_clients):
    gw = gateway(_fleet(upstreams))
    client = sdk_clients.openai(gw)
    _ask(client, "stats-e2e-1", "auto", "hi there")
    _ask(client, "stats-e2e-2", "deep", "hello")
    _ask(client, "stats-e2e-3", "balanced", "hello")

    result = octoroute_stats("--url", gw.url, "--once")
    assert result.returncode == 0, result.stderr
    out = plain(result.stdout)
    for ep in ("fast-1", "bal-1", "deep-1"):
        assert re.search(rf"{ep}\s.*\shealthy\s", out), out
    for rid in ("stats-e2e-1", "stats-e2e-2", "stats-e2e-3"):
        assert rid in out
    assert re.search(r"stats-e2e-2\s+deep\s+deep\s+deep-1\s+direct\s+\S+\s+200", out), out
    assert re.search(r"stats-e2e-1\s+auto\s+fast\s+fast-1\s+rule\s", out), out
    for tier in ("fast", "balanced", "deep"):
        assert re.search(rf"{tier}\s+1\s+33%", out), out
    assert "3 requests" in out
    assert f"{gw.url}/metrics.json" in out
    assert result.stderr == ""


def test_stats_shows_an_unhealthy_endpoint_and_its_error(upstreams, gateway, sdk_clients):
    good, bad = upstreams("good"), upstreams("bad")
    bad.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config(
            {"fast": [endpoint(bad, "m", id="fast-bad", priority=2), endpoint(good, "m", id="fast-good", priority=1)]},
            health={"failure_threshold": 1},
        )
    )
    _ask(sdk_clients.openai(gw), "stats-fail-1", "fast", "hi")
    out = plain(octoroute_stats("--url", f"{gw.url}/metrics.json", "--once").stdout)
    assert re.search(r"fast-bad\s.*\sunhealthy\s+1\s+1\s.*http_5xx", out), out
    assert re.search(r"fast-good\s.*\shealthy\s+1\s+0\s", out), out
    assert re.search(r"stats-fail-1\s+fast\s+fast\s+fast-good\s", out), out


def test_unreachable_gateway_is_one_clear_line():
    url = f"http://127.0.0.1:{closed_port()}"
    result = octoroute_stats("--url", url, "--once")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"cannot reach the gateway at {url}/metrics.json: connection refused"
        " — is `octoroute serve` running? (try --url)\n"
    )


def test_unresolvable_host_is_a_clear_line():
    result = octoroute_stats("--url", "http://no-such-host.invalid:3000", "--once")
    assert result.returncode == 1
    assert "cannot reach the gateway at http://no-such-host.invalid:3000/metrics.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_token_is_required_and_sent(upstreams, gateway, sdk_clients):
    gw = gateway(_fleet(upstreams, observability={"metrics_token": "secret-token-123"}))
    _ask(sdk_clients.openai(gw), "stats-tok-1", "fast", "hi")

    missing = octoroute_stats("--url", gw.url, "--once")
    assert missing.returncode == 1
    assert "wants a metrics token (HTTP 401): pass --token or set $OCTOROUTE_METRICS_TOKEN" in missing.stderr
    assert "Traceback" not in missing.stderr

    wrong = octoroute_stats("--url", gw.url, "--once", "--token", "not-the-token")
    assert wrong.returncode == 1
    assert "refused the metrics token (HTTP 401)" in wrong.stderr

    flag = octoroute_stats("--url", gw.url, "--once", "--token", "secret-token-123")
    assert flag.returncode == 0, flag.stderr
    assert "stats-tok-1" in flag.stdout

    from_env = octoroute_stats("--url", gw.url, "--once", env={"OCTOROUTE_METRICS_TOKEN": "secret-token-123"})
    assert from_env.returncode == 0, from_env.stderr
    assert "stats-tok-1" in from_env.stdout


class _Canned(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Any]:
    """`canned(status, body)`: a plain HTTP server that answers every GET with that; its URL."""
    servers: list[http.server.HTTPServer] = []

    def make(status: int, body: bytes) -> str:
        handler = type("Handler", (_Canned,), {"status": status, "body": body})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>not a gateway</html>", "did not answer with an octoroute snapshot (the body is not JSON)"),
        (200, b'{"status": "ok"}', "did not answer with an octoroute snapshot (time: field required)"),
        (404, b"nope", "did not answer with an octoroute snapshot (HTTP 404 not found)"),
        (500, b'{"error": {"message": "boom"}}', "answered HTTP 500: boom"),
    ],
)
def test_something_else_at_the_url_is_a_clear_line(canned, status, body, message):
    url = canned(status, body)
    result = octoroute_stats("--url", url, "--once")
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


# `octoroute stats` started with SIGINT ignored, as a shell starts an `&` job (or CI its
# steps): Python then raises no KeyboardInterrupt unless the program asks for it.
SIGINT_IGNORED = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "sys.argv = ['octoroute', *sys.argv[1:]]; runpy.run_module('octoroute', run_name='__main__')"
)


class LiveStats:
    """`octoroute stats` in live mode, output read as it comes (rich is told the
    pipe is a terminal so it redraws instead of printing once at exit). It starts
    with SIGINT ignored: Ctrl-C must end the view all the same."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_IGNORED, "stats", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={
                **os.environ,
                "COLUMNS": "200",
                "LINES": "60",
                "TERM": "xterm",
                "TTY_COMPATIBLE": "1",
                "FORCE_COLOR": "1",
            },
        )
        self.chunks: queue.Queue[str] = queue.Queue()
        self.seen = ""
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.chunks.put(chunk.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in ANSI.sub("", self.seen):
            try:
                self.seen += self.chunks.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"stats never showed {text!r}; got:\n{ANSI.sub('', self.seen)}") from None

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        self._reader.join(10)
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code, stderr


@pytest.fixture
def live_stats() -> Iterator[type[LiveStats]]:
    started: list[LiveStats] = []

    class Tracked(LiveStats):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)
        s._reader.join(10)  # the process is gone: its output ends
        for pipe in (s.proc.stdout, s.proc.stderr):  # a test that failed midway left them open
            if pipe is not None and not pipe.closed:
                pipe.close()


def test_live_view_refreshes_survives_a_gateway_outage_and_exits_cleanly_on_ctrl_c(
    upstreams, gateway, sdk_clients, loop_thread, live_stats
):
    gw = gateway(_fleet(upstreams))
    client = sdk_clients.openai(gw)
    _ask(client, "stats-live-1", "fast", "hi")
    stats = live_stats("--url", gw.url, "--interval", "0.1")
    stats.wait_for("stats-live-1")

    _ask(client, "stats-live-2", "deep", "hi")
    stats.wait_for("stats-live-2")  # a later refresh picked up the new request

    async def stop_listening() -> None:
        for site in list(gw.runner.sites):
            await site.stop()

    loop_thread.run(stop_listening())
    stats.wait_for("connection refused — is `octoroute serve` running? (try --url); retrying every 0.1s")
    assert stats.proc.poll() is None  # still running, still retrying

    code, stderr = stats.interrupt()
    assert code == 0
    assert stderr == ""

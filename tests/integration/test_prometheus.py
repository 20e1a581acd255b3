"""The metrics endpoint against real consumers: a real Prometheus server
(/usr/bin/prometheus) scraping an in-process gateway, and `octoroute serve
--workers 2` as a subprocess whose workers share one multiprocess directory,
so one scrape sees the totals of both. promtool lints the two-worker scrape; a
worker killed mid-request stops counting as in flight and is replaced, its counts
kept; workers that cannot start at all stop the server."""

from __future__ import annotations

import glob
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import endpoint, fleet_config, free_port

from octoroute.demo.simulated import Mode

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
TOKEN = "scrape-token-12345"
HI = [{"role": "user", "content": "hi there"}]
CHAT_ROUTE = "/v1/chat/completions"
ID_PREFIX = 12  # hex chars of a worker's request-id prefix (RequestIds in server/middleware.py)
T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Call `check` until it returns something other than None, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One request on a fresh TCP connection (closed afterwards), so that SO_REUSEPORT
    picks a worker for each request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def try_fetch(port: int, path: str) -> Reply | None:
    try:
        return fetch(port, "GET", path)
    except OSError:
        return None


def chat(port: int, model: str) -> Reply:
    body = orjson.dumps({"model": model, "messages": HI})
    return fetch(port, "POST", CHAT_ROUTE, body, {"Content-Type": "application/json"})


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def total(series: Series, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= ls)


def promtool_complaints(text: str) -> tuple[int, str]:
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return check.returncode, check.stdout + check.stderr


# --- a real Prometheus server ---------------------------------------------------------------


class Prometheus:
    """A running /usr/bin/prometheus and its HTTP API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def api(self, path: str, **params: str) -> dict[str, Any]:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()}")
        query = f"?{urlencode(params)}" if params else ""
        reply = fetch(self.port, "GET", f"/api/v1/{path}{query}")
        assert reply.status == 200, reply.body
        data = orjson.loads(reply.body)
        assert data["status"] == "success", data
        return data["data"]  # type: ignore[no-any-return]

    def target(self, job: str) -> dict[str, Any] | None:
        """The job's only target, once it has been scraped (health no longer 'unknown')."""
        try:
            targets = [t for t in self.api("targets")["activeTargets"] if t["labels"]["job"] == job]
        except OSError:  # not listening yet
            return None
        assert len(targets) <= 1, targets
        return targets[0] if targets and targets[0]["health"] != "unknown" else None

    def query(self, promql: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query's vector: labels -> value."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in data["result"]}

    def scalar(self, promql: str) -> float | None:
        """The value of a query that yields one series (None when it yields none)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return next(iter(result.values()), None)


def scrape_job(name: str, port: int, credentials: str | None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": name,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }
    if credentials is not None:
        job["authorization"] = {"credentials": credentials}
    return job


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Prometheus]]:
    """Factory: `prometheus([scrape_job, ...])` starts a Prometheus server scraping every
    second; it is stopped (killed if it will not stop) after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(jobs: list[dict[str, Any]]) -> Prometheus:
        work = tmp_path / f"prometheus-{len(started)}"
        work.mkdir()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
        (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        log = work / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    "--storage.tsdb.retention.time=1h",
                ],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        prom = Prometheus(proc, port, log)

        def ready() -> bool | None:  # its API answers 503 until the TSDB is open
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
            reply = try_fetch(port, "/-/ready")
            return True if reply is not None and reply.status == 200 else None

        poll(ready, "prometheus to be ready", timeout=60)
        return prom

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def three_endpoint_fleet(upstreams, **sections: Any) -> dict[str, Any]:
    fast_a, fast_b, deep = upstreams("fast-a"), upstreams("fast-b"), upstreams("deep")
    return fleet_config(
        {
            "fast": [endpoint(fast_a, "m", id="fast-a"), endpoint(fast_b, "m", id="fast-b")],
            "deep": [endpoint(deep, "m", id="deep-1")],
        },
        **sections,
    )


def test_prometheus_scrapes_the_gateway_and_ingests_exact_values(upstreams, gateway, sdk_clients, prometheus):
    gw = gateway(three_endpoint_fleet(upstreams))
    client = sdk_clients.openai(gw)
    for model in ["fast"] * 4 + ["deep"] * 3:
        assert client.chat.completions.create(model=model, messages=HI).choices[0].message.content
    prom = prometheus([scrape_job("octoroute", gw.port, None)])

    target = poll(lambda: prom.target("octoroute"), "the first scrape")
    assert (target["health"], target["lastError"]) == ("up", "")
    assert target["scrapeUrl"] == f"http://127.0.0.1:{gw.port}/metrics"
    poll(lambda: prom.query("octoroute_requests_total") or None, "ingested samples")
    assert prom.scalar('up{job="octoroute"}') == 1
    assert prom.scalar("sum(octoroute_requests_total)") == 7
    assert prom.query("sum by (tier, strategy) (octoroute_requests_total)") == {
        frozenset({("tier", "fast"), ("strategy", "direct")}): 4,
        frozenset({("tier", "deep"), ("strategy", "direct")}): 3,
    }
    assert prom.scalar(f'sum(octoroute_http_requests_total{{route="{CHAT_ROUTE}",method="POST",status="200"}})') == 7
    assert prom.scalar("sum(octoroute_model_invocations_total)") == 7
    healthy = prom.query("octoroute_endpoint_healthy")
    assert {dict(labels)["endpoint"]: v for labels, v in healthy.items()} == {"fast-a": 1, "fast-b": 1, "deep-1": 1}
    # Scraped while the scrape itself was being served: exactly one request in progress.
    assert prom.scalar("octoroute_active_connections") == 1
    # Each scrape counts the ones before it: it is counted once its response has been sent.
    scrapes = 'sum(octoroute_http_requests_total{route="/metrics",method="GET",status="200"})'
    difference = f'{scrapes} - sum(count_over_time(up{{job="octoroute"}}[5m]))'
    assert poll(lambda: prom.scalar(difference), "a scrape that counts an earlier one") == -1


def test_a_metrics_token_lets_only_the_scraper_with_credentials_in(upstreams, gateway, sdk_clients, prometheus):
    gw = gateway(three_endpoint_fleet(upstreams, observability={"metrics_token": TOKEN}))
    client = sdk_clients.openai(gw)
    for _ in range(2):
        client.chat.completions.create(model="fast", messages=HI)
    prom = prometheus([scrape_job("octoroute", gw.port, TOKEN), scrape_job("octoroute-no-token", gw.port, None)])

    with_token = poll(lambda: prom.target("octoroute"), "the scrape with the token")
    without = poll(lambda: prom.target("octoroute-no-token"), "the scrape without a token")
    assert (with_token["health"], with_token["lastError"]) == ("up", "")
    assert without["health"] == "down"
    assert "401" in without["lastError"], without["lastError"]
    poll(lambda: prom.query("octoroute_requests_total") or None, "ingested samples")
    assert prom.scalar('up{job="octoroute"}') == 1
    assert prom.scalar('up{job="octoroute-no-token"}') == 0
    assert prom.scalar('sum(octoroute_requests_total{job="octoroute"})') == 2
    assert prom.query('octoroute_requests_total{job="octoroute-no-token"}') == {}


# --- octoroute serve --workers 2 ------------------------------------------------------------


def write_config(path: Path, sims: dict[str, list[tuple[str, str]]], observability: dict[str, str]) -> None:
    """A TOML config: `sims` maps a group to (endpoint id, base_url) pairs."""
    lines = ['[server]\nhost = "127.0.0.1"\n', '[routing]\nstrategy = "rule"\n', "[health]\nactive = false\n"]
    if observability:
        lines.append("[observability]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in observability.items()))
    for group, endpoints in sims.items():
        for ep_id, base_url in endpoints:
            lines.append(
                f'[[models.{group}]]\nname = "m"\nid = {json.dumps(ep_id)}\nbase_url = {json.dumps(base_url)}\n'
            )
    path.write_text("\n".join(lines))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime


def _dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Served:
    """`octoroute serve --workers N` running as a subprocess."""

    def __init__(self, config: Path, workers: int, tmp_path: Path) -> None:
        self.port = free_port()
        self.stdout = tmp_path / "serve.stdout"
        self.stderr = tmp_path / "serve.stderr"
        self.dirs_before = set(glob.glob("/tmp/octoroute-metrics-*"))
        cmd = [sys.executable, "-m", "octoroute", "serve", "--config", str(config)]
        cmd += ["--workers", str(workers), "--port", str(self.port)]
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=out, stderr=err)

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def health(self) -> Reply | None:
        if self.proc.poll() is not None:
            pytest.fail(f"octoroute serve exited with {self.proc.returncode}\n{self.output()}")
        return try_fetch(self.port, "/health")

    def wait_for_workers(self, workers: int) -> int:
        """Poll /health on fresh connections until `workers` different workers have answered;
        returns how many health requests were answered."""
        prefixes: set[str] = set()
        answered = 0

        def ready() -> bool | None:
            nonlocal answered
            reply = self.health()
            if reply is not None:
                assert reply.status == 200, reply.body
                answered += 1
                prefixes.add(reply.headers["x-request-id"][:ID_PREFIX])
            return True if len(prefixes) >= workers else None

        poll(ready, f"{workers} workers answering /health", timeout=30)
        assert len(prefixes) == workers, prefixes
        return answered

    def metrics_dir(self) -> str:
        """The multiprocess directory, as the workers were given it."""
        dirs = {_environ(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in _children(self.proc.pid)} - {None}
        assert len(dirs) == 1, dirs
        return str(dirs.pop())

    def worker_pids(self) -> list[int]:
        """The worker processes (not multiprocessing's resource tracker), oldest first."""
        workers = [pid for pid in _children(self.proc.pid) if b"spawn_main" in _cmdline(pid)]
        return sorted(workers, key=lambda pid: (_start_ticks(pid), pid))

    def stop(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"octoroute serve did not exit within {timeout}s of SIGTERM\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for child in _children(self.proc.pid):
                    os.kill(child, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path, int], Served]]:
    """Factory: `serve(config_path, workers)`; whatever is still running is stopped after the test."""
    started: list[Served] = []

    def start(config: Path, workers: int) -> Served:
        served = Served(config, workers, tmp_path)
        started.append(served)
        return served

    yield start
    for served in started:
        served.kill()


def two_worker_server(upstreams, serve, tmp_path: Path, observability: dict[str, str]) -> Served:
    a, b = upstreams("fast-a"), upstreams("fast-b")
    config = tmp_path / "octoroute.toml"
    write_config(config, {"fast": [("fast-a", a.base_url), ("fast-b", b.base_url)]}, observability)
    return serve(config, 2)


def test_two_workers_one_scrape_sees_the_totals(upstreams, serve, tmp_path):
    served = two_worker_server(upstreams, serve, tmp_path, {"routing_duration_unit": "seconds"})
    health_answered = served.wait_for_workers(2)
    directory = served.metrics_dir()
    assert directory in set(glob.glob("/tmp/octoroute-metrics-*")) - served.dirs_before
    n = 60

    ids = []
    for _ in range(n):
        reply = chat(served.port, "fast")
        assert reply.status == 200, (reply.body, served.output())
        ids.append(reply.headers["x-request-id"])
    by_worker = Tally(i[:ID_PREFIX] for i in ids)
    assert len(by_worker) == 2, by_worker  # SO_REUSEPORT spread the 60 connections over both workers
    assert len(set(ids)) == n

    scrape = fetch(served.port, "GET", "/metrics")
    assert scrape.status == 200, scrape.body
    text = scrape.body.decode()
    series = parse(text)
    assert total(series, "octoroute_requests_total") == n
    assert total(series, "octoroute_requests_total", tier="fast", strategy="direct") == n
    assert total(series, "octoroute_http_requests_total", route=CHAT_ROUTE, method="POST", status="200") == n
    assert total(series, "octoroute_http_requests_total", route="/health", method="GET", status="200") == (
        health_answered
    )
    assert total(series, "octoroute_model_invocations_total") == n
    assert total(series, "octoroute_upstream_attempts_total", outcome="ok") == n
    assert total(series, "octoroute_routing_duration_seconds_count") == n
    # livesum over both workers: the only request in progress is this scrape itself.
    assert total(series, "octoroute_active_connections") == 1
    # livemostrecent: one series per endpoint, not one per worker.
    healthy = {dict(ls)["endpoint"]: v for (name, ls), v in series.items() if name == "octoroute_endpoint_healthy"}
    assert healthy == {"fast-a": 1, "fast-b": 1}
    assert promtool_complaints(text) == (0, "")

    snap_reply = fetch(served.port, "GET", "/metrics.json")
    assert snap_reply.status == 200, snap_reply.body
    snap = orjson.loads(snap_reply.body)
    assert snap["workers"] == 2
    assert snap["requests"]["total"] == n
    assert snap["requests"]["by_status"] == {"2xx": n}
    assert {d["request_id"] for d in snap["decisions"]} == set(ids)
    assert {d["request_id"][:ID_PREFIX] for d in snap["decisions"]} == set(by_worker)
    assert sum(ep["attempts"] for ep in snap["endpoints"]) == n

    assert served.stop() == 0, served.output()
    assert not os.path.exists(directory), os.listdir(directory)


def test_with_the_1_0_metric_name_promtools_only_complaint_is_that_name(upstreams, serve, tmp_path):
    served = two_worker_server(upstreams, serve, tmp_path, {})
    served.wait_for_workers(2)
    directory = served.metrics_dir()
    for _ in range(4):
        assert chat(served.port, "fast").status == 200
    scrape = fetch(served.port, "GET", "/metrics")
    assert scrape.status == 200, scrape.body
    text = scrape.body.decode()
    assert total(parse(text), "octoroute_routing_duration_ms_count") == 4

    code, complaints = promtool_complaints(text)
    assert code == 3  # promtool's exit code for lint problems (and nothing else wrong)
    assert complaints.splitlines() == [
        "octoroute_routing_duration_ms metric names should not contain abbreviated units"
    ], complaints

    assert served.stop() == 0, served.output()
    assert not os.path.exists(directory)


def hold_a_request_on_each_worker(served: Served, sim, workers: int) -> list[http.client.HTTPConnection]:
    """A kept-alive connection per worker (told apart by the request-id prefix of a
    /health answer), each then left waiting on a chat request the slow upstream holds."""
    held: dict[str, http.client.HTTPConnection] = {}

    def one_more() -> bool | None:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        prefix = str(response.getheader("X-Request-Id"))[:ID_PREFIX]
        if prefix in held:
            conn.close()
        else:
            held[prefix] = conn
        return True if len(held) == workers else None

    poll(one_more, f"a connection to each of {workers} workers")
    for conn in held.values():
        conn.request(
            "POST", CHAT_ROUTE, orjson.dumps({"model": "fast", "messages": HI}), {"Content-Type": "application/json"}
        )
    poll(lambda: True if sim.count == workers else None, "the held requests reaching the upstream")
    return list(held.values())


def kill_the_newest_worker(served: Served) -> None:
    """SIGKILL, as the OOM killer would; the newest worker, which the parent does not join first."""
    workers = served.worker_pids()
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    poll(lambda: True if _dead(workers[-1]) else None, "the killed worker to die")


def fetch_past_resets(port: int, method: str, path: str, body: bytes | None = None) -> Reply:
    """`fetch`, again while the kernel resets the connection: just after a SO_REUSEPORT
    listener dies, a new connection can still be handed to it and reset, before any
    worker has seen it (so a retry is never counted twice)."""

    def attempt() -> Reply | None:
        try:
            return fetch(port, method, path, body, {"Content-Type": "application/json"})
        except ConnectionResetError:
            return None

    return poll(attempt, f"{method} {path} not reset", timeout=10)


def test_a_killed_workers_connections_stop_counting(upstreams, serve, tmp_path):
    sim = upstreams("slow")
    sim.behaviour.mode = Mode.SLOW
    config = tmp_path / "octoroute.toml"
    write_config(config, {"fast": [("slow", sim.base_url)]}, {"routing_duration_unit": "seconds"})
    served = serve(config, 2)
    served.wait_for_workers(2)
    held = hold_a_request_on_each_worker(served, sim, 2)
    try:
        before = parse(fetch(served.port, "GET", "/metrics").body.decode())
        assert total(before, "octoroute_active_connections") == 3  # a held request per worker, and this scrape
        kill_the_newest_worker(served)

        def active() -> float:
            return total(
                parse(fetch_past_resets(served.port, "GET", "/metrics").body.decode()), "octoroute_active_connections"
            )

        # The survivor's held request and this scrape; the dead worker serves nothing (the
        # parent gets up to 3 s to notice the death).
        deadline = time.monotonic() + 3
        while (now := active()) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert now == 2, f"{now} active: the killed worker's in-flight request is still counted\n{served.output()}"
    finally:
        for conn in held:
            conn.close()


def test_a_killed_worker_is_replaced_and_the_totals_survive(upstreams, serve, tmp_path):
    sim = upstreams("fast")
    config = tmp_path / "octoroute.toml"
    write_config(config, {"fast": [("fast-a", sim.base_url)]}, {})
    served = serve(config, 2)
    served.wait_for_workers(2)
    directory = served.metrics_dir()
    body = orjson.dumps({"model": "fast", "messages": HI})
    for _ in range(10):
        assert fetch(served.port, "POST", CHAT_ROUTE, body, {"Content-Type": "application/json"}).status == 200
    survivor, victim = served.worker_pids()
    kill_the_newest_worker(served)

    def replaced() -> list[int] | None:
        pids = served.worker_pids()
        return pids if len(pids) == 2 and victim not in pids else None

    pids = poll(replaced, "a new worker in place of the killed one")
    assert survivor in pids
    served.wait_for_workers(2)  # the newcomer answers too
    assert fetch_past_resets(served.port, "POST", CHAT_ROUTE, body).status == 200
    # Counters keep what the dead worker had counted: 10 before the kill, 1 after.
    after = parse(fetch(served.port, "GET", "/metrics").body.decode())
    assert total(after, "octoroute_requests_total") == 11
    assert "was killed by signal 9; starting a new one" in served.stderr.read_text()
    # Uptime is the server's, whichever worker answers: the newcomer did not reset it.
    started: dict[str, float] = {}

    def both_answered() -> bool | None:
        reply = fetch_past_resets(served.port, "GET", "/metrics.json")
        started[str(reply.headers["x-request-id"])[:ID_PREFIX]] = orjson.loads(reply.body)["started_at"]
        return True if len(started) == 2 else None

    poll(both_answered, "/metrics.json from both workers")
    assert len(set(started.values())) == 1, started
    assert served.stop() == 0  # a replaced worker is not a failed shutdown
    assert not os.path.exists(directory)


def test_workers_that_cannot_start_stop_the_server(upstreams, tmp_path):
    sim = upstreams("fast")
    config = tmp_path / "octoroute.toml"
    write_config(config, {"fast": [("fast-a", sim.base_url)]}, {})
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can bind the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "octoroute",
                "serve",
                "--config",
                str(config),
                "--workers",
                "2",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    # the port is checked before any worker starts: one line, no crash loop of workers
    busy = "is already in use; stop what is listening there or pick another port with --port"
    assert result.stderr.strip().splitlines() == [f"cannot start: 127.0.0.1:{port} {busy}"]


def test_prometheus_counts_endpoints_cooling_down_and_refusing_credentials(upstreams, gateway, sdk_clients, prometheus):
    limited, spare = upstreams("limited"), upstreams("spare")
    limited.behaviour.mode = Mode.ERROR_429
    limited.behaviour.retry_after_seconds = 600  # still cooling down whenever Prometheus is asked
    gw = gateway(fleet_config({"fast": [endpoint(limited, "m", id="limited", priority=2), endpoint(spare, "m")]}))
    assert sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI).choices[0].message.content
    assert (limited.count, spare.count) == (1, 1)
    prom = prometheus([scrape_job("octoroute", gw.port, None)])
    poll(lambda: prom.query("octoroute_upstream_cooldowns_total") or None, "ingested samples")
    # The README's example queries.
    assert prom.scalar("count(octoroute_endpoint_cooldown_until_seconds > time())") == 1
    rate_limited = 'sum by (endpoint) (octoroute_upstream_cooldowns_total{reason="rate_limited"})'
    assert {dict(k)["endpoint"]: v for k, v in prom.query(rate_limited).items()} == {
        "limited": 1,
        "fast/m": 0,
    }  # 0 from the start
    assert prom.query("octoroute_endpoint_credentials_refused == 1") == {}
    assert prom.scalar('octoroute_endpoint_healthy{endpoint="limited"}') == 1


def test_two_workers_shadow_counts_are_merged_and_pass_promtool(upstreams, serve, tmp_path):
    a, b = upstreams("fast-a"), upstreams("fast-b")
    config = tmp_path / "octoroute.toml"
    write_config(
        config, {"fast": [("fast-a", a.base_url), ("fast-b", b.base_url)]}, {"routing_duration_unit": "seconds"}
    )
    # hybrid decides "hi there" by its rule step (casual chat -> fast): no judge call, no model weights
    config.write_text(config.read_text() + '\n[routing.shadow]\nstrategy = "hybrid"\nallow_judge = true\n')
    served = serve(config, 2)
    served.wait_for_workers(2)
    n = 40
    ids = []
    for _ in range(n):
        reply = chat(served.port, "auto")
        assert reply.status == 200, (reply.body, served.output())
        ids.append(reply.headers["x-request-id"])
    assert len(Tally(i[:ID_PREFIX] for i in ids)) == 2  # both workers served some

    text = fetch(served.port, "GET", "/metrics").body.decode()
    series = parse(text)
    assert (
        total(series, "octoroute_shadow_decisions_total", strategy="hybrid", live_tier="fast", shadow_tier="fast") == n
    )
    assert total(series, "octoroute_shadow_dropped_total", strategy="hybrid") == 0
    assert total(series, "octoroute_shadow_pending", strategy="hybrid") == 0
    assert promtool_complaints(text) == (0, "")
    snap = orjson.loads(fetch(served.port, "GET", "/metrics.json").body)
    assert (snap["shadow"]["decisions"], snap["shadow"]["agreement"]) == (n, 1.0)
    assert {d["shadow_tier"] for d in snap["decisions"]} == {"fast"}
    assert served.stop() == 0, served.output()

"""Issue 14's bar: two `octoroute serve` processes on one real redis-server limit a
client together, avoid an endpoint the other marked down, survive Redis being
killed and come back to it; `--workers 2` without Redis limits together too.

Rate limits are asserted by counts over a burst at a rate so small (one request
per 1000 s) that the test's own duration never refills a bucket."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from tests.cli.test_stats import has_row, octoroute_stats, plain
from tests.redis_server import RedisServer
from tests.support import endpoint, eventually, fleet_config, free_port

from octoroute.demo.faults import config_toml
from octoroute.demo.simulated import Mode
from octoroute.observe.usage import format_cost

BURST = 5
SLOW_LIMIT = {"enabled": True, "requests_per_second": 0.001, "burst": BURST}
ID_PREFIX = 12  # hex chars of a worker's request-id prefix (RequestIds in server/middleware.py)
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def request(
    port: int, method: str, path: str, body: Any = None, key: str = "client-a"
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (so `--workers` spreads them), no retries."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else orjson.dumps(body), headers=headers)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def chat(port: int, key: str = "client-a") -> tuple[int, dict[str, str], bytes]:
    return request(port, "POST", "/v1/chat/completions", {"model": "fast", "messages": HI}, key)


def backend_up(port: int) -> float | None:
    status, _, body = request(port, "GET", "/metrics")
    assert status == 200
    found = re.search(rb"^octoroute_state_backend_up (\S+)$", body, re.M)
    return None if found is None else float(found.group(1))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: `serve(config_dict, workers=1, extra_toml="")` runs `octoroute serve` as a subprocess."""
    started: list[Served] = []

    def start(data: dict[str, Any], workers: int = 1, extra_toml: str = "") -> Served:
        port = free_port()
        config = tmp_path / f"gateway-{port}.toml"
        config.write_text(config_toml(data, port=port) + extra_toml)
        log = tmp_path / f"gateway-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "octoroute", "serve", "--config", str(config), "--workers", str(workers)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        served = Served(port, proc, log)
        started.append(served)

        def ready() -> bool:
            assert proc.poll() is None, served.output()
            try:
                return request(port, "GET", "/health")[0] == 200
            except OSError:
                return False

        eventually(ready, timeout=30, what=f"octoroute serve on port {port}")
        return served

    yield start
    for served in started:
        with contextlib.suppress(ProcessLookupError):  # one that failed to start is gone already
            os.killpg(served.proc.pid, signal.SIGTERM)
        served.proc.wait(timeout=30)


def shared(redis: RedisServer, **extra: Any) -> dict[str, Any]:
    """`[state]` on `redis`. The timeout is generous: a loaded test machine must not turn a
    slow answer into a fallback (Redis being gone is what the fault test is about)."""
    return {
        "backend": "redis",
        "url": redis.url,
        "key_prefix": "t14:",
        "sync_interval_seconds": 0.2,
        "timeout_ms": 2000,
        **extra,
    }


def assert_429_shape(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    error = orjson.loads(body)["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "rate limit exceeded" in error["message"]


def test_a_client_gets_its_burst_once_across_two_gateways_on_redis(upstreams, redis_server, serve, sdk_clients):
    sim = upstreams("fast")
    data = fleet_config({"fast": [endpoint(sim, "m")]}, rate_limit=SLOW_LIMIT, state=shared(redis_server))
    a, b = serve(data), serve(data)
    answers = [chat(gw.port) for _ in range(6) for gw in (a, b)]  # alternating: 12 requests, 6 to each
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {200: BURST, 429: 12 - BURST}, [a.output(), b.output()]
    assert sim.count == BURST
    for answer in answers:
        if answer[0] == 429:
            assert_429_shape(*answer)
    # another client has its own burst; the refusal parses as the SDK's RateLimitError
    client = openai.OpenAI(base_url=b.base_url, api_key="client-b", max_retries=0, _strict_response_validation=True)
    try:
        for _ in range(BURST):
            assert client.chat.completions.create(model="fast", messages=HI).choices[0].message.content
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(base_url=a.base_url, api_key="client-b", max_retries=0).chat.completions.create(
                model="fast", messages=HI
            )
    finally:
        client.close()


def test_two_workers_without_redis_share_one_burst_and_one_probe(upstreams, serve):
    sim = upstreams("fast")
    probing = {"active": True, "check_interval_seconds": 3600}  # one probe round per worker, at its start
    served = serve(fleet_config({"fast": [endpoint(sim, "m")]}, rate_limit=SLOW_LIMIT, health=probing), workers=2)
    answered: set[str] = set()  # both workers listening before the burst (GET /health is never limited)

    def both_listen() -> bool:
        answered.add(request(served.port, "GET", "/health")[1]["x-request-id"][:ID_PREFIX])
        return len(answered) == 2

    eventually(both_listen, timeout=30, what="both workers to answer /health")
    answers = [chat(served.port) for _ in range(30)]
    workers = Counter(headers["x-request-id"][:ID_PREFIX] for _, headers, _ in answers)
    assert len(workers) == 2, workers  # the kernel spread the connections over both workers
    assert Counter(status for status, _, _ in answers) == {200: BURST, 429: 30 - BURST}, served.output()
    assert sim.count == BURST
    assert probes(sim) == 1  # the shared-memory lease: the second worker skipped its round


def test_a_token_budget_spent_on_one_gateway_is_spent_on_the_other(upstreams, redis_server, serve, monkeypatch):
    sim = upstreams("fast")
    monkeypatch.setenv("T14_CI_KEY", "ork-shared-budget-key")  # the gateway subprocesses inherit it
    data = fleet_config({"fast": [endpoint(sim, "m")]}, auth={"enabled": True}, state=shared(redis_server))
    key = '\n[[auth.keys]]\nname = "ci"\nkey_env = "T14_CI_KEY"\ntokens_per_day = 1\n'
    a, b = serve(data, extra_toml=key), serve(data, extra_toml=key)
    assert chat(a.port, "ork-shared-budget-key")[0] == 200  # admitted while budget remained, then charged
    status, headers, body = chat(b.port, "ork-shared-budget-key")
    assert status == 429
    assert orjson.loads(body)["error"]["code"] == "token_budget_exceeded"
    assert int(headers["retry-after"]) > 0
    assert sim.count == 1


def test_an_endpoint_marked_down_by_one_gateway_is_avoided_by_the_other(upstreams, redis_server, serve):
    bad, good = upstreams("bad"), upstreams("good")
    bad.behaviour.mode = Mode.ERROR_500
    data = fleet_config(
        {"fast": [endpoint(bad, "m", id="bad", priority=2), endpoint(good, "m", id="good")]},
        health={"failure_threshold": 1, "check_interval_seconds": 3600},
        state=shared(redis_server),
    )
    a, b = serve(data), serve(data)
    status, _, _ = chat(a.port)
    assert status == 200  # bad failed once (now down on a), good answered
    assert (bad.count, good.count) == (1, 1)

    def b_sees_bad_down() -> bool:
        rows = orjson.loads(request(b.port, "GET", "/models")[2])["endpoints"]
        return next(r["healthy"] for r in rows if r["id"] == "bad") is False

    eventually(b_sees_bad_down, timeout=10, what="gateway b to adopt a's verdict")
    for _ in range(3):
        assert chat(b.port)[0] == 200
    assert (bad.count, good.count) == (1, 4)  # b never tried the endpoint it had never seen fail


def test_an_upstream_cooldown_reached_by_one_gateway_is_kept_by_the_other(upstreams, redis_server, serve):
    limited, spare = upstreams("limited"), upstreams("spare")
    limited.behaviour.mode = Mode.ERROR_429
    limited.behaviour.retry_after_seconds = 600
    data = fleet_config(
        {"fast": [endpoint(limited, "m", id="limited", priority=2), endpoint(spare, "m", id="spare")]},
        state=shared(redis_server),
    )
    a, b = serve(data), serve(data)
    assert chat(a.port)[0] == 200  # limited said 429 with Retry-After: 600; spare answered
    assert (limited.count, spare.count) == (1, 1)

    def b_cools_limited_down() -> bool:
        rows = orjson.loads(request(b.port, "GET", "/models")[2])["endpoints"]
        return next(r["cooldown_seconds"] for r in rows if r["id"] == "limited") > 500

    eventually(b_cools_limited_down, timeout=10, what="gateway b to adopt a's cooldown")
    for _ in range(3):
        assert chat(b.port)[0] == 200
    assert (limited.count, spare.count) == (1, 4)


def test_killing_redis_loses_no_request_and_both_gateways_recover(upstreams, redis_server, serve, sdk_clients):
    sim = upstreams("fast")
    generous = {"enabled": True, "requests_per_second": 1000, "burst": 1000}
    data = fleet_config(
        {"fast": [endpoint(sim, "m")]}, rate_limit=generous, state=shared(redis_server, retry_seconds=0.1)
    )
    a, b = serve(data), serve(data)
    clients = [sdk_clients.openai(gw.base_url) for gw in (a, b)]

    def round_of_requests() -> None:
        for client in clients * 3:  # every one answered in full, none hangs, none is a 5xx
            assert client.chat.completions.create(model="fast", messages=HI).choices[0].message.content

    round_of_requests()
    assert [backend_up(gw.port) for gw in (a, b)] == [1.0, 1.0]
    redis_server.kill()
    round_of_requests()
    assert [backend_up(gw.port) for gw in (a, b)] == [0.0, 0.0]  # each noticed, and kept serving
    redis_server.start()
    eventually(lambda: [backend_up(gw.port) for gw in (a, b)] == [1.0, 1.0], timeout=20, what="both to reconnect")
    round_of_requests()
    for gw in (a, b):
        log = gw.output()
        assert log.count("using local state until it answers again") == 1, log  # once per transition, not per call
        assert "Traceback" not in log, log


def test_verdicts_still_reach_the_other_gateway_after_redis_restarts_empty(upstreams, redis_server, serve):
    bad, good = upstreams("bad"), upstreams("good")
    bad.behaviour.mode = Mode.ERROR_500
    data = fleet_config(
        {"fast": [endpoint(bad, "m", id="bad", priority=2), endpoint(good, "m", id="good")]},
        # no probes: a request re-tests an unhealthy endpoint once it was last seen a second ago
        health={"failure_threshold": 1, "check_interval_seconds": 1},
        state=shared(redis_server, retry_seconds=0.1),
    )
    a, b = serve(data), serve(data)
    assert chat(a.port)[0] == 200
    eventually(lambda: bad_is_healthy(b) is False, timeout=10, what="b to adopt 'bad is down'")
    redis_server.kill()
    redis_server.start()  # empty: no persistence
    eventually(lambda: backend_up(a.port) == backend_up(b.port) == 1.0, timeout=20, what="both to reconnect")
    bad.behaviour.mode = Mode.NORMAL

    def a_finds_bad_healthy() -> bool:
        assert chat(a.port)[0] == 200
        return bad_is_healthy(a) is True

    eventually(a_finds_bad_healthy, timeout=20, what="a to re-test bad and find it healthy")
    eventually(lambda: bad_is_healthy(b) is True, timeout=10, what="b to adopt 'bad is back'")


def bad_is_healthy(gw: Served) -> bool:
    rows = orjson.loads(request(gw.port, "GET", "/models")[2])["endpoints"]
    return bool(next(r["healthy"] for r in rows if r["id"] == "bad"))


def test_active_probes_are_not_multiplied_by_the_number_of_gateways(upstreams, redis_server, serve):
    sim = upstreams("fast")
    data = fleet_config(
        {"fast": [endpoint(sim, "m")]},
        health={"active": True, "check_interval_seconds": 3600},  # one probe round each, at startup
        state=shared(redis_server),
    )
    a, b = serve(data), serve(data)
    eventually(lambda: probes(sim) >= 1, timeout=10, what="the first probe")
    for _ in range(5):  # b's startup round (a lease check, then maybe a probe) is long done after these
        assert chat(b.port)[0] == 200
        assert chat(a.port)[0] == 200
    assert probes(sim) == 1  # the other gateway found the lease taken


def probes(sim: Any) -> int:
    return sum(r.method == "GET" and r.path == "/v1/models" for r in sim.requests)


def test_a_redis_that_never_answers_costs_the_gateway_nothing_but_a_warning(upstreams, serve, loop_thread):
    sim = upstreams("fast")
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing: a hung Redis

    async def listen() -> asyncio.Server:
        return await asyncio.start_server(silent, "127.0.0.1", 0)

    server = loop_thread.run(listen())
    port = server.sockets[0].getsockname()[1]
    state = {"backend": "redis", "url": f"redis://127.0.0.1:{port}/0", "timeout_ms": 50, "retry_seconds": 0.2}
    generous = {"enabled": True, "requests_per_second": 1000, "burst": 1000}
    try:
        gw = serve(fleet_config({"fast": [endpoint(sim, "m")]}, rate_limit=generous, state=state))
        assert accepted  # it did try Redis
        for _ in range(10):
            assert chat(gw.port)[0] == 200
        assert backend_up(gw.port) == 0.0
        assert gw.output().count("using local state until it answers again") == 1
    finally:

        async def close() -> None:
            server.close()
            for writer in accepted:
                writer.close()

        loop_thread.run(close())


USAGE_KEYS = {"alice": "ork-usage-alice-key", "bob": "ork-usage-bob-key"}


def usage_config(sim: Any, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> dict[str, Any]:
    """One priced endpoint and two client keys (the gateway subprocesses inherit their env)."""
    monkeypatch.setenv("T14_ALICE_KEY", USAGE_KEYS["alice"])
    monkeypatch.setenv("T14_BOB_KEY", USAGE_KEYS["bob"])
    return fleet_config(
        {"fast": [endpoint(sim, "m", id="fast-m", price_input_per_mtok=2, price_output_per_mtok="7.5")]},
        auth={"enabled": True},
        **sections,
    )


USAGE_KEYS_TOML = "".join(
    f'\n[[auth.keys]]\nname = "{name}"\nkey_env = "T14_{name.upper()}_KEY"\n' for name in USAGE_KEYS
)


def send_usage(base_url: str, client: str, times: int, totals: dict[str, list[int]]) -> None:
    """`times` chats as `client` through the official SDK; adds what each reply's usage said."""
    sdk = openai.OpenAI(base_url=base_url, api_key=USAGE_KEYS[client], max_retries=0)
    try:
        for _ in range(times):
            reply = sdk.chat.completions.create(model="fast", messages=HI)
            assert reply.usage is not None
            seen = totals.setdefault(client, [0, 0, 0])
            seen[0] += 1
            seen[1] += reply.usage.prompt_tokens
            seen[2] += reply.usage.completion_tokens
    finally:
        sdk.close()


def usage_of(port: int) -> dict[str, Any]:
    status, _, body = request(port, "GET", "/metrics.json", key=USAGE_KEYS["alice"])
    assert status == 200
    usage: dict[str, Any] = orjson.loads(body)["usage"]
    return usage


def expected_usage(totals: dict[str, list[int]]) -> list[dict[str, Any]]:
    """The rows /metrics.json must show: exact tokens, cost = tokens x (2, 7.5) per million."""
    return [
        {
            "client": client,
            "group": "fast",
            "endpoint": "fast-m",
            "requests": n,
            "unreported": 0,
            "input_tokens": t_in,
            "output_tokens": t_out,
            "cost": format_cost((t_in * Decimal(2) + t_out * Decimal("7.5")) / Decimal(1_000_000)),
        }
        for client, (n, t_in, t_out) in sorted(totals.items())
    ]


def test_usage_of_two_gateways_on_redis_is_one_fleet_total_on_either(upstreams, redis_server, serve, monkeypatch):
    sim = upstreams("fast")
    data = usage_config(sim, monkeypatch, state=shared(redis_server))
    a, b = serve(data, extra_toml=USAGE_KEYS_TOML), serve(data, extra_toml=USAGE_KEYS_TOML)
    totals: dict[str, list[int]] = {}
    send_usage(a.base_url, "alice", 3, totals)
    send_usage(a.base_url, "bob", 1, totals)
    send_usage(b.base_url, "alice", 2, totals)
    send_usage(b.base_url, "bob", 4, totals)
    assert totals["alice"][1] > 0  # the fixture reports usage
    assert totals["bob"][2] > 0
    want = expected_usage(totals)
    for gw in (a, b):
        eventually(lambda gw=gw: usage_of(gw.port)["rows"] == want, timeout=15, what=f"fleet usage on {gw.port}")
        total = usage_of(gw.port)["total"]
        assert total["requests"] == 10
        assert total["input_tokens"] == sum(t[1] for t in totals.values())
    # Prometheus counters stay per process: each gateway exposes only what it served
    _, _, exposition = request(a.port, "GET", "/metrics", key=USAGE_KEYS["alice"])
    served_by_a = re.findall(rb"^octoroute_usage_requests_total\{([^}]*)\} (\S+)$", exposition, re.M)
    assert sum(float(v) for labels, v in served_by_a if b'usage="reported"' in labels) == 4


def test_usage_of_two_workers_without_redis_is_one_total(upstreams, serve, monkeypatch):
    sim = upstreams("fast")
    served = serve(usage_config(sim, monkeypatch), workers=2, extra_toml=USAGE_KEYS_TOML)
    totals: dict[str, list[int]] = {}
    workers: Counter[str] = Counter()
    answered: set[str] = set()  # both workers listening first (GET /health is not usage)

    def both_listen() -> bool:
        answered.add(request(served.port, "GET", "/health", key=USAGE_KEYS["bob"])[1]["x-request-id"][:ID_PREFIX])
        return len(answered) == 2

    eventually(both_listen, timeout=30, what="both workers to answer /health")
    for i in range(200):  # fresh connections until the kernel has given each worker some
        if len(workers) == 2 and i >= 10:
            break
        client = ("alice", "bob")[i % 3 == 0]
        status, headers, body = chat(served.port, USAGE_KEYS[client])
        assert status == 200, body
        workers[headers["x-request-id"][:ID_PREFIX]] += 1
        usage = orjson.loads(body)["usage"]
        seen = totals.setdefault(client, [0, 0, 0])
        seen[0] += 1
        seen[1] += usage["prompt_tokens"]
        seen[2] += usage["completion_tokens"]
    assert len(workers) == 2, workers
    want = expected_usage(totals)
    eventually(lambda: usage_of(served.port)["rows"] == want, timeout=15, what="combined usage of both workers")


HELD = 3  # streams held open on the busy endpoint


def hold_streams(port: int, model: str, count: int) -> list[socket.socket]:
    """`count` streamed chats to `model` through the gateway on `port`, left open (the caller closes them)."""
    body = orjson.dumps({"model": model, "messages": HI, "stream": True})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer client-a\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(head + body)
        held.append(sock)
    return held


def in_flight_row(port: int, endpoint_id: str) -> tuple[str, dict[str, Any]]:
    """(the answering worker's request-id prefix, its `/metrics.json` row for `endpoint_id`)."""
    status, headers, body = request(port, "GET", "/metrics.json")
    assert status == 200, body
    rows = {row["id"]: row for row in orjson.loads(body)["endpoints"]}
    return headers["x-request-id"][:ID_PREFIX], rows[endpoint_id]


def elsewhere(port: int, endpoint_id: str) -> tuple[str, int]:
    """(the answering worker's request-id prefix, its `inflight_elsewhere` for `endpoint_id`)."""
    worker, row = in_flight_row(port, endpoint_id)
    return worker, row["inflight_elsewhere"]


def load_of(port: int, endpoint_id: str) -> tuple[int, int]:
    """`in_flight` (this gateway's, every worker) and `inflight_replicas` (other gateways')."""
    row = in_flight_row(port, endpoint_id)[1]
    return row["in_flight"], row["inflight_replicas"]


def busy_and_idle(upstreams: Callable[[str], Any]) -> tuple[Any, Any, dict[str, Any]]:
    """Endpoint "busy" (its answers never come: streams stay open) weighted 1000:1 over "idle",
    so that without the other processes' counts a gateway that holds none of busy's streams
    itself would almost always pick busy."""
    busy, idle = upstreams("busy"), upstreams("idle")
    busy.behaviour.mode = Mode.HANG_BODY
    models = {"fast": [endpoint(busy, "m", id="busy", weight=1000), endpoint(idle, "m", id="idle")]}
    return busy, idle, models


def test_streams_held_through_one_gateway_steer_the_other_to_the_idle_endpoint_until_it_is_killed(
    upstreams, redis_server, serve
):
    busy, idle, models = busy_and_idle(upstreams)
    data = fleet_config(models, state=shared(redis_server, inflight_interval_seconds=0.2))
    a, b = serve(data), serve(data)
    held = hold_streams(a.port, "busy", HELD)  # pinned to busy by its endpoint id
    try:
        eventually(lambda: busy.count == HELD, timeout=10, what="the held streams to reach busy")
        eventually(lambda: elsewhere(b.port, "busy")[1] == HELD, timeout=10, what="b to see a's streams")
        assert elsewhere(a.port, "busy")[1] == 0  # a's own streams are not "elsewhere" to a
        assert load_of(a.port, "busy") == (HELD, 0)
        assert load_of(b.port, "busy") == (0, HELD)  # one worker each: replicas == elsewhere
        for columns in ("220", "80"):  # `octoroute stats` on b shows a's streams beside b's own (none)
            shown = octoroute_stats("--url", f"127.0.0.1:{b.port}", "--once", env={"COLUMNS": columns})
            assert shown.returncode == 0, shown.stderr
            assert has_row(
                plain(shown.stdout),
                "busy",
                rf"busy {'fast m healthy 0 0 – – ' if columns == '220' else ''}0 \+{HELD} .*",
            ), shown.stdout
        for _ in range(5):
            status, _, body = chat(b.port)
            assert status == 200, body
        assert (busy.count, idle.count) == (HELD, 5), b.output()  # b chose the least busy: idle

        os.killpg(a.proc.pid, signal.SIGKILL)  # a crashes holding its streams; its share must expire
        a.proc.wait(timeout=30)
        eventually(lambda: elsewhere(b.port, "busy")[1] == 0, timeout=10, what="a's share to expire on b")
    finally:
        for sock in held:
            sock.close()


def test_two_workers_without_redis_see_each_other_s_in_flight_streams(upstreams, serve):
    busy, idle, models = busy_and_idle(upstreams)
    served = serve(fleet_config(models, state={"inflight_interval_seconds": 0.2}), workers=2)
    held = hold_streams(served.port, "busy", HELD)  # the kernel spreads them over the workers
    try:
        eventually(lambda: busy.count == HELD, timeout=10, what="the held streams to reach busy")
        seen: dict[str, int] = {}

        def both_see_the_others() -> bool:
            worker, count = elsewhere(served.port, "busy")
            seen[worker] = count
            # each worker sees the streams the other holds: together, every held stream
            return len(seen) == 2 and sum(seen.values()) == HELD

        eventually(both_see_the_others, timeout=30, what=f"both workers to see the other's streams ({seen})")
        # in_flight sums both workers; the sibling's streams in `inflight_elsewhere` are not
        # another gateway's, so whichever worker answers, nothing is counted twice
        loads = {load_of(served.port, "busy") for _ in range(8)}
        assert loads == {(HELD, 0)}, loads
        for _ in range(6):
            status, _, body = chat(served.port)
            assert status == 200, body
        assert (busy.count, idle.count) == (HELD, 6), served.output()
    finally:
        for sock in held:
            sock.close()

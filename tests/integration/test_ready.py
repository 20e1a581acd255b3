"""`/ready` tells the truth about upstreams, and `serve` says at startup which did
not answer: not ready until the first probe round finished, then ready only when
every group (or a group on its fallback chain) has a healthy endpoint that passed
its latest probe."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import orjson
import urllib3
from tests.cli.test_cli import Server, serve  # noqa: F401  (the fixture)
from tests.local_servers import Kind, Model
from tests.support import eventually

HTTP = urllib3.PoolManager()
MODEL = Model("qwen2.5:3b", 3.1e9)
ACTIVE = {"active": True, "check_interval_seconds": 600, "discover": False}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str) -> tuple[int, dict[str, object]]:
    reply = HTTP.request("GET", f"{url}/ready", retries=False)
    return reply.status, orjson.loads(reply.data)


def test_not_ready_until_the_first_probe_round_has_finished(local_server, gateway, loop_thread):
    held = asyncio.Event()
    server = local_server(Kind.OLLAMA, [MODEL], hold_listing=held)
    gw = gateway({"models": {"fast": [{"name": MODEL.name, "base_url": server.base_url}]}, "health": ACTIVE})
    eventually(lambda: "GET /v1/models" in server.requests, what="the first probe")
    status, body = ready(gw.url)
    assert (status, body["status"], body["probe_rounds"]) == (503, "starting", 0)
    loop_thread.loop.call_soon_threadsafe(held.set)
    eventually(lambda: ready(gw.url)[0] == 200, what="ready after the first round")
    assert ready(gw.url)[1] == {
        "status": "ready",
        "healthy_endpoints": 1,
        "total_endpoints": 1,
        "probe_rounds": 1,
        "unavailable_groups": [],
    }


def test_a_group_without_a_reachable_endpoint_makes_it_unavailable(local_server, gateway):
    server = local_server(Kind.OLLAMA, [MODEL])
    models = {
        "fast": [{"name": MODEL.name, "base_url": server.base_url}],
        "deep": [{"name": "big", "base_url": f"http://127.0.0.1:{closed_port()}/v1"}],
    }
    gw = gateway({"models": models, "health": ACTIVE})
    eventually(lambda: gw.gateway.probe_rounds == 1, what="the first probe round")
    status, body = ready(gw.url)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["unavailable_groups"] == ["deep"]
    assert (body["healthy_endpoints"], body["total_endpoints"]) == (1, 2)
    # the endpoint is still "healthy" to routing (one failure, threshold 3); /ready does not wait for that
    assert gw.gateway.board.is_healthy("deep/big")


def test_a_group_whose_fallback_answers_keeps_the_gateway_ready(local_server, gateway):
    server = local_server(Kind.OLLAMA, [MODEL])
    models = {
        "fast": [{"name": MODEL.name, "base_url": server.base_url}],
        "deep": [{"name": "big", "base_url": f"http://127.0.0.1:{closed_port()}/v1"}],
    }
    gw = gateway({"models": models, "health": ACTIVE, "fallback": {"deep": "fast"}})
    eventually(lambda: gw.gateway.probe_rounds == 1, what="the first probe round")
    status, body = ready(gw.url)
    assert status == 200, body
    assert body["healthy_endpoints"] == 1


def _config(path: Path, models: list[tuple[str, str, str]]) -> Path:
    lines = ["[server]", 'host = "127.0.0.1"', "port = 0", "[health]", "check_interval_seconds = 600", ""]
    for group, name, url in models:
        lines += [f"[[models.{group}]]", f'name = "{name}"', f'base_url = "{url}"', ""]
    path.write_text("\n".join(lines))
    return path


SUMMARY = re.compile(r"upstreams: .*")


def test_serve_logs_one_line_about_upstreams_after_the_first_probe_round(local_server, serve, tmp_path):  # noqa: F811
    server = local_server(Kind.OLLAMA, [MODEL])
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    bad = _config(tmp_path / "bad.toml", [("fast", MODEL.name, server.base_url), ("deep", "big", dead)])
    line = serve("--config", str(bad)).wait_for(SUMMARY)[0].group(0)
    assert line.startswith("upstreams: 1 of 2 did not answer the first health check: deep/big (cannot connect to")
    assert dead in line

    good = _config(tmp_path / "good.toml", [("fast", MODEL.name, server.base_url)])
    line = serve("--config", str(good)).wait_for(SUMMARY)[0].group(0)
    assert line == "upstreams: all 1 answered the first health check"

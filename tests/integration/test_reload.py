"""Config reload on a live gateway (the in-process app over real HTTP): streams in
flight finish on the config they started with, new requests take the new one, and
the state of endpoints that stay carries over while changed ones start fresh.
`tests/cli/test_serve_reload.py` drives the same through `octoroute serve`
(SIGHUP, --watch, --workers)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.conftest import LoopThread, RunningGateway, SdkClients
from tests.scripted import PAUSE, ScriptedUpstream, scripted  # noqa: F401  (fixture)
from tests.spec_validation import validate
from tests.support import eventually

from octoroute.config import parse_config
from octoroute.demo.simulated import Mode, SimulatedUpstream
from octoroute.demo.slotted import SlottedUpstream
from octoroute.server.live import ReloadReport
from octoroute.server.state import LIVE

HELLO = [{"role": "user", "content": "hi there"}]


def one_group(*endpoints: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "models": {"fast": list(endpoints)},
        "routing": {"strategy": "rule"},
        "health": {"active": False, "discover": False, "failure_threshold": 1},
        **sections,
    }


def endpoint(ep_id: str, base_url: str, name: str = "m", **extra: Any) -> dict[str, Any]:
    return {"id": ep_id, "name": name, "base_url": base_url, **extra}


def reload(loop_thread: LoopThread, gw: RunningGateway, data: dict[str, Any]) -> ReloadReport:
    config = parse_config(data, {})
    return loop_thread.run(gw.app[LIVE].reload(config, {}))


def get_json(url: str, **headers: str) -> Any:
    response = urllib3.request("GET", url, headers=headers, timeout=10)
    return orjson.loads(response.data)


def metric(gw: RunningGateway, line_start: str) -> float:
    text = urllib3.request("GET", f"{gw.url}/metrics", timeout=10).data.decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in /metrics")


def test_a_stream_in_flight_finishes_on_the_old_upstream_while_new_requests_take_the_new_config(
    gateway: Callable[..., RunningGateway],
    scripted: Callable[..., ScriptedUpstream],  # noqa: F811
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
) -> None:
    old = scripted(lambda body: [{"content": "old upstream, "}, PAUSE, {"content": "start to end"}])
    new = scripted(lambda body: [{"content": "new upstream"}])
    gw = gateway(one_group(endpoint("a", old.base_url)))
    client = sdk_clients.openai(gw)

    stream = client.chat.completions.create(model="fast", messages=HELLO, stream=True)
    chunks = iter(stream)
    seen = []
    while not "".join(seen):  # up to the first content: the stream is past its commit point
        chunk = next(chunks)
        seen.append(chunk.choices[0].delta.content or "")
    loop_thread.run(old.paused.wait(), timeout=10)

    report = reload(loop_thread, gw, one_group(endpoint("b", new.base_url)))
    assert (report.result, report.generation, report.added, report.removed) == ("ok", 2, ("b",), ("a",))

    raw = client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.parse().choices[0].message.content == "new upstream"
    assert raw.headers["X-Octoroute-Endpoint"] == "b"
    validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))

    loop_thread.run(_set(old.resume))
    rest = list(chunks)
    for chunk in rest:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    text = "".join(seen) + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == "old upstream, start to end"
    assert rest[-1].choices[0].finish_reason == "stop"
    assert (len(old.requests), len(new.requests)) == (1, 1)

    health = get_json(f"{gw.url}/health", Accept="application/json")
    assert health["config"]["generation"] == 2
    assert health["config"]["hash"] == report.digest
    snapshot = get_json(f"{gw.url}/metrics.json")
    assert snapshot["config"] == health["config"]
    assert [e["id"] for e in snapshot["endpoints"]] == ["b"]
    assert metric(gw, 'octoroute_config_reloads_total{result="ok"}') == 1
    assert metric(gw, "octoroute_config_generation") == 2


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_unchanged_endpoints_keep_their_health_and_changed_ones_start_fresh(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
) -> None:
    broken, good, other = upstreams("broken"), upstreams("good"), upstreams("other")
    broken.behaviour.mode = Mode.ERROR_500
    before = one_group(
        endpoint("broken", broken.base_url, priority=2),
        endpoint("good", good.base_url, priority=1),
    )
    gw = gateway(before)
    client = sdk_clients.openai(gw)
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "good"  # after 'broken' failed once: now unhealthy
    board = gw.gateway.board
    assert not board.is_healthy("broken")
    assert board.get("good").total_successes == 1

    # 'broken' is the same server and model under a new id and weight; 'good' points elsewhere now
    after = one_group(
        endpoint("renamed", broken.base_url, priority=2, weight=3),
        endpoint("good", other.base_url, priority=1),
        endpoint("added", good.base_url, name="another-model", priority=0),
    )
    report = reload(loop_thread, gw, after)
    assert (set(report.kept), set(report.added)) == ({"renamed"}, {"good", "added"})
    board = gw.gateway.board
    carried = board.get("renamed")
    assert (carried.healthy, carried.total_failures) == (False, 1)
    assert "HTTP 500" in (carried.last_error or "")
    fresh = board.get("good")
    assert (fresh.healthy, fresh.total_successes, fresh.last_check_at) == (True, 0, None)

    rows = {row["id"]: row for row in get_json(f"{gw.url}/models")["endpoints"]}
    assert (rows["renamed"]["healthy"], rows["good"]["healthy"]) == (False, True)
    assert metric(gw, 'octoroute_endpoint_healthy{endpoint="renamed"}') == 0
    exposition = urllib3.request("GET", f"{gw.url}/metrics", timeout=10).data.decode()
    assert 'octoroute_endpoint_healthy{endpoint="broken"}' not in exposition  # gone with its endpoint
    assert 'octoroute_upstream_errors_total{endpoint="broken",error_type="http_5xx"} 1.0' in exposition  # kept

    # the unhealthy endpoint is still skipped: the answer comes from the fresh 'good' (now 'other')
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "good"
    assert (broken.count, other.count) == (1, 1)


def test_which_groups_serve_chat_follows_a_reload(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
) -> None:
    """What chat may name and where its fallback may go is worked out once per config:
    a reload that lets a group serve chat opens it to chat requests and to fallbacks."""
    broken, spare = upstreams("broken"), upstreams("spare")
    broken.behaviour.mode = Mode.ERROR_500

    def fleet(spare_serves: list[str]) -> dict[str, Any]:
        return {
            "models": {"fast": [endpoint("a", broken.base_url)], "spare": [endpoint("s", spare.base_url)]},
            "groups": {"spare": {"serves": spare_serves}},
            "fallback": {"fast": "spare"},
            "routing": {"strategy": "rule"},
            "health": {"active": False, "discover": False, "failure_threshold": 1},
            "retry": {"max_attempts": 3, "backoff_base_ms": 0},
        }

    gw = gateway(fleet(["embeddings"]))
    client = sdk_clients.openai(gw)
    for model in ("spare", "s"):  # the group and its endpoint
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=model, messages=HELLO)
        assert "serves chat" in refused.value.message
    with pytest.raises(openai.APIStatusError):  # 'a' fails; the fallback does not serve chat
        client.chat.completions.create(model="fast", messages=HELLO)
    assert (broken.count, spare.count) == (1, 0)

    reload(loop_thread, gw, fleet(["chat", "embeddings"]))
    raw = client.chat.completions.with_raw_response.create(model="spare", messages=HELLO)
    assert raw.headers["X-Octoroute-Endpoint"] == "s"
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
    assert (raw.headers["X-Octoroute-Tier"], raw.headers["X-Octoroute-Endpoint"]) == ("spare", "s")
    assert spare.count == 2


def test_a_group_filter_turned_on_and_off_by_a_reload_applies_from_the_next_request(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
) -> None:
    """Which groups filter answers is worked out once per config, like the rest."""
    up = upstreams("thinky")
    up.behaviour.reply_text = "<think>pondering</think>The answer is 4."
    gw = gateway(one_group(endpoint("a", up.base_url)))
    client = sdk_clients.openai(gw)

    def answer() -> str | None:
        return client.chat.completions.create(model="fast", messages=HELLO).choices[0].message.content

    assert answer() == "<think>pondering</think>The answer is 4."
    reload(loop_thread, gw, one_group(endpoint("a", up.base_url), groups={"fast": {"strip_think": True}}))
    assert answer() == "The answer is 4."
    reload(loop_thread, gw, one_group(endpoint("a", up.base_url)))
    assert answer() == "<think>pondering</think>The answer is 4."


def test_a_config_whose_topology_fails_is_refused_and_the_old_one_keeps_serving(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = upstreams("up")
    gw = gateway(one_group(endpoint("a", up.base_url)))
    live = gw.app[LIVE]
    with caplog.at_level("WARNING", logger="octoroute.config"):
        report = live.refuse(["models.fast[0].base_url: must start with http:// or https://"], "octoroute.toml")
    assert (report.result, report.generation) == ("refused", 1)
    assert "config reload refused: octoroute.toml has 1 problem(s); still serving generation 1" in caplog.text
    assert "models.fast[0].base_url" in caplog.text
    answer = sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HELLO)
    assert answer.choices[0].message.content
    assert up.count == 1
    assert metric(gw, 'octoroute_config_reloads_total{result="refused"}') == 1
    assert metric(gw, "octoroute_config_generation") == 1


def test_an_unchanged_config_is_not_rebuilt_and_restart_only_keys_keep_their_running_values(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
) -> None:
    up = upstreams("up")
    data = one_group(endpoint("a", up.base_url))
    gw = gateway(data)
    first = gw.gateway
    same = reload(loop_thread, gw, data)
    assert (same.result, same.changed, same.generation) == ("ok", False, 1)
    assert gw.gateway is first

    changed = one_group(
        endpoint("a", up.base_url, weight=2),
        server={"port": 4321, "max_body_bytes": 65536},
        observability={"log_format": "json"},
    )
    report = reload(loop_thread, gw, changed)
    assert report.needs_restart == ("server.port", "server.max_body_bytes", "observability.log_format")
    running = gw.gateway.config
    assert running.server.port == first.config.server.port
    assert running.observability.log_format == "human"
    assert gw.gateway.topology.endpoints["a"].weight == 2
    health = get_json(f"{gw.url}/health", Accept="application/json")
    assert health["config"]["needs_restart"] == ["server.port", "server.max_body_bytes", "observability.log_format"]


def test_slots_in_flight_are_counted_across_a_reload(
    gateway: Callable[..., RunningGateway],
    scripted: Callable[..., ScriptedUpstream],  # noqa: F811
    loop_thread: LoopThread,
    sdk_clients: SdkClients,
) -> None:
    up = scripted(lambda body: [{"content": "one "}, PAUSE, {"content": "two"}])
    data = one_group(endpoint("a", up.base_url, max_concurrency=1))
    gw = gateway(data)
    stream = iter(sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HELLO, stream=True))
    while not (next(stream).choices[0].delta.content or ""):
        pass
    loop_thread.run(up.paused.wait(), timeout=10)
    reload(loop_thread, gw, one_group(endpoint("a", up.base_url, max_concurrency=1, weight=2)))
    slots = gw.gateway.slots.board
    assert slots.in_flight("a") == 1  # the old config's stream holds the slot
    assert not slots.has_room("a")
    loop_thread.run(_set(up.resume))
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "two"
    eventually(lambda: slots.in_flight("a") == 0, what="the slot freed once the stream ended")


def test_removed_endpoints_stop_being_probed_and_new_ones_are_probed(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
) -> None:
    kept, removed, added = upstreams("kept"), upstreams("removed"), upstreams("added")
    probing = {"active": True, "discover": False, "check_interval_seconds": 0.05}
    gw = gateway(one_group(endpoint("kept", kept.base_url), endpoint("removed", removed.base_url), health=probing))
    loop_thread.run(removed.wait_requests("/v1/models", 1), timeout=10)  # probed while configured

    def probes(up: SimulatedUpstream) -> int:
        return sum(r.path == "/v1/models" for r in up.requests)

    reload(
        loop_thread,
        gw,
        one_group(endpoint("kept", kept.base_url), endpoint("added", added.base_url), health=probing),
    )
    loop_thread.run(kept.wait_requests("/v1/models", probes(kept) + 1), timeout=10)  # the new loop runs
    before = probes(removed)
    loop_thread.run(kept.wait_requests("/v1/models", probes(kept) + 3), timeout=10)
    loop_thread.run(added.wait_requests("/v1/models", 3), timeout=10)
    assert probes(removed) == before


def test_discovered_windows_and_slots_carry_over_and_new_endpoints_are_asked_before_serving(
    gateway: Callable[..., RunningGateway],
    slotted: Callable[..., SlottedUpstream],
    loop_thread: LoopThread,
) -> None:
    first, second = slotted("first", slots=2, n_ctx=8192), slotted("second", slots=3, n_ctx=4096)
    discovering = {"active": False, "discover": True}
    gw = gateway(one_group(endpoint("a", first.base_url), health=discovering))
    assert gw.gateway.context_info("a")["window"] == 8192
    assert gw.gateway.slots.board.capacity("a") == 2

    first.n_ctx = 1024  # what the server would say now: a carried endpoint is not asked again
    report = reload(
        loop_thread,
        gw,
        one_group(endpoint("a", first.base_url, weight=2), endpoint("b", second.base_url), health=discovering),
    )
    assert (report.kept, report.added) == (("a",), ("b",))
    rows = {row["id"]: row["context"] for row in get_json(f"{gw.url}/models")["endpoints"]}
    assert rows["a"] == {"window": 8192, "source": "discovered", "told_by": "llama_props", "total_slots": 2}
    assert rows["b"] == {"window": 4096, "source": "discovered", "told_by": "llama_props", "total_slots": 3}
    board = gw.gateway.slots.board
    assert (board.capacity("a"), board.capacity("b")) == (2, 3)
    assert metric(gw, 'octoroute_endpoint_slots{endpoint="a"}') == 2


def test_ready_keeps_its_verdict_across_a_reload_while_the_new_config_is_first_probed(
    gateway: Callable[..., RunningGateway],
    upstreams: Callable[[str], SimulatedUpstream],
    loop_thread: LoopThread,
) -> None:
    kept = upstreams("kept")
    silent = socket.socket()  # accepts connections (the backlog) and never answers a probe
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        probing = {"active": True, "discover": False, "check_interval_seconds": 60, "check_timeout_seconds": 5}
        gw = gateway(one_group(endpoint("kept", kept.base_url), health=probing))
        eventually(lambda: urllib3.request("GET", f"{gw.url}/ready", timeout=10).status == 200)

        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        reload(loop_thread, gw, one_group(endpoint("kept", kept.base_url), endpoint("new", silent_url), health=probing))
        # the new config's first probe round is still waiting on the silent server
        response = urllib3.request("GET", f"{gw.url}/ready", timeout=10)
        assert response.status == 200, response.data
        assert orjson.loads(response.data)["probe_rounds"] >= 1
    finally:
        silent.close()

"""Reloading a running `octoroute serve` (a real process): SIGHUP, --watch, a config
with problems refused while the old one serves, --workers, --demo."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.cli.test_cli import LISTENING, Server, octoroute, serve  # noqa: F401  (fixture)
from tests.conftest import LoopThread
from tests.scripted import PAUSE, ScriptedUpstream, scripted  # noqa: F401  (fixture)
from tests.support import free_port

from octoroute.demo.simulated import SimulatedUpstream

HELLO = [{"role": "user", "content": "hi there"}]
RELOADED = re.compile(r"config reloaded from .*: generation (\d+)")
REFUSED = re.compile(r"config reload refused: .* has (\d+) problem\(s\); still serving generation 1")


def config_text(port: int, base_url: str, extra: str = "") -> str:
    return (
        f"[server]\nport = {port}\n"
        f'[[models.fast]]\nid = "fast-1"\nname = "m"\nbase_url = "{base_url}"\n'
        '[routing]\nstrategy = "rule"\n[health]\nactive = false\ndiscover = false\n' + extra
    )


def replace(path: Path, text: str) -> None:
    """Write as editors and config tools do: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ask(port: int) -> str:
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
        raw.parse()
        return raw.headers["X-Octoroute-Endpoint"]


def health(port: int) -> Any:
    response = urllib3.request("GET", f"http://127.0.0.1:{port}/health", headers={"Accept": "application/json"})
    return orjson.loads(response.data)


def metrics(port: int) -> str:
    return urllib3.request("GET", f"http://127.0.0.1:{port}/metrics", timeout=10).data.decode()


def test_sighup_reloads_the_file_and_a_config_with_problems_is_refused_while_the_old_one_serves(
    serve: type[Server],  # noqa: F811
    tmp_path: Path,
    upstreams: Callable[[str], SimulatedUpstream],
) -> None:
    old, new = upstreams("old"), upstreams("new")
    port = free_port()
    path = tmp_path / "octoroute.toml"
    path.write_text(config_text(port, old.base_url))
    server = serve("--config", str(path))
    server.wait_for(LISTENING)
    ask(port)
    assert old.count == 1

    path.write_text(config_text(port, new.base_url, "[retry]\nmax_attempts = true\n"))
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for(REFUSED)
    server.wait_for(re.compile(r"retry\.max_attempts"))  # the problem, with its key path
    ask(port)
    assert (old.count, new.count) == (2, 0)
    assert 'octoroute_config_reloads_total{result="refused"} 1.0' in metrics(port)

    path.write_text(config_text(port, new.base_url))
    os.kill(server.proc.pid, signal.SIGHUP)
    assert server.wait_for(RELOADED)[0].group(1) == "2"
    ask(port)
    assert (old.count, new.count) == (2, 1)
    assert health(port)["config"]["generation"] == 2
    assert 'octoroute_config_reloads_total{result="ok"} 1.0' in metrics(port)
    assert server.stop() == 0


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_a_stream_in_flight_across_sighup_finishes_on_the_old_upstream(
    serve: type[Server],  # noqa: F811
    tmp_path: Path,
    scripted: Callable[..., ScriptedUpstream],  # noqa: F811
    loop_thread: LoopThread,
) -> None:
    old = scripted(lambda body: [{"content": "begun before, "}, PAUSE, {"content": "ended after"}])
    new = scripted(lambda body: [{"content": "new config"}])
    port = free_port()
    path = tmp_path / "octoroute.toml"
    path.write_text(config_text(port, old.base_url))
    server = serve("--config", str(path))
    server.wait_for(LISTENING)
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
        chunks = iter(client.chat.completions.create(model="fast", messages=HELLO, stream=True))
        text = ""
        while not text:
            text = next(chunks).choices[0].delta.content or ""
        loop_thread.run(old.paused.wait(), timeout=10)
        path.write_text(config_text(port, new.base_url))
        os.kill(server.proc.pid, signal.SIGHUP)
        server.wait_for(RELOADED)
        answer = client.chat.completions.create(model="fast", messages=HELLO)
        assert answer.choices[0].message.content == "new config"
        loop_thread.run(_set(old.resume))
        rest = list(chunks)
    text += "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == "begun before, ended after"
    assert rest[-1].choices[0].finish_reason == "stop"
    assert (len(old.requests), len(new.requests)) == (1, 1)
    assert server.stop() == 0


def test_watch_reloads_when_the_file_is_replaced(
    serve: type[Server],  # noqa: F811
    tmp_path: Path,
    upstreams: Callable[[str], SimulatedUpstream],
) -> None:
    old, new = upstreams("old"), upstreams("new")
    port = free_port()
    path = tmp_path / "octoroute.toml"
    path.write_text(config_text(port, old.base_url))
    server = serve("--config", str(path), "--watch", "--watch-interval", "0.1")
    server.wait_for(LISTENING)
    replace(path, config_text(port, new.base_url, "[observability]\nlog_format = 'json'\n"))
    assert server.wait_for(RELOADED)[0].group(1) == "2"
    server.wait_for(re.compile(r"observability\.log_format changed but needs a restart"))
    ask(port)
    assert (old.count, new.count) == (0, 1)
    assert health(port)["config"]["needs_restart"] == ["observability.log_format"]
    assert server.stop() == 0


def test_every_worker_reloads_on_sighup_to_the_server(
    serve: type[Server],  # noqa: F811
    tmp_path: Path,
    upstreams: Callable[[str], SimulatedUpstream],
) -> None:
    old, new = upstreams("old"), upstreams("new")
    port = free_port()
    path = tmp_path / "octoroute.toml"
    path.write_text(config_text(port, old.base_url))
    server = serve("--config", str(path), "--workers", "2")
    server.wait_for(LISTENING, count=2)
    path.write_text(config_text(port, new.base_url))
    os.kill(server.proc.pid, signal.SIGHUP)
    assert [m.group(1) for m in server.wait_for(RELOADED, count=2)] == ["2", "2"]
    for _ in range(8):  # whichever worker answers
        ask(port)
    assert (old.count, new.count) == (0, 8)
    assert 'octoroute_config_reloads_total{result="ok"} 2.0' in metrics(port)
    assert server.stop() == 0


def test_demo_has_no_file_to_reload(serve: type[Server]) -> None:  # noqa: F811
    server = serve("--demo", "--port", "0")
    port = int(server.wait_for(LISTENING)[0].group(2))
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for(re.compile(r"--demo generates its config at start and has no file to reload"))
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
        assert client.chat.completions.create(model="auto", messages=HELLO).choices[0].message.content
    assert server.stop() == 0
    refused = octoroute("serve", "--demo", "--watch")
    assert refused.returncode == 2
    assert "--watch needs a config file" in refused.stderr


def learned_config(port: int, fast_url: str, deep_url: str, weights: Path) -> str:
    return (
        f"[server]\nport = {port}\n"
        f'[[models.fast]]\nid = "fast-1"\nname = "m"\nbase_url = "{fast_url}"\n'
        f'[[models.deep]]\nid = "deep-1"\nname = "m"\nbase_url = "{deep_url}"\n'
        f"[routing]\nlearned_weights = {orjson.dumps(str(weights)).decode()}\n"
        "[health]\nactive = false\ndiscover = false\n"
    )


def weights_text(version: str, bias: float) -> str:
    """A weights file whose score is its bias: 0 is the bottom of the 0..4 reference, 10 beyond the top."""
    document = {
        "format": "octoroute-learned-scorer/1",
        "version": version,
        "bias": bias,
        "dense": [0.0] * 9,
        "dense_means": [0.0] * 9,
        "terms": {},
        "reference": [0.0, 1.0, 2.0, 3.0, 4.0],
    }
    return orjson.dumps(document).decode()


def tier_of(port: int) -> str:
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
        raw.parse()
        return raw.headers["X-Octoroute-Tier"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_watch_reloads_when_the_weights_file_is_retrained(
    serve: type[Server],  # noqa: F811
    tmp_path: Path,
    upstreams: Callable[[str], SimulatedUpstream],
    workers: str,
) -> None:
    port = free_port()
    weights = tmp_path / "weights.json"
    weights.write_text(weights_text("first", 0.0))
    path = tmp_path / "octoroute.toml"
    path.write_text(learned_config(port, upstreams("fast").base_url, upstreams("deep").base_url, weights))
    server = serve("--config", str(path), "--watch", "--watch-interval", "0.1", "--workers", workers)
    server.wait_for(LISTENING, count=int(workers))
    assert {tier_of(port) for _ in range(4)} == {"fast"}
    replace(weights, weights_text("retrained", 10.0))  # `octoroute train --force` renames over it, too
    assert [m.group(1) for m in server.wait_for(RELOADED, count=int(workers))] == ["2"] * int(workers)
    assert {tier_of(port) for _ in range(4)} == {"deep"}
    assert server.stop() == 0

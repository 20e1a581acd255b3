"""The `octoroute` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"(?:listening on|Gateway:)\s+(http://[\d.]+:(\d+))")


def octoroute(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "octoroute", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


class Server:
    """`octoroute serve ...` in a subprocess; waits for its 'listening' lines on stderr."""

    def __init__(self, *args: str, cwd: Path = REPO) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "octoroute", "serve", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200"},
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], count: int = 1, timeout: float = 30) -> list[re.Match[str]]:
        matches = []
        while len(matches) < count:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"server said nothing matching {pattern.pattern}; got:\n{''.join(self.seen)}"
                ) from None
            self.seen.append(line)
            if m := pattern.search(line):
                matches.append(m)
        return matches

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._pump_thread.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    servers: list[Server] = []

    class Tracked(Server):
        def __init__(self, *args: str, **kw: Path) -> None:
            super().__init__(*args, **kw)
            servers.append(self)

    yield Tracked
    for s in servers:
        if s.proc.poll() is None:
            s.stop()


# -- check -------------------------------------------------------------------


def test_check_accepts_a_good_file(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "rule"\n')
    result = octoroute("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_prints_every_problem_with_its_key_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[server]\nport = -1\n[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n'
        '[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\nweight = 0\ncolour = "red"\n'
    )
    result = octoroute("check", str(path))
    assert result.returncode == 1
    assert "server.port: must be >= 0" in result.stderr
    assert "models.fast[1].weight: must be > 0" in result.stderr
    assert "models.fast[1].colour: unknown key" in result.stderr
    assert "3 problem(s)" in result.stderr


def test_check_reports_unreadable_and_invalid_toml(tmp_path):
    assert octoroute("check", str(tmp_path / "missing.toml")).returncode == 1
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = 1")
    result = octoroute("check", str(broken))
    assert result.returncode == 1
    assert "not valid TOML" in result.stderr


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_pass_check(example):
    result = octoroute("check", str(example), env={"VLLM_API_KEY": "dummy", "OPENROUTER_API_KEY": "dummy"})
    assert result.returncode == 0, result.stderr


# -- route -------------------------------------------------------------------


RULE_CONFIG = (
    '[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n'
    '[[models.balanced]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n'
    '[[models.deep]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "rule"\n'
)


@pytest.fixture
def rule_config(tmp_path: Path) -> str:
    path = tmp_path / "rule.toml"
    path.write_text(RULE_CONFIG)
    return str(path)


def test_route_explains_a_decision_without_calling_a_model(rule_config):
    result = octoroute("route", "Fix this:\n```py\ndef f():\n    return 1\n```", "--config", rule_config)
    assert result.returncode == 0, result.stderr
    assert re.search(r"tier\s+balanced", result.stdout)
    assert "rule_code" in result.stdout
    assert re.search(r"task_type\s+code", result.stdout)
    assert re.search(r"token_estimate\s+\d+", result.stdout)


def test_route_honours_hints(rule_config):
    result = octoroute(
        "route", "hello", "--importance", "high", "--task-type", "question_answer", "--config", rule_config
    )
    assert re.search(r"tier\s+deep", result.stdout)
    assert "rule_high_importance" in result.stdout


def test_route_maps_a_missing_tier_to_the_default_like_serve(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(
        '[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n'
        '[[models.balanced]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "rule"\n'
    )
    result = octoroute("route", "Write a poem about the sea", "--config", str(path))
    assert re.search(r"tier\s+balanced", result.stdout)
    assert "default_tier (deep has no endpoints" in result.stdout


def test_route_says_when_the_llm_would_decide(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "hybrid"\n')
    result = octoroute("route", "What is the capital of France?", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "LLM router" in result.stdout


def test_check_and_route_for_the_tool_strategy(tmp_path):
    path = tmp_path / "tool.toml"
    path.write_text(
        '[[models.fast]]\nname = "qwen2.5-1.5b-instruct"\nbase_url = "http://localhost:1/v1"\n'
        '[[models.deep]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "tool"\n'
    )
    checked = octoroute("check", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "strategy tool" in checked.stdout
    result = octoroute("route", "What is the capital of France?", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert re.search(r"tier\s+decided by a call to route_request on 'fast'", result.stdout)
    assert re.search(r"strategy\s+tool", result.stdout)
    assert "if it fails: the rules, then the default tier 'fast'" in result.stdout
    assert "warning" not in checked.stdout  # qwen2.5 calls tools
    path.write_text(path.read_text().replace("qwen2.5-1.5b-instruct", "smollm2-360m"))
    warned = octoroute("check", str(path))
    assert warned.returncode == 0
    assert (
        "warning strategy tool: router tier 'fast' endpoint(s) fast/smollm2-360m (smollm2-360m) cannot call tools "
        'by the capability table, so they are never asked; if the model can, set [capabilities."<model>"] tools = true'
    ) in " ".join(warned.stdout.split())
    # serve would ask no model, so route shows the fallback itself
    unasked = octoroute("route", "What is the capital of France?", "--config", str(path))
    assert re.search(r"tier\s+fast\s*\n", unasked.stdout)
    assert "tool_failed_fallback_default (tool call tools_unsupported; no rule matched; default tier fast)" in (
        unasked.stdout
    )
    path.write_text(path.read_text().replace('[[models.fast]]\nname = "smollm2-360m"', '[[models.x]]\nname = "m"'))
    missing = octoroute("check", str(path))
    assert missing.returncode == 1
    assert "routing.router_tier: 'fast' has no endpoints under [models]" in missing.stdout + missing.stderr


# -- serve -------------------------------------------------------------------


def test_demo_answers_through_the_official_sdk(serve):
    server = serve("--demo", "--port", "0")
    url = server.wait_for(LISTENING)[0].group(1)
    banner = "".join(server.seen)
    assert "DEMO" in "".join(server.seen) or "DEMO" in banner
    with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, _strict_response_validation=True) as client:
        models = [m.id for m in client.models.list()]
        assert {"auto", "fast", "balanced", "deep", "sim-flaky"} <= set(models)
        for _ in range(6):  # the flaky endpoint fails about half the time: every request must still succeed
            raw = client.chat.completions.with_raw_response.create(
                model="fast", messages=[{"role": "user", "content": "hi"}]
            )
            assert "simulated" in (raw.parse().choices[0].message.content or "")
        stream = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hello there"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert server.stop() == 0


ACCESS_404 = re.compile(r"octoroute\.access .*route=/v1/chat/completions model=(.*) status=404")
# C0 and C1 controls, DEL, U+2028/9: what a terminal or a line-based reader acts on
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def test_a_client_cannot_forge_log_lines_or_send_terminal_escapes(serve):
    server = serve("--demo", "--port", "0")
    port = int(server.wait_for(LISTENING)[0].group(2))
    model = "m\x00\x1b[2J\x1b]0;owned\x07\u009b31m\u2028\r\n2026-01-01 00:00:00,000 INFO  octoroute.access forged=1"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert (reply.status, json.loads(reply.read())["error"]["code"]) == (404, "model_not_found")
    conn.close()
    line = server.wait_for(ACCESS_404)[0]
    assert not CONTROL.search(line.string.rstrip("\n")), repr(line.string)
    logged = line.group(1)
    assert logged.startswith('"m\\u0000\\u001b[2J'), logged  # one quoted value, to the forged part's end
    assert logged.endswith('forged=1"'), logged
    assert json.loads(logged.replace("\\x9b", "\\u009b").replace("\\u2028", "\u2028")) == model
    assert server.stop() == 0
    assert not any(line.startswith("2026-01-01") for line in server.seen)


def test_serve_refuses_a_bad_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[models.fast]]\nname = "m"\nbase_url = "nope"\n')
    result = subprocess.run(
        [sys.executable, "-m", "octoroute", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "models.fast[0].base_url" in result.stderr


def test_serve_without_config_points_at_the_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "octoroute", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "--demo" in result.stderr


def test_workers_shut_down_cleanly_however_many_terms_they_get(serve, tmp_path):
    """A worker gets SIGTERM from its supervisor and, with `kill -TERM -PGID` or
    systemd's control-group kill, directly too; repeated ones during shutdown must
    not kill it with the default action (which made the server exit 1)."""
    port = free_port()
    config = tmp_path / "w.toml"
    config.write_text(
        f'[server]\nport = {port}\n[[models.fast]]\nname = "fast"\nbase_url = "http://127.0.0.1:1/v1"\n'
        '[routing]\nstrategy = "rule"\n[health]\nactive = false\n'
    )
    server = serve("--config", str(config), "--workers", "2")
    server.wait_for(LISTENING, count=2)
    workers = {int(m) for m in re.findall(r"pid (\d+)", "".join(server.seen))}
    assert len(workers) == 2
    os.killpg(server.proc.pid, signal.SIGTERM)
    while server.proc.poll() is None:  # keep signalling every worker until the server has exited
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    code = server.stop()
    said = []
    while not server.lines.empty():
        said.append(server.lines.get())
    assert code == 0, "".join(said)


def test_several_workers_share_the_port(serve, tmp_path):
    upstream = serve("--demo", "--port", "0")  # a running demo gateway doubles as an OpenAI upstream here
    upstream_url = upstream.wait_for(LISTENING)[0].group(1)
    port = free_port()
    config = tmp_path / "w.toml"
    config.write_text(
        f'[server]\nport = {port}\n[[models.fast]]\nname = "fast"\nbase_url = "{upstream_url}/v1"\n'
        '[routing]\nstrategy = "rule"\n[health]\nactive = false\n'
    )
    server = serve("--config", str(config), "--workers", "2")
    matches = server.wait_for(LISTENING, count=2)
    pids = {int(m) for m in re.findall(r"pid (\d+)", "".join(server.seen))}
    assert len(pids) == 2
    assert all(m.group(2) == str(port) for m in matches)
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as client:
        for _ in range(10):
            client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert server.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

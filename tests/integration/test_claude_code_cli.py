"""The real Claude Code CLI (npm `@anthropic-ai/claude-code`, pinned in
scripts/claude-code.sh, installed by `make claude-code`, which `make test` runs)
against the gateway, offline, with a scripted OpenAI-compatible upstream.

Each run is bounded: the CLI runs in its own process group with a timeout, and
the whole group is killed if it does not finish. Its environment points every
request at the gateway on loopback: a fresh HOME, the telemetry, update and
error-report switches off, and a proxy on a closed loopback port for anything
that would leave the machine anyway.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import orjson
from tests.scripted import Delta, scripted  # noqa: F401  (fixture)
from tests.support import fleet_config, run_in_own_session

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / ".tools" / "claude-code" / "node_modules" / ".bin" / "claude"
RUN_SECONDS = 180
ASK = "Create a file named hello.txt containing exactly `hello from claude code` with the Write tool, then reply DONE."


def run_claude(gateway_url: str, cwd: Path, home: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    assert CLAUDE.exists(), f"{CLAUDE} is missing: run `make claude-code` (make test does)"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway_url,
        "ANTHROPIC_API_KEY": "sk-octoroute-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [str(CLAUDE), "-p", prompt, "--model", "claude-sonnet-4-5", "--allowedTools", "Write"]
    return run_in_own_session(command, RUN_SECONDS, cwd=cwd, env=env)  # killed with all it started on overrun


def write_then_done(target: Path) -> Any:
    """The agent loop of a coding model: reason, call Write, and after the tool result, answer."""

    def answer(body: dict[str, Any]) -> list[Delta]:
        if body["messages"][-1]["role"] == "tool":
            return [{"reasoning_content": "The file is written."}, {"content": "DONE"}]
        if not body.get("tools"):
            return [{"content": "ok"}]  # anything else the CLI asks on the side
        arguments = orjson.dumps({"file_path": str(target), "content": "hello from claude code\n"}).decode()
        call = {"index": 0, "id": "Yq3kT0", "type": "function", "function": {"name": "Write", "arguments": ""}}
        return [
            {"reasoning_content": "The user wants hello.txt; "},
            {"reasoning_content": "the Write tool does that."},
            {"content": "I'll create hello.txt."},
            {"tool_calls": [call]},
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:20]}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[20:]}}]},
        ]

    return answer


def test_claude_code_writes_a_file_through_the_gateway(scripted, gateway, tmp_path):  # noqa: F811
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    upstream = scripted(write_then_done(work / "hello.txt"))
    gw = gateway(
        fleet_config({"fast": [{"name": "coder", "base_url": upstream.base_url}]}, aliases={"claude-*": "fast"})
    )

    result = run_claude(gw.url, work, home, ASK)

    assert result.returncode == 0, result.stderr[-2000:]
    assert (work / "hello.txt").read_text() == "hello from claude code\n"
    assert "DONE" in result.stdout
    turns = [seen for seen in upstream.requests if seen.body.get("tools")]
    assert len(turns) == 2  # the tool call, then the answer after its result
    first, second = (t.body["messages"] for t in turns)
    assert second[: len(first)] == first  # turn 2 starts with turn 1's prompt: the server's cache still matches
    assert next(m for m in second if m["role"] == "tool")["tool_call_id"] == "Yq3kT0"
    # its thinking block (text omitted, as Claude Code asks) came back, and the server gets its reasoning back
    assert next(m for m in second if m["role"] == "assistant")["reasoning_content"] == (
        "The user wants hello.txt; the Write tool does that."
    )
    assert turns[0].body["reasoning_effort"] == "high"  # its adaptive thinking at effort "high", mapped
    for seen in upstream.requests:
        assert not [k for k in seen.headers if k.lower().startswith("anthropic-")]
        assert seen.body["stream"] is True


def test_claude_code_is_escalated_past_a_server_its_prompt_does_not_fit(scripted, gateway, tmp_path):  # noqa: F811
    """Issue 10's first complaint, end to end: the agent's first request is larger than the
    preferred server's context; its exceed_context_size_error sends the request on to the
    larger server instead of reaching the agent, and later turns skip the small one."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    small = scripted(write_then_done(work / "hello.txt"), n_ctx=4096)
    big = scripted(write_then_done(work / "hello.txt"))
    gw = gateway(
        fleet_config(
            {
                "fast": [
                    {"name": "tiny-local", "base_url": small.base_url, "id": "small", "priority": 2},
                    {"name": "roomy-local", "base_url": big.base_url, "id": "big", "priority": 1},
                ]
            },
            aliases={"claude-*": "fast"},
        )
    )

    result = run_claude(gw.url, work, home, ASK)

    assert result.returncode == 0, result.stderr[-2000:]
    assert (work / "hello.txt").read_text() == "hello from claude code\n"
    assert "DONE" in result.stdout
    assert len([seen for seen in small.requests if seen.body.get("tools")]) == 1  # refused once, then skipped
    assert len([seen for seen in big.requests if seen.body.get("tools")]) == 2
    rows = {row["id"]: row for row in orjson.loads(urlopen(f"{gw.url}/models").read())["endpoints"]}
    assert rows["small"]["healthy"] is True
    assert rows["small"]["context"]["window"] == 4096
    assert rows["small"]["context"]["told_by"] == "overflow_error"

"""The real Codex CLI (npm `@openai/codex`, pinned in scripts/codex.sh, installed by
`make codex`, which `make test` runs) against the gateway's Responses API, offline,
with a scripted chat completions upstream behind it.

Codex gets the config of ../shared/data/codex/config.toml (a custom provider with
`wire_api = "responses"`, update checks, plugins, analytics, feedback and
telemetry off) in a throwaway CODEX_HOME and HOME, and a proxy on a closed
loopback port for anything that would leave the machine anyway. Each run is
bounded: Codex runs in its own process group with a timeout, and the whole group
is killed if it does not finish.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
from tests.integration.llama import LlamaFleet
from tests.scripted import Delta, scripted  # noqa: F401  (fixture)
from tests.support import fleet_config, run_in_own_session

ROOT = Path(__file__).resolve().parents[2]
CODEX = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
RUN_SECONDS = 180
COMMAND = "echo hi > hello.txt"


def codex_config(base_url: str, sandbox: str) -> str:
    """../shared/data/codex/config.toml with the gateway's address and the sandbox mode."""
    return f"""\
model_provider = "octoroute"
model = "auto"
approval_policy = "never"
sandbox_mode = "{sandbox}"
check_for_update_on_startup = false

[model_providers.octoroute]
name = "octoroute"
base_url = "{base_url}"
env_key = "OCTOROUTE_KEY"
wire_api = "responses"

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false

[features]
plugins = false
remote_plugin = false
"""


# For a small local model: Codex's own ~19 KB system prompt replaced by a short one, and the
# optional tool families off, so prompt and tools take ~6,000 tokens instead of ~30,000.
SMALL_PROMPT = "You are a coding agent in a terminal. Answer briefly.\n"
SMALL_FEATURES = ("multi_agent", "goals", "apps", "memories", "collaboration_modes")


def run_codex(
    base_url: str, cwd: Path, home: Path, prompt: str, sandbox: str, *, small: bool = False
) -> subprocess.CompletedProcess[str]:
    assert CODEX.exists(), f"{CODEX} is missing: run `make codex` (make test does)"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    config = codex_config(base_url, sandbox)
    if small:
        instructions = codex_home / "instructions.md"
        instructions.write_text(SMALL_PROMPT)
        top = f'model_instructions_file = "{instructions}"\n'
        config = top + config + "".join(f"{name} = false\n" for name in SMALL_FEATURES)
    (codex_home / "config.toml").write_text(config)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "OCTOROUTE_KEY": "sk-octoroute-test",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "ALL_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [str(CODEX), "exec", "--skip-git-repo-check", prompt]
    return run_in_own_session(command, RUN_SECONDS, cwd=cwd, env=env)  # killed with all it started on overrun


def exec_then_done(body: dict[str, Any]) -> list[Delta]:
    """A coding model's turn: call exec_command, and after its output, answer."""
    if body["messages"][-1]["role"] == "tool":
        return [{"content": "Done."}]
    arguments = orjson.dumps({"cmd": COMMAND}).decode()
    call = {"index": 0, "id": "call_codex_1", "type": "function", "function": {"name": "exec_command", "arguments": ""}}
    return [
        {"tool_calls": [call]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:9]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[9:]}}]},
    ]


def test_codex_runs_a_tool_turn_through_the_gateway(scripted, gateway, tmp_path):  # noqa: F811
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    upstream = scripted(exec_then_done)
    gw = gateway(fleet_config({"fast": [{"name": "qwen2.5-coder-7b", "base_url": upstream.base_url}]}))

    result = run_codex(gw.base_url, work, home, "Create hello.txt containing hi", "workspace-write")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "hello.txt").read_text() == "hi\n"
    assert "Done." in result.stdout
    assert len(upstream.requests) == 2  # the tool call, then the answer after its output
    first, second = (seen.body for seen in upstream.requests)
    assert first["stream"] is True
    assert first["messages"][0]["role"] == "system"  # Codex's developer messages, as one system message
    assert "exec_command" in [t["function"]["name"] for t in first["tools"]]
    assert second["messages"][: len(first["messages"])] == first["messages"]  # the history re-sent as it was
    tool = second["messages"][-1]
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "call_codex_1"


def test_codex_gets_an_answer_from_a_real_llama_server(llama_fleet: LlamaFleet, gateway, tmp_path):
    """The real llama.cpp server with the toolcaller model (random weights, real protocol
    and chat template) behind the gateway, its context widened to hold an agent's prompt.
    With `tool_choice: "auto"` the model ends its answer at once (an empty message, by its
    design); Codex reads the completed response with llama-server's usage and exits 0.
    (The tiny model never ends by itself within a few tokens, and Codex exits 1 on the
    `incomplete` response that a length stop correctly becomes.)"""
    model = "toolcaller"
    server = llama_fleet.get(model, ctx=16384)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    endpoint = {"name": model, "base_url": server.base_url, "id": "llama", "max_tokens": 24}
    gw = gateway(fleet_config({"fast": [endpoint]}))

    result = run_codex(gw.base_url, work, home, "Say hello", "read-only", small=True)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokens used" in result.stderr  # Codex read response.completed and its usage
    used = int(result.stderr.split("tokens used")[-1].split()[0].replace(",", ""))
    assert used > 1000  # llama-server's own count of Codex's prompt, carried into the response's usage

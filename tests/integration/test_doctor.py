"""`octoroute doctor` against servers answering like Ollama, llama.cpp and vLLM
(tests/local_servers.py): each problem kind found, with its fix, and the exit status."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from tests.local_servers import Kind, Model

from octoroute.cli.doctor import run_doctor

QWEN = Model("qwen2.5:3b", 3.1e9, 1_929_912_432)
LLAMA_8B = Model("Meta-Llama-3.1-8B-Instruct-Q4_K_M", 8.03e9, 4_920_734_016)
VLLM_MODEL = Model("Qwen/Qwen2.5-14B-Instruct")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, endpoints: dict[str, list[dict[str, Any]]], extra: str = "") -> Path:
    lines = ['[routing]\nstrategy = "rule"\n']
    for group, eps in endpoints.items():
        for ep in eps:
            lines.append(f"[[models.{group}]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in ep.items()]
            lines.append("")
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def doctor(path: Path, env: dict[str, str] | None = None, width: int = 240) -> tuple[int, str]:
    """Exit status and output; wide by default so that details are matched on one line."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    code = run_doctor(path, env or {}, 10.0, console)
    return code, buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the .env checks look in the current directory too


@pytest.fixture
def three(local_server):
    """One healthy server of each kind."""
    return (
        local_server(Kind.OLLAMA, [QWEN]),
        local_server(Kind.LLAMA, [LLAMA_8B], context=8192, slots=4),
        local_server(Kind.VLLM, [VLLM_MODEL], context=32768),
    )


def test_a_healthy_fleet_passes_with_every_check_shown(three, tmp_path):
    ollama, llama, vllm = three
    path = write_config(
        tmp_path / "octoroute.toml",
        {
            "fast": [{"name": QWEN.name, "base_url": ollama.base_url}],
            "balanced": [{"name": LLAMA_8B.name, "base_url": llama.base_url}],
            "deep": [{"name": VLLM_MODEL.name, "base_url": vllm.base_url}],
        },
    )
    code, text = doctor(path)
    assert code == 0, text
    assert "FAIL" not in text
    assert "Ollama answered" in text
    assert "llama.cpp answered" in text
    assert "vLLM answered" in text
    assert "4,096 tokens (ollama_show)" in text
    assert "8,192 tokens, 4 slot(s) (llama_props)" in text
    assert "32,768 tokens (vllm_models)" in text
    for check in ("reachable", "base_url", "model", "chat", "stream", "tools", "context", "bind"):
        assert check in text
    assert "3 endpoint(s): 0 problem(s)" in text
    # the probes really ran: a chat, a stream and a forced tool call on each
    assert ollama.requests.count("POST /v1/chat/completions") == 3
    assert "POST /api/show" in ollama.requests
    assert "GET /props" in llama.requests
    code, narrow = doctor(path, width=80)
    assert code == 0
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert "8,192 tokens, 4 slot(s)" in narrow  # still readable: wrapped, not cut


def test_a_base_url_without_v1_is_found_and_the_fix_given(local_server, tmp_path):
    ollama = local_server(Kind.OLLAMA, [QWEN])
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": QWEN.name, "base_url": ollama.url}]})
    code, text = doctor(path)
    assert code == 1
    assert f"{ollama.url}/models answered HTTP 404" in text
    assert f'base_url = "{ollama.base_url}"' in text
    assert "# in models.fast[0]" in text
    assert "chat" in text
    assert "tools" in text


def test_an_unknown_model_is_named_with_the_closest_one_the_server_has(local_server, tmp_path):
    vllm = local_server(Kind.VLLM, [VLLM_MODEL, Model("Qwen/Qwen2.5-7B-Instruct")])
    path = write_config(tmp_path / "c.toml", {"deep": [{"name": "Qwen2.5-14B", "base_url": vllm.base_url}]})
    code, text = doctor(path)
    assert code == 1
    assert "'Qwen2.5-14B' is not among the server's models" in text
    assert 'name = "Qwen/Qwen2.5-14B-Instruct"' in text
    assert "does not exist" in text  # the chat's own 404, from the server


def test_llama_cpp_answering_any_name_is_a_warning_not_a_failure(local_server, tmp_path):
    llama = local_server(Kind.LLAMA, [LLAMA_8B])
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": "whatever", "base_url": llama.base_url}]})
    code, text = doctor(path)
    assert code == 0, text
    assert "llama.cpp answers any name" in text
    assert f'name = "{LLAMA_8B.name}"' in text


@pytest.mark.parametrize("kind", [Kind.OLLAMA, Kind.LLAMA, Kind.VLLM])
def test_a_server_that_cannot_call_tools_gets_the_capability_fix(kind, local_server, tmp_path):
    server = local_server(kind, [QWEN], tools=False)
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": QWEN.name, "base_url": server.base_url}]})
    code, text = doctor(path)
    assert code == 1
    assert "tools" in text
    assert '[capabilities."qwen2.5:3b"]' in text
    assert "tools = false" in text
    expected = {
        Kind.OLLAMA: "does not support tools",
        Kind.LLAMA: "without a tool call",
        Kind.VLLM: "enable-auto-tool-choice",
    }[kind]
    assert expected in text
    if kind is Kind.LLAMA:
        assert "--jinja" in text


def test_a_server_that_does_not_stream_fails_the_stream_check(local_server, tmp_path):
    server = local_server(Kind.VLLM, [VLLM_MODEL], streams=False)
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": VLLM_MODEL.name, "base_url": server.base_url}]})
    code, text = doctor(path)
    assert code == 1
    assert "not server-sent events" in text


def test_a_refused_key_asks_for_api_key_env_then_passes_with_it(local_server, tmp_path):
    server = local_server(Kind.VLLM, [VLLM_MODEL], api_key="sk-local-123")
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": VLLM_MODEL.name, "base_url": server.base_url}]})
    code, text = doctor(path)
    assert code == 1
    assert "wants an API key" in text
    assert 'api_key_env = "UPSTREAM_API_KEY"' in text

    keyed = write_config(
        tmp_path / "k.toml",
        {"fast": [{"name": VLLM_MODEL.name, "base_url": server.base_url, "api_key_env": "VLLM_KEY"}]},
    )
    code, text = doctor(keyed, {"VLLM_KEY": "sk-wrong"})
    assert code == 1
    assert "refused the key in $VLLM_KEY" in text
    code, text = doctor(keyed, {"VLLM_KEY": "sk-local-123"})
    assert code == 0, text
    assert "VLLM_KEY is set" in text


def test_an_unset_key_variable_is_reported_and_the_endpoint_still_probed(local_server, tmp_path):
    server = local_server(Kind.OLLAMA, [QWEN])
    path = write_config(
        tmp_path / "c.toml", {"fast": [{"name": QWEN.name, "base_url": server.base_url, "api_key_env": "OLLAMA_KEY"}]}
    )
    code, text = doctor(path)
    assert code == 1
    assert "OLLAMA_KEY is not set (models.fast[0].api_key_env)" in text
    assert "export OLLAMA_KEY=<the key>" in text
    assert "POST /v1/chat/completions" in server.requests


def test_an_unreachable_endpoint_fails_and_says_where_to_point(local_server, tmp_path):
    ollama = local_server(Kind.OLLAMA, [QWEN])
    port = closed_port()
    path = write_config(
        tmp_path / "c.toml",
        {
            "fast": [{"name": QWEN.name, "base_url": ollama.base_url}],
            "deep": [{"name": "big", "base_url": f"http://127.0.0.1:{port}/v1"}],
        },
    )
    code, text = doctor(path)
    assert code == 1
    assert f"cannot connect to http://127.0.0.1:{port}/v1" in text
    assert "# start the server, or in models.deep[0] say where it listens" in text
    assert "2 endpoint(s): 1 problem(s)" in text


def test_a_context_window_larger_than_the_server_s_is_a_problem(local_server, tmp_path):
    llama = local_server(Kind.LLAMA, [LLAMA_8B], context=4096)
    path = write_config(
        tmp_path / "c.toml",
        {"fast": [{"name": LLAMA_8B.name, "base_url": llama.base_url, "context_window": 32768}]},
    )
    code, text = doctor(path)
    assert code == 1
    assert "config says 32,768 but server 4,096 tokens" in text
    assert "context_window = 4096" in text


# -- environment --------------------------------------------------------------------------


@pytest.fixture
def one_ok(local_server, tmp_path):
    server = local_server(Kind.OLLAMA, [QWEN])
    return lambda extra="": write_config(
        tmp_path / "c.toml", {"fast": [{"name": QWEN.name, "base_url": server.base_url}]}, extra
    )


def test_a_dotenv_open_to_others_is_a_problem_until_chmod_600(one_ok, tmp_path):
    path = one_ok()
    dotenv = tmp_path / ".env"
    dotenv.write_text("OLLAMA_KEY=x\n")
    dotenv.chmod(0o644)
    code, text = doctor(path)
    assert code == 1
    assert "is open to group or others (mode 0644)" in text
    assert f"chmod 600 {dotenv}" in text
    dotenv.chmod(0o600)
    code, text = doctor(path)
    assert code == 0, text
    assert "readable by its owner only" in text


def test_a_dotenv_tracked_by_git_is_a_problem(one_ok, tmp_path):
    git = shutil.which("git")
    assert git is not None, "git is needed for this check (Debian package git)"
    path = one_ok()
    dotenv = tmp_path / ".env"
    dotenv.write_text("OLLAMA_KEY=x\n")
    dotenv.chmod(0o600)
    quiet = {"capture_output": True, "check": True, "cwd": tmp_path}
    subprocess.run([git, "init", "-q"], **quiet)  # type: ignore[call-overload]
    subprocess.run([git, "add", ".env"], **quiet)  # type: ignore[call-overload]
    code, text = doctor(path)
    assert code == 1
    assert f"{dotenv} is tracked by git" in text
    assert "git rm --cached .env" in text


def test_binding_beyond_loopback_without_auth_is_a_problem(one_ok):
    code, text = doctor(one_ok('[server]\nhost = "0.0.0.0"\n'))
    assert code == 1
    assert "0.0.0.0 reaches beyond loopback without [auth]" in text
    assert 'host = "127.0.0.1"' in text
    assert "enabled = true" in text

    authed = '[server]\nhost = "0.0.0.0"\n[auth]\nenabled = true\n[[auth.keys]]\nname = "ci"\nkey_env = "CI_KEY"\n'
    code, text = doctor(one_ok(authed), {"CI_KEY": "sk-client-key-1"})
    assert code == 0, text
    assert "0.0.0.0 reaches beyond loopback; [auth] is on" in text


def test_a_config_with_problems_is_listed_and_nothing_probed(local_server, tmp_path):
    server = local_server(Kind.OLLAMA, [QWEN])
    path = write_config(tmp_path / "c.toml", {"fast": [{"name": QWEN.name, "base_url": server.base_url, "wieght": 2}]})
    code, text = doctor(path)
    assert code == 1
    assert "fix these first" in text
    assert "wieght" in text
    assert server.requests == []


# -- as a user runs it -------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "octoroute", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )


def test_the_command_exits_0_when_all_is_well_and_1_otherwise(local_server, tmp_path):
    llama = local_server(Kind.LLAMA, [LLAMA_8B])
    good = write_config(tmp_path / "octoroute.toml", {"fast": [{"name": LLAMA_8B.name, "base_url": llama.base_url}]})
    ok = _cli("doctor", cwd=tmp_path)  # ./octoroute.toml by default
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 endpoint(s): 0 problem(s)" in ok.stdout
    bad = write_config(
        tmp_path / "bad.toml", {"fast": [{"name": LLAMA_8B.name, "base_url": f"http://127.0.0.1:{closed_port()}/v1"}]}
    )
    failed = _cli("doctor", "--config", str(bad), "--timeout", "5", cwd=tmp_path)
    assert failed.returncode == 1
    assert "cannot connect" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert good.exists()


def test_an_anthropic_kind_endpoint_is_probed_through_the_messages_api(upstreams, tmp_path):
    native = upstreams("native")
    path = write_config(
        tmp_path / "c.toml", {"deep": [{"name": "claude-local", "base_url": native.base_url, "kind": "anthropic"}]}
    )
    code, text = doctor(path)
    assert code == 0, text
    assert "Anthropic answered" in text
    assert [r.path for r in native.requests].count("/v1/messages") == 3
    assert "tool_use" not in text  # the forced call came back as a tool_use block: no complaint


def test_each_fix_names_the_key_path_of_its_endpoint(local_server, tmp_path):
    ollama = local_server(Kind.OLLAMA, [QWEN])
    path = write_config(
        tmp_path / "c.toml",
        {
            "fast": [
                {"name": QWEN.name, "base_url": ollama.base_url},
                {"name": QWEN.name, "base_url": ollama.url, "id": "second"},
            ]
        },
    )
    code, text = doctor(path)
    assert code == 1
    assert f'# in models.fast[1]\n    base_url = "{ollama.base_url}"' in text
    assert "models.fast[0]" not in text

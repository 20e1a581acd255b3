"""`octoroute init` against servers answering like Ollama, llama.cpp and vLLM on
ephemeral loopback ports (never the real default ports: `--no-default-ports`)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.local_servers import Kind, Model

from octoroute.cli.init import run_init
from octoroute.config import load_config
from octoroute.upstream.scan import DEFAULT_PORTS


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init(*ports: int, output: Path | None = None, force: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_init(list(ports), output, force, out, err, default_ports=False)
    return code, out.getvalue(), err.getvalue()


def tiers(text: str) -> dict[str, list[tuple[str, str]]]:
    models = tomllib.loads(text)["models"]
    return {tier: [(ep["name"], ep["base_url"]) for ep in eps] for tier, eps in models.items()}


def test_the_default_ports_are_the_servers_own_defaults():
    assert DEFAULT_PORTS == (11434, 1234, 8080, 8000)  # Ollama, LM Studio, llama-server, vLLM


def test_servers_found_models_tiered_by_size_and_the_config_passes_check(local_server, tmp_path):
    ollama = local_server(
        Kind.OLLAMA,
        [
            Model("qwen2.5:3b", 3.1e9, 1_929_912_432),
            Model("llama3.1:70b", 70.6e9, 42_520_413_916),
            Model("nomic-embed-text:latest", 137e6, 274_302_450),
        ],
    )
    llama = local_server(Kind.LLAMA, [Model("Meta-Llama-3.1-8B-Instruct-Q4_K_M", 8.03e9, 4_920_734_016)])
    vllm = local_server(Kind.VLLM, [Model("Qwen/Qwen2.5-14B-Instruct")])  # vLLM reports no size: read from the name
    path = tmp_path / "octoroute.toml"
    code, out, err = init(ollama.port, llama.port, vllm.port, closed_port(), output=path)
    assert code == 0, err
    assert out == ""
    text = path.read_text()
    assert tiers(text) == {
        "fast": [("qwen2.5:3b", ollama.base_url)],
        "balanced": [
            ("Meta-Llama-3.1-8B-Instruct-Q4_K_M", llama.base_url),
            ("Qwen/Qwen2.5-14B-Instruct", vllm.base_url),
        ],
        "deep": [("llama3.1:70b", ollama.base_url)],
    }
    assert "# qwen2.5:3b on Ollama: 3.1B parameters, 1.9 GB" in text
    assert "# Qwen/Qwen2.5-14B-Instruct on vLLM: 14.0B parameters (from its name), context 4,096" in text
    assert "# not configured (an embedding model): nomic-embed-text:latest" in text
    assert f"found llama.cpp at {llama.base_url}" in err
    assert load_config(path, {}).server.host == "127.0.0.1"
    checked = subprocess.run(
        [sys.executable, "-m", "octoroute", "check", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_sizes_on_disk_decide_when_no_parameter_count_is_known(local_server):
    llama = local_server(Kind.LLAMA, [Model("mystery", None, 20_000_000_000)])
    code, out, _ = init(llama.port)
    assert code == 0
    assert tiers(out) == {"deep": [("mystery", llama.base_url)]}
    assert "20.0 GB" in out


def test_an_existing_file_is_kept_unless_forced(local_server, tmp_path):
    llama = local_server(Kind.LLAMA, [Model("small-1b", 1.2e9)])
    path = tmp_path / "octoroute.toml"
    path.write_text("# mine\n")
    code, _, err = init(llama.port, output=path)
    assert code == 1
    assert "exists; give --force" in err
    assert path.read_text() == "# mine\n"
    code, _, _ = init(llama.port, output=path, force=True)
    assert code == 0
    assert tiers(path.read_text()) == {"fast": [("small-1b", llama.base_url)]}


def test_nothing_found_is_exit_1_with_what_was_tried_and_no_file(tmp_path):
    port = closed_port()
    path = tmp_path / "octoroute.toml"
    code, out, err = init(port, output=path)
    assert code == 1
    assert out == ""
    assert f"ports {port}" in err
    assert "no config was written" in err
    assert not path.exists()


def test_the_command_writes_to_stdout_and_validates_its_ports(local_server, tmp_path):
    vllm = local_server(Kind.VLLM, [Model("meta-llama/Llama-3.2-1B-Instruct")])
    env = {**os.environ, "COLUMNS": "80"}
    run = [sys.executable, "-m", "octoroute", "init", "--no-default-ports", "--port", str(vllm.port)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert tiers(done.stdout) == {"fast": [("meta-llama/Llama-3.2-1B-Instruct", vllm.base_url)]}
    bad = subprocess.run(
        [sys.executable, "-m", "octoroute", "init", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1

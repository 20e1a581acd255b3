"""`octoroute init` and `octoroute doctor` against the real llama.cpp server
(../shared/llm): the config init writes for it passes `check` and `doctor`; the
toolcaller model passes every check; the tiny model, which cannot call tools,
fails the tool check with its fix; a server started with `--embeddings` goes
into the `embed` group and `serve` sends embeddings, and only those, to it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from rich.console import Console
from tests.integration.llama import EMBEDDER, LlamaServer
from tests.support import free_port, octoroute_serve

from octoroute.cli.doctor import run_doctor
from octoroute.cli.init import run_init

pytestmark = pytest.mark.llama


def doctor(path: Path) -> tuple[int, str]:
    buffer = io.StringIO()
    code = run_doctor(path, {}, 60.0, Console(file=buffer, width=240, color_system=None))
    return code, buffer.getvalue()


def test_init_writes_a_config_for_the_real_server_that_check_and_doctor_accept(
    llama_toolcaller: LlamaServer, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    port = int(llama_toolcaller.url.rsplit(":", 1)[1])
    path = tmp_path / "octoroute.toml"
    err = io.StringIO()
    assert run_init([port], path, False, io.StringIO(), err, default_ports=False) == 0, err.getvalue()
    text = path.read_text()
    assert f"# llama.cpp at {llama_toolcaller.base_url}: 1 model(s)" in text
    # 214,208 parameters (its /v1/models meta.n_params): the fast tier
    assert f'[[models.fast]]\nname = "toolcaller"\nbase_url = "{llama_toolcaller.base_url}"' in text
    assert "# toolcaller on llama.cpp: 214208 parameters, 856,832 bytes, context 2,048" in text
    checked = subprocess.run(
        [sys.executable, "-m", "octoroute", "check", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    code, report = doctor(path)
    assert code == 0, report
    assert "llama.cpp answered" in report
    assert "2,048 tokens, 1 slot(s) (llama_props)" in report
    assert "FAIL" not in report


def test_the_tiny_model_fails_the_tool_check_and_gets_its_fix(llama_tiny: LlamaServer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(f'[[models.fast]]\nname = "tiny"\nbase_url = "{llama_tiny.url}"\n')  # no /v1: llama.cpp serves both
    code, report = doctor(path)
    assert code == 1
    assert "answered without a tool call although one was required" in report
    assert '[capabilities."tiny"]' in report
    assert "--jinja" in report
    lines = {line.split("│")[2].strip(): line for line in report.splitlines() if line.count("│") >= 4}
    for check in ("reachable", "base_url", "model", "chat", "stream", "context"):
        assert " ok " in lines[check], lines[check]


def test_init_puts_the_real_embeddings_server_in_the_embed_group_and_serve_routes_to_it(
    llama_toolcaller: LlamaServer, llama_embedder: LlamaServer, tmp_path
):
    ports = [int(s.url.rsplit(":", 1)[1]) for s in (llama_toolcaller, llama_embedder)]
    path = tmp_path / "octoroute.toml"
    err = io.StringIO()
    assert run_init(ports, path, False, io.StringIO(), err, default_ports=False) == 0, err.getvalue()
    text = path.read_text()
    # llama-server's /props and listing look the same with --embeddings: the name tells
    assert f'[[models.embed]]\nname = "{EMBEDDER}"\nbase_url = "{llama_embedder.base_url}"' in text
    assert f'[[models.fast]]\nname = "toolcaller"\nbase_url = "{llama_toolcaller.base_url}"' in text
    assert f"embedding models (group embed, not in the chat tiers): {EMBEDDER} (" in err.getvalue()
    port = free_port()
    path.write_text(text.replace("port = 3000", f"port = {port}", 1))
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
    with sdk as client, octoroute_serve(path, port):
        embedded = client.embeddings.create(model="auto", input=["hello", "world"])
        assert embedded.model == EMBEDDER
        assert [len(d.embedding) for d in embedded.data] == [64, 64]  # the tiny model's n_embd
        chat = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert chat.model == "toolcaller"

"""`octoroute init` against servers answering like Ollama, llama.cpp, vLLM and LM
Studio on ephemeral loopback ports (never the real default ports: `--no-default-ports`)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import openai
import pytest
from tests.local_servers import Kind, Model
from tests.support import free_port, octoroute_serve

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
            Model("nomic-embed-text:latest", 137e6, 274_302_450, embedding=True),
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
        "embed": [("nomic-embed-text:latest", ollama.base_url)],
    }
    assert "# qwen2.5:3b on Ollama: 3.1B parameters, 1.9 GB" in text
    assert "# Qwen/Qwen2.5-14B-Instruct on vLLM: 14.0B parameters (from its name), context 4,096" in text
    assert tomllib.loads(text)["groups"] == {"embed": {"serves": ["embeddings"]}}
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


EMBEDDERS = {
    "nomic-embed-text:latest",  # Ollama: /api/show capabilities ["embedding"]
    "mxbai-embed-large:latest",
    "all-minilm:latest",  # an Ollama without capabilities: its family, bert
    "nomic-embed-text-v1.5.Q8_0",  # llama.cpp --embeddings: its name
    "BAAI/bge-large-en-v1.5",  # vLLM: its name
    "custom-retriever-v2",  # LM Studio: type embeddings, nothing in the name
}
CHATTERS = {"qwen2.5:3b", "Meta-Llama-3.1-8B-Instruct-Q4_K_M", "qwen2.5-7b-instruct"}


def test_embedding_models_of_every_server_kind_get_their_own_group_served_end_to_end(local_server, tmp_path):
    ollama = local_server(
        Kind.OLLAMA,
        [
            Model("qwen2.5:3b", 3.1e9, 1_929_912_432),
            Model("nomic-embed-text:latest", 137e6, 274_302_450, embedding=True),
            Model("mxbai-embed-large:latest", 334e6, 669_615_493, embedding=True, family="bert"),
        ],
    )
    old_ollama = local_server(
        Kind.OLLAMA, [Model("all-minilm:latest", 23e6, 45_960_996, embedding=True, family="bert")], capabilities=False
    )
    llama_chat = local_server(Kind.LLAMA, [Model("Meta-Llama-3.1-8B-Instruct-Q4_K_M", 8.03e9, 4_920_734_016)])
    llama_embed = local_server(Kind.LLAMA, [Model("nomic-embed-text-v1.5.Q8_0", 137e6, 146_146_432, embedding=True)])
    vllm = local_server(Kind.VLLM, [Model("BAAI/bge-large-en-v1.5", embedding=True)])
    lmstudio = local_server(
        Kind.LMSTUDIO, [Model("qwen2.5-7b-instruct"), Model("custom-retriever-v2", embedding=True, family="bert")]
    )
    servers = [ollama, old_ollama, llama_chat, llama_embed, vllm, lmstudio]
    path = tmp_path / "octoroute.toml"
    code, _, err = init(*(s.port for s in servers), output=path)
    assert code == 0, err
    text = path.read_text()
    found = tiers(text)
    assert {name for name, _ in found.pop("embed")} == EMBEDDERS
    assert {name for eps in found.values() for name, _ in eps} == CHATTERS
    assert set(found) <= {"fast", "balanced", "deep"}
    assert tomllib.loads(text)["groups"] == {"embed": {"serves": ["embeddings"]}}
    # the summary names the embedding models apart from the chat models, with the reason
    assert (
        f"found LM Studio at {lmstudio.base_url}: qwen2.5-7b-instruct (7.0B parameters (from its name), context 4,096)"
        in err
    )
    assert "custom-retriever-v2 (context 4,096; the server lists its type as embeddings)" in err
    assert "all-minilm:latest (23M parameters, 45,960,996 bytes; its family is bert)" in err
    assert f"found llama.cpp at {llama_embed.base_url}: no chat model" in err
    assert err.count("embedding models (group embed, not in the chat tiers)") == 5  # every server but llama_chat

    checked = subprocess.run(
        [sys.executable, "-m", "octoroute", "check", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    port = free_port()
    path.write_text(text.replace("port = 3000", f"port = {port}", 1))
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=30)
    with sdk as client, octoroute_serve(path, port):
        landed = set()
        for model in ("auto", "embed") * 6:
            answer = client.embeddings.with_raw_response.create(model=model, input=["a vector", "two"])
            embedded = answer.parse()
            assert embedded.model in EMBEDDERS
            assert [len(d.embedding) for d in embedded.data] == [3, 3]
            assert embedded.data[0].embedding[0] == len("a vector")
            landed.add(embedded.model)
        for prompt in ("hi", "Prove that there are infinitely many primes, step by step, with care."):
            chat = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}])
            assert chat.model in CHATTERS
            assert chat.choices[0].message.content == "OK"
        with pytest.raises(openai.BadRequestError) as refused:  # the group serves embeddings only
            client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.code == "model_unsupported"
    assert landed <= EMBEDDERS
    embed_only = (old_ollama, llama_embed, vllm)
    assert not [s.base_url for s in embed_only if "POST /v1/chat/completions" in s.requests]


def test_only_embedding_models_is_exit_1_with_them_listed_and_no_file(local_server, tmp_path):
    ollama = local_server(Kind.OLLAMA, [Model("nomic-embed-text:latest", 137e6, 274_302_450, embedding=True)])
    path = tmp_path / "octoroute.toml"
    code, out, err = init(ollama.port, output=path)
    assert code == 1
    assert out == ""
    assert f"found Ollama at {ollama.base_url}: no chat model" in err
    assert "embedding models (group embed, not in the chat tiers): nomic-embed-text:latest" in err
    assert "no OpenAI-compatible server with a chat model answered" in err
    assert not path.exists()

"""Fixtures for integration tests against real llama.cpp servers (tests/integration/llama.py),
and octoroute installed from its wheel (tests/integration/installed.py).

Servers are started once per session on first use and stopped at session end.
A missing or failing start script makes the tests that need it error, never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.installed import Installed, build_wheel, install_wheel
from tests.integration.llama import EMBEDDER, EMBEDDER_ARGS, LlamaFleet, LlamaServer


@pytest.fixture(scope="session")
def llama_fleet() -> Iterator[LlamaFleet]:
    with LlamaFleet() as fleet:
        yield fleet


@pytest.fixture(scope="session")
def llama_tiny(llama_fleet: LlamaFleet) -> LlamaServer:
    """llama-server with the 0.9 MB random-weight model: gibberish text, real protocol."""
    return llama_fleet.get("tiny")


@pytest.fixture(scope="session")
def llama_toolcaller(llama_fleet: LlamaFleet) -> LlamaServer:
    """llama-server whose model answers `tool_choice: "required"` with one well-formed tool call."""
    return llama_fleet.get("toolcaller")


@pytest.fixture(scope="session")
def llama_embedder(llama_fleet: LlamaFleet) -> LlamaServer:
    """llama-server on the tiny model with `--embeddings --pooling mean`."""
    return llama_fleet.get("tiny", server_args=EMBEDDER_ARGS, alias=EMBEDDER)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """octoroute's wheel (built from what deploy/Dockerfile copies), installed in a fresh venv."""
    workdir = tmp_path_factory.mktemp("wheel")
    return install_wheel(build_wheel(workdir), workdir / "venv")

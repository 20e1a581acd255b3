"""Command-line arguments are validated (one-line usage errors, exit 2) and a busy
port is one clear line on every path: `serve`, `serve --demo`, `--workers N`, `make run`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "COLUMNS": "200"}
BUSY = "is already in use; stop what is listening there or pick another port with --port"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=ENV, cwd=REPO, check=False)


def octoroute(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "octoroute", *args)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["serve", "--demo", "--port", "70000"], "argument --port: a port is a whole number from 1 to 65535"),
        (["serve", "--demo", "--port", "65536"], "got 65536"),
        (["serve", "--demo", "--port", "-1"], "got -1"),
        (["serve", "--demo", "--port", "http"], "got 'http'"),
        (["serve", "--demo", "--workers", "0"], "argument --workers: must be 1 or more"),
        (["serve", "--demo", "--workers", "two"], "argument --workers: not a whole number: 'two'"),
        (["serve", "--demo", "--host", ""], "argument --host: not a host name or address"),
        (["stats", "--interval", "0"], "argument --interval: must be more than 0"),
        (["stats", "--interval", "nan"], "argument --interval: must be more than 0"),
        (["eval", "--seed", "-3"], "argument --seed: must be 0 or more"),
        (["serve", "--colour"], "unrecognized arguments: --colour"),
        (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = octoroute(*args)
    assert result.returncode == 2
    assert len(lines(result.stderr)) == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def one_busy_line(result: subprocess.CompletedProcess[str], port: int) -> None:
    assert result.returncode != 0
    assert lines(result.stderr) == [f"cannot start: 127.0.0.1:{port} {BUSY}"], result.stderr


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "octoroute.toml"
    path.write_text('[[models.fast]]\nname = "m"\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8")
    return path


def test_busy_port_on_serve(busy_port: int, tmp_path: Path) -> None:
    one_busy_line(octoroute("serve", "--config", str(config_file(tmp_path)), "--port", str(busy_port)), busy_port)


def test_busy_port_on_serve_with_workers(busy_port: int, tmp_path: Path) -> None:
    result = octoroute("serve", "--config", str(config_file(tmp_path)), "--port", str(busy_port), "--workers", "2")
    one_busy_line(result, busy_port)


def test_busy_port_on_the_demo(busy_port: int) -> None:
    one_busy_line(octoroute("serve", "--demo", "--port", str(busy_port)), busy_port)


def test_busy_port_on_make_run(busy_port: int) -> None:
    result = run(
        "make", "-s", "--no-print-directory", "run", f"PORT={busy_port}", f"VENV={Path(sys.executable).parents[1]}"
    )
    octoroute_lines = [line for line in lines(result.stderr) if not line.startswith("make")]
    assert octoroute_lines == [f"cannot start: 127.0.0.1:{busy_port} {BUSY}"], result.stderr
    assert "Traceback" not in result.stderr

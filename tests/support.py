"""Helpers for fixture upstreams (serving an aiohttp app on loopback) and for building
test configs around them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from octoroute.config import EndpointSpec, ResolvedTimeouts
from octoroute.core.types import Features, Importance, TaskType
from octoroute.demo.simulated import SimulatedUpstream


def endpoint(sim: SimulatedUpstream, name: str, **extra: Any) -> dict[str, Any]:
    """A config entry for a fixture upstream."""
    return {"name": name, "base_url": sim.base_url, **extra}


def endpoint_spec(
    ep_id: str, group: str = "fast", *, weight: float = 1.0, priority: int = 1, slots: int | None = None
) -> EndpointSpec:
    """A resolved endpoint at `http://<ep_id>:8000/v1`, for selector, policy and slot tests."""
    return EndpointSpec(
        id=ep_id,
        group=group,
        name=ep_id,
        base_url=f"http://{ep_id}:8000/v1",
        weight=weight,
        priority=priority,
        max_tokens=None,
        temperature=None,
        api_key=None,
        timeouts=ResolvedTimeouts(connect=1.0, first_byte=5.0, total=30.0),
        max_concurrency=slots,
    )


def fleet_config(models: dict[str, list[dict[str, Any]]], **sections: Any) -> dict[str, Any]:
    """A config dict with active probes and discovery off (tests drive health explicitly) and fast retries."""
    data: dict[str, Any] = {
        "models": models,
        "routing": {"strategy": "rule"},
        "health": {"active": False, "discover": False, "failure_threshold": 3},
        "retry": {"max_attempts": 4, "backoff_base_ms": 1, "backoff_max_ms": 5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def make_features(
    tokens: int, task: TaskType, importance: Importance = Importance.NORMAL, *, explicit: bool = False
) -> Features:
    """Features of a one-message chat, for routing tests."""
    return Features(
        token_estimate=tokens,
        message_count=1,
        user_turns=1,
        code_fences=0,
        code_lines=0,
        has_tools=False,
        has_images=False,
        importance=importance,
        task_type=task,
        task_type_explicit=explicit,
    )


# A code question with an image, as the router models are shown it (judge and tool tests).
ROUTER_FEATURES = replace(
    make_features(321, TaskType.CODE, Importance.HIGH),
    message_count=3,
    user_turns=2,
    code_fences=1,
    code_lines=4,
    has_images=True,
)


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout` seconds. For state another
    thread or process finishes after the client already has its answer (a stream's
    bookkeeping runs after its last byte)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server that takes a number, not a socket."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class FakeClock:
    """A monotonic clock the test moves: `clock()` reads it, `clock.advance(s)` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def serve_on_loopback(
    app: web.Application,
    port: int = 0,
    *,
    runner_type: type[web.AppRunner] = web.AppRunner,
    handler_cancellation: bool = False,
) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1:`port` (0: any free port) without an access log; returns the
    runner (`await runner.cleanup()` stops it) and the port it is bound to.

        runner, port = await serve_on_loopback(app)
    """
    runner = runner_type(app, handler_cancellation=handler_cancellation, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    bound: int = runner.addresses[0][1]
    return runner, bound


class LoopbackApp:
    """A fixture upstream that is one aiohttp app on loopback: a subclass builds the app in
    `make_app`; `start()` serves it on `port` (0 the first time: any free port; a restart
    comes back on the same one) and `stop()` ends it.

        class Echo(LoopbackApp):
            def make_app(self) -> web.Application: ...

        loop_thread.run(echo.start()); echo.base_url  # "http://127.0.0.1:PORT/v1"
    """

    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner, self.port = await serve_on_loopback(self.make_app(), self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def run_in_own_session(
    argv: Sequence[str], timeout: float, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to its end in a session of its own, stdin closed, output captured as text.
    When it overruns `timeout` or the test is interrupted, its process group (the command and
    anything it started) is killed and the exception goes on; a `TimeoutExpired` then carries
    all the output in `output` and `stderr`."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            exc.output, exc.stderr = out, err
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextmanager
def octoroute_serve(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`octoroute serve --config CONFIG --workers 1` in a session of its own, output discarded;
    yields once it answers /health on `port` (the config's), and SIGTERMs its group after.

        with octoroute_serve(path, port) as proc: ...
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "octoroute", "serve", "--config", str(config), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def listening() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        eventually(lambda: listening() or proc.poll() is not None, timeout=30, what="the gateway to listen")
        assert proc.poll() is None, "octoroute serve exited"
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited by itself
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

"""`octoroute serve`: one process, or N worker processes sharing the port
(SO_REUSEPORT), each a complete gateway; `--demo` adds a simulated fleet."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client import multiprocess
from rich.console import Console

from octoroute.cli.commands import print_problems
from octoroute.cli.reload import ConfigSource, FileWatch, Watching, bound_to, reload_on_sighup, serve_reloads
from octoroute.config import Config, build_topology, load_config, parse_config
from octoroute.config.reload import weights_paths
from octoroute.core.errors import ConfigError
from octoroute.observe.logs import configure_logging
from octoroute.server import GatewayRunner, create_app
from octoroute.server.state import LIVE

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEMO_RELOAD = "SIGHUP: --demo generates its config at start and has no file to reload; nothing changed"


def _run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop when installed (a declared dependency on Linux/macOS)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main)
    else:
        uvloop.run(main)


def run_serve(
    *,
    config_path: Path | None,
    host: str | None,
    port: int | None,
    workers: int,
    demo: bool,
    env: Mapping[str, str],
    watch_interval: float | None = None,
) -> int:
    """`watch_interval`: `--watch` (seconds between looks at the config file), or None."""
    err = Console(stderr=True)
    if workers < 1:
        err.print("[red]--workers must be at least 1[/]")
        return 2
    if demo and watch_interval is not None:
        err.print("[red]--watch needs a config file; --demo generates its config and has none to watch[/]")
        return 2
    if demo:
        if workers != 1:
            err.print("[yellow]--demo runs one worker (the simulated fleet lives in that process)[/]")
        try:
            probe_port(host or "127.0.0.1", 3000 if port is None else port)
            _run(_serve_demo(host, port, dict(env)))
        except OSError as exc:
            err.print(start_problem(exc, host or "127.0.0.1", 3000 if port is None else port), **_LINE)
            return 1
        return 0
    if config_path is None:
        err.print("[red]no config: pass --config PATH (or put octoroute.toml here), or try `octoroute serve --demo`[/]")
        return 2
    watching = None if watch_interval is None else Watching(FileWatch(config_path), watch_interval)
    try:
        config = load_config(config_path, env)
    except ConfigError as exc:
        print_problems(err, config_path, exc, "; not starting")
        return 1
    if watching is not None:  # before the gateway (or a worker) loads them
        watching.follow(weights_paths(config))
    source = ConfigSource(config_path, dict(env), host)
    config = bound_to(config, host)
    bind_host = config.server.host
    bind_port = config.server.port if port is None else port
    if workers == 1:
        try:
            probe_port(bind_host, bind_port)  # before the app starts discovery and probes
            _run(
                _serve_one(config, bind_host, bind_port, dict(env), reuse_port=False, source=source, watching=watching)
            )
        except OSError as exc:  # the port is taken, the event file cannot be opened, ...
            err.print(start_problem(exc, bind_host, bind_port), **_LINE)
            return 1
        return 0
    if bind_port == 0:
        err.print("[red]--workers needs a fixed port (not 0) so the workers can share it[/]")
        return 2
    try:
        probe_port(bind_host, bind_port)
    except OSError as exc:  # before any worker starts: one line, not a crash loop of workers
        err.print(start_problem(exc, bind_host, bind_port), **_LINE)
        return 1
    return _serve_many(config, bind_host, bind_port, source, workers, watching)


_LINE: dict[str, Any] = {"style": "red", "highlight": False, "soft_wrap": True, "markup": False}


def start_problem(exc: OSError, host: str, port: int) -> str:
    """One line saying why the server could not start listening, and what to do."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot start: {where} is already in use; stop what is listening there or pick another port with --port"
    if exc.errno == errno.EACCES:
        return f"cannot start: no permission to listen on {where} (ports below 1024 need privileges); use --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot start: {host} is not an address of this machine; use --host"
    if isinstance(exc, socket.gaierror):
        return f"cannot start: cannot resolve host {host!r}; use --host"
    return f"cannot start: {exc}"


def probe_port(host: str, port: int) -> None:
    """Raise the OSError listening on host:port would raise (bound with SO_REUSEADDR,
    as asyncio binds, so only a live listener makes it fail); never listens."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


@dataclass(frozen=True)
class Shared:
    """What the workers of one server have in common: the metrics directory, how many
    they are, and when the server started (its uptime, whichever worker answers)."""

    directory: str
    workers: int
    started_at: float


async def _start(
    config: Config,
    host: str,
    port: int,
    env: dict[str, str],
    reuse_port: bool,
    shared: Shared | None = None,
) -> tuple[web.AppRunner, int]:
    """`shared`: what the workers have in common, when this is one of several."""
    configure_logging(config.observability.log_level, config.observability.log_format)
    topology = build_topology(config, env)
    if shared is None:
        app = create_app(config, topology)
    else:
        app = create_app(
            config,
            topology,
            multiprocess_dir=shared.directory,
            workers=shared.workers,
            started_at=shared.started_at,
        )
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


def _stop_on_signals(*, worker: bool) -> asyncio.Event:
    """An event SIGINT or SIGTERM sets, installed before the server starts so that a
    signal at any point after this (even right after 'listening' is printed) stops
    it cleanly. A worker ignores further ones once stopping: it is sent SIGTERM by
    its supervisor and often by the signal to its whole process group too, and one
    arriving later must not kill it mid-shutdown with the default action."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        stop.set()
        if worker:  # directly, not through the loop: removing its handler would reset to the default first
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping)
    return stop


async def _serve_one(
    config: Config,
    host: str,
    port: int,
    env: dict[str, str],
    *,
    reuse_port: bool,
    shared: Shared | None = None,
    on_ready: Callable[[], None] | None = None,
    source: ConfigSource | None = None,
    watching: Watching | None = None,
) -> None:
    """`source`: the config file SIGHUP reloads; `watching`: poll it for changes too
    (a worker's supervisor watches instead, and sends SIGHUP)."""
    stop = _stop_on_signals(worker=shared is not None)
    requested = reload_on_sighup()
    runner, bound = await _start(config, host, port, env, reuse_port, shared)
    reloads = None
    if source is not None:
        reloads = asyncio.create_task(
            serve_reloads(runner.app[LIVE], source, requested, watching), name="octoroute-reload"
        )
    try:
        if on_ready is not None:
            on_ready()
        Console(stderr=True).print(
            f"octoroute listening on http://{host}:{bound} (pid {os.getpid()})", highlight=False, soft_wrap=True
        )
        await stop.wait()
    finally:
        if reloads is not None:
            reloads.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloads
        await runner.cleanup()


def _worker(
    config_data: dict[str, Any], host: str, port: int, source: ConfigSource, shared: Shared, ready: EventType
) -> None:
    config = Config.model_validate(config_data)
    env = dict(source.env)
    try:
        _run(_serve_one(config, host, port, env, reuse_port=True, shared=shared, on_ready=ready.set, source=source))
    except OSError as exc:
        Console(stderr=True).print(f"worker {os.getpid()} {start_problem(exc, host, port)}", **_LINE)
        raise SystemExit(1) from None


def _serve_many(
    config: Config, host: str, port: int, source: ConfigSource, workers: int, watching: Watching | None
) -> int:
    """Start `workers` processes on one port. They share a fresh directory for
    prometheus_client's multiprocess mode (and the decision windows), named in
    PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client, and
    removed when they have all stopped."""
    directory = tempfile.mkdtemp(prefix="octoroute-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # inherited by the spawned workers
    try:
        return _run_workers(config, host, port, source, workers, directory, watching)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Supervisor:
    """Keeps `workers` processes serving: a worker that dies while the server runs
    (killed by the OOM killer, say) is replaced at once, its live gauges are dropped
    from the shared metrics, and the death is logged. A worker that dies before it
    ever served (it could not bind the port, say), `CRASH_LIMIT` times in a row in one
    slot, stops the server: a crash loop helps nobody. SIGTERM / SIGINT stop every
    worker; the exit code is 0 only if every worker stopped cleanly and none
    crash-looped. `start(slot)` starts a worker and gives the event it sets once it
    is listening.

    Reloads: SIGHUP (and, with `watch`, a change of the config file or of the weights
    file it names) calls `refresh` (the config new workers start with) and passes
    SIGHUP on to every worker, each of which reloads the file itself. A worker still starting gets it once it listens
    (before that, SIGHUP would kill it)."""

    CRASH_LIMIT = 3

    def __init__(
        self,
        start: Callable[[int], tuple[BaseProcess, EventType]],
        workers: int,
        directory: str,
        *,
        refresh: Callable[[], None] | None = None,
        watching: Watching | None = None,
    ) -> None:
        self._start = start
        self._workers = workers
        self._directory = directory
        self._procs: dict[int, tuple[BaseProcess, EventType]] = {}  # slot -> (process, its ready event)
        self._failed_starts = dict.fromkeys(range(workers), 0)
        self._stopping = False
        self._failed = False
        self._console = Console(stderr=True)
        self._refresh = refresh
        self._watching = watching
        self._owed: set[int] = set()  # slots whose worker was starting when a reload came
        self._wake_r, self._wake_w = os.pipe()  # SIGHUP's handler writes, the loop reads
        os.set_blocking(self._wake_w, False)

    def stop(self, _signum: int = 0, _frame: object = None) -> None:
        self._stopping = True
        for proc, _ in self._procs.values():
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    def hang_up(self, _signum: int = 0, _frame: object = None) -> None:
        """SIGHUP's handler: only wakes the loop, which reloads."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"r")

    def run(self) -> int:
        try:
            for slot in range(self._workers):
                self._spawn(slot)
            while self._procs:
                sentinels = {proc.sentinel: slot for slot, (proc, _) in self._procs.items()}
                ready = mp_connection.wait([*sentinels, self._wake_r], timeout=self._tick())
                for sentinel in ready:
                    if sentinel == self._wake_r:
                        os.read(self._wake_r, 4096)
                        self.reload()
                    else:
                        self._reap(sentinels[cast(int, sentinel)])  # sentinels are file descriptors
                if self._watching is not None and self._watching.changed():
                    self.reload()
                self._pay_owed()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
        return 1 if self._failed else 0

    def _tick(self) -> float | None:
        if self._watching is not None:
            return self._watching.interval
        return OWED_POLL_SECONDS if self._owed else None

    def reload(self) -> None:
        if self._stopping:
            return
        if self._refresh is not None:
            self._refresh()
        self._owed = set(self._procs)
        self._pay_owed()

    def _pay_owed(self) -> None:
        for slot in list(self._owed):
            entry = self._procs.get(slot)
            if entry is None:
                self._owed.discard(slot)
            elif entry[1].is_set() and entry[0].pid is not None:
                self._owed.discard(slot)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(entry[0].pid, signal.SIGHUP)

    def _spawn(self, slot: int) -> None:
        self._owed.discard(slot)  # a new worker starts with the refreshed config
        self._procs[slot] = self._start(slot)

    def _reap(self, slot: int) -> None:
        proc, ready = self._procs.pop(slot)
        proc.join()
        if proc.pid is not None:
            multiprocess.mark_process_dead(proc.pid, self._directory)  # type: ignore[no-untyped-call]
        code = proc.exitcode
        if self._stopping:
            self._failed = self._failed or code != 0
            return
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        self._failed_starts[slot] = 0 if ready.is_set() else self._failed_starts[slot] + 1
        if self._failed_starts[slot] >= self.CRASH_LIMIT:
            self._console.print(
                f"[red]worker {proc.pid} {how}; {self.CRASH_LIMIT} workers in a row died before serving: "
                "stopping octoroute[/]",
                highlight=False,
                soft_wrap=True,
            )
            self._failed = True
            self.stop()
            return
        self._console.print(f"[yellow]worker {proc.pid} {how}; starting a new one[/]", highlight=False, soft_wrap=True)
        self._spawn(slot)


OWED_POLL_SECONDS = 0.2  # how often a reload owed to a starting worker is looked at


def _run_workers(
    config: Config,
    host: str,
    port: int,
    source: ConfigSource,
    workers: int,
    directory: str,
    watching: Watching | None,
) -> int:
    ctx = multiprocessing.get_context("spawn")
    current = {"data": config.model_dump(mode="json", exclude_unset=True)}
    shared = Shared(directory, workers, time.time())

    def start(slot: int) -> tuple[BaseProcess, EventType]:
        ready = ctx.Event()
        args = (current["data"], host, port, source, shared, ready)
        proc = ctx.Process(target=_worker, args=args, name=f"octoroute-worker-{slot}")
        proc.start()
        return proc, ready

    def refresh() -> None:
        """The config a replacement worker starts with: the file's, if it loads (each
        worker logs the reload's result itself)."""
        with contextlib.suppress(ConfigError):
            loaded = source.load()
            if watching is not None:  # the workers load the weights files after this
                watching.follow(weights_paths(loaded))
            current["data"] = loaded.model_dump(mode="json", exclude_unset=True)

    supervisor = Supervisor(
        start,
        workers,
        directory,
        refresh=refresh,
        watching=watching,
    )
    signal.signal(signal.SIGINT, supervisor.stop)  # before any worker exists: no window without them
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGHUP, supervisor.hang_up)
    return supervisor.run()


async def _serve_demo(host: str | None, port: int | None, env: dict[str, str]) -> None:
    from octoroute.demo.fleet import DemoFleet

    stop = _stop_on_signals(worker=False)
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: logging.getLogger("octoroute.config").warning(DEMO_RELOAD)
    )
    fleet = DemoFleet()
    await fleet.start()
    try:
        data = fleet.config_dict()
        data.setdefault("server", {})
        data["server"]["host"] = host or "127.0.0.1"
        data["server"]["port"] = 3000 if port is None else port
        config = parse_config(data, env)
        runner, bound = await _start(config, config.server.host, config.server.port, env, False)
        _print_demo_banner(config, config.server.host, bound)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        await fleet.stop()


def _print_demo_banner(config: Config, host: str, port: int) -> None:
    console = Console(stderr=True)
    url = f"http://{host}:{port}"
    console.rule("[bold yellow]octoroute DEMO[/]")
    console.print("[yellow]This is a demo: every upstream below is a SIMULATED in-process server, not a real LLM.[/]")
    for group, endpoints in config.models.items():
        for ep in endpoints:
            console.print(f"  {group:<9} {ep.id or ep.name:<14} priority {ep.priority}  {ep.base_url}", highlight=False)
    console.print(f"\nGateway: [bold]{url}[/]   (sim-flaky fails about half its requests: watch retries and fallback)")
    console.print("Try:", highlight=False)
    console.print(
        f"  curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        '    -d \'{"model": "auto", "messages": [{"role": "user", "content": "hi there"}]}\' -i',
        highlight=False,
        markup=False,
        soft_wrap=True,  # never break a command someone will copy
    )
    console.print(f"  curl -s {url}/models     # endpoint health", highlight=False, markup=False, soft_wrap=True)
    console.print(f"Dashboard: {url}/dashboard   (or: octoroute stats --url {url})", highlight=False, soft_wrap=True)
    console.print("Stop with Ctrl-C.")
    console.rule()

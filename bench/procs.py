"""Child processes for the benchmarks: started in their own session, polled
until ready, measured through /proc, and killed as a whole process group.

Every child also gets PR_SET_PDEATHSIG, so even a benchmark killed with
SIGKILL takes its servers down with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A child process exited or did not become ready in time."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


try:  # looked up here, not in the child: between fork and exec only the call itself runs
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name may contain spaces."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                yield int(entry.name), fields


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid`."""
    return [pid for pid, fields in _processes() if int(fields[2]) == pgid]


def cpu_by_group(pgids: Collection[int]) -> dict[int, float]:
    """utime + stime (all threads) summed per process group, in seconds, in one pass over /proc."""
    totals = dict.fromkeys(pgids, 0.0)
    for _pid, fields in _processes():
        pgid = int(fields[2])
        if pgid in totals:
            totals[pgid] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return totals


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float  # VmRSS summed over the process group
    peak_mb: float  # VmHWM summed over the process group


@dataclass
class Service:
    """One started child process and its process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        return group_pids(self.pid) or [self.pid]

    def memory(self) -> Memory:
        pids = self.pids()
        return Memory(
            rss_mb=sum(_status_kb(p, "VmRSS:") for p in pids) / 1024,
            peak_mb=sum(_status_kb(p, "VmHWM:") for p in pids) / 1024,
        )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # helpers the leader left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)


class Services:
    """Starts children and stops all of them, newest first, on any exit.

    with Services(log_dir) as services:
        up = services.start("upstream", [sys.executable, "-m", "..."])
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[Service] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Service:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                preexec_fn=_die_with_parent,
            )
        service = Service(name, popen, log_path)
        self._started.append(service)
        return service

    def get(self, name: str) -> Service:
        return next(s for s in self._started if s.name == name)

    def running(self) -> list[Service]:
        return list(self._started)

    def stop(self, service: Service) -> None:
        service.stop()
        with contextlib.suppress(ValueError):
            self._started.remove(service)

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of GET http://127.0.0.1:<port><path>, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(service: Service, port: int, path: str, timeout: float) -> float:
    """Poll until GET `path` answers 200; returns the seconds it took. Bounded by `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        code = service.popen.poll()
        if code is not None:
            raise StartupError(f"{service.name} exited with status {code} before it was ready:\n{service.log_tail()}")
        if http_status(port, path) == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    raise StartupError(f"{service.name} was not ready after {timeout:.0f} s:\n{service.log_tail()}")


@dataclass(slots=True)
class Cpu:
    """CPU seconds used over an interval, and its wall time."""

    proxy: float = 0.0
    upstream: float = 0.0
    client: float = 0.0
    others: float = 0.0  # every process outside this benchmark
    wall: float = 0.0

    def add(self, other: Cpu) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Meter:
    """Samples CPU of the measured proxy, the upstream, this process and the whole machine.

    One pass over /proc per sample, taken outside this process's own CPU reading,
    so sampling does not count as load generator time.
    """

    def __init__(self, services: Services, upstream: Service, proxy: Service | None) -> None:
        self._services = services
        self._upstream = upstream
        self._proxy = proxy

    def _groups(self) -> tuple[float, float, float, float]:
        """(proxy, upstream, every service of ours, machine busy) CPU seconds."""
        busy = machine_busy_seconds()
        cpu = cpu_by_group([s.pid for s in self._services.running()])
        proxy = cpu.get(self._proxy.pid, 0.0) if self._proxy is not None else 0.0
        return proxy, cpu.get(self._upstream.pid, 0.0), sum(cpu.values()), busy

    @staticmethod
    def _own() -> float:
        times = os.times()
        return times.user + times.system

    async def measure(self, run: Callable[[], Awaitable[T]]) -> tuple[T, Cpu]:
        """Await `run()` and return its result with the CPU each party used meanwhile."""
        p0, u0, o0, b0 = self._groups()
        c0, t0 = self._own(), time.perf_counter()
        result = await run()
        c1, t1 = self._own(), time.perf_counter()
        p1, u1, o1, b1 = self._groups()
        client = c1 - c0
        others = max(0.0, (b1 - b0) - (o1 - o0) - client)
        return result, Cpu(proxy=p1 - p0, upstream=u1 - u0, client=client, others=others, wall=t1 - t0)

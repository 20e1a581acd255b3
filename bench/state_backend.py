"""What the Redis state backend costs per request, against the in-process one, in one run.

Two parts:

1. End to end. One fixture upstream, one `redis-server` and two gateways
   (`octoroute serve --workers 1`), identical but for `[state]`: `local` and
   `redis`. Both have `[rate_limit]` on (high limits, nothing refused), so every
   request makes one shared-state call (the bucket check) with Redis. Measured in
   interleaved blocks, so drift hits both alike: latency one request at a time,
   and CPU per request at concurrency 16 (the gateway's process group, plus
   redis-server's for the `redis` row).
2. The store call alone, in this process: `admit` of one bucket on `LocalState`,
   `SharedMemoryState` (the `--workers N` file) and `RedisState`, one at a time.

Reports each number and the ratio redis / local. Never fails on a number.

    .venv/bin/python bench/state_backend.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from loadgen import LoadGenerator, RunResult, Target
from octoroute.core.state import Gcra, StateStore, Take
from octoroute.fleet.state import LocalState
from octoroute.state.redis_store import RedisState
from octoroute.state.shm import SharedMemoryState
from procs import Service, Services, StartupError, cpu_by_group, free_port, wait_ready

MODEL = "bench-model"


def gateway_config(upstream: int, port: int, state: str) -> str:
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[[models.fast]]\nname = "{MODEL}"\nbase_url = "http://127.0.0.1:{upstream}/v1"\n\n'
        '[routing]\nstrategy = "rule"\n\n[health]\nactive = false\n\n'
        "[rate_limit]\nenabled = true\nrequests_per_second = 1000000\nburst = 1000000\n\n"
        f"{state}\n"
        '[observability]\nlog_level = "warning"\n'
    )


def start(services: Services, work: Path, name: str, argv: list[str], port: int, path: str | None) -> Service:
    service = services.start(name, argv)
    if path is not None:
        wait_ready(service, port, path, timeout=30)
    return service


def redis_ready(port: int, deadline_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise StartupError("redis-server did not answer PING")


async def end_to_end(
    targets: dict[str, Target], pgids: dict[str, list[int]], *, sequential: int, concurrent: int, rounds: int
) -> dict[str, dict[str, float]]:
    latency: dict[str, RunResult] = {k: RunResult() for k in targets}
    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
    served: dict[str, int] = dict.fromkeys(targets, 0)
    async with LoadGenerator() as gen:
        for target in targets.values():  # warm-up
            await gen.run(target, requests=200, concurrency=8, stream=False, time_limit=60)
        for _ in range(rounds):
            for name, target in targets.items():
                latency[name].merge(
                    await gen.run(target, requests=sequential // rounds, concurrency=1, stream=False, time_limit=120)
                )
            for name, target in targets.items():
                before = cpu_by_group(pgids[name])
                run = await gen.run(target, requests=concurrent // rounds, concurrency=16, stream=False, time_limit=120)
                after = cpu_by_group(pgids[name])
                cpu[name] += sum(after.values()) - sum(before.values())
                served[name] += run.ok
                if run.errors:
                    raise RuntimeError(f"{name}: {run.errors} errors, first: {run.first_error}")
    return {
        name: {
            "p50_ms": latency[name].quantile(0.5),
            "p99_ms": latency[name].quantile(0.99),
            "cpu_us_per_request": cpu[name] / served[name] * 1e6,
        }
        for name in targets
    }


async def store_calls(redis_port: int, work: Path, calls: int) -> dict[str, float]:
    """Microseconds per `admit` of one bucket, one at a time (median of 5 runs)."""
    stores: dict[str, StateStore] = {
        "local": LocalState(time.monotonic),
        "shm": SharedMemoryState(str(work / "bench.shm")),
        "redis": RedisState(f"redis://127.0.0.1:{redis_port}/0", prefix="bench:", timeout_seconds=1.0),
    }
    bucket = Gcra(1e-6, 1e9)
    out: dict[str, float] = {}
    for name, store in stores.items():
        takes = (Take("client:bench", bucket, 1.0),)
        for _ in range(200):
            await store.admit(takes)
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                await store.admit(takes)
            runs.append((time.perf_counter() - t0) / calls * 1e6)
        out[name] = statistics.median(runs)
        await store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is missing: make system-deps", file=sys.stderr)
        return 1
    sequential, concurrent, calls = (400, 2000, 2000) if args.quick else (2000, 8000, 20000)
    with tempfile.TemporaryDirectory(prefix="octoroute-bench-state-") as tmp, Services(Path(tmp)) as services:
        work = Path(tmp)
        up_port, redis_port = free_port(), free_port()
        start(
            services,
            work,
            "upstream",
            [sys.executable, "-m", "octoroute.demo.simulated", "--port", str(up_port), "--label", "up"],
            up_port,
            "/health",
        )
        redis = services.start(
            "redis", [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )
        redis_ready(redis_port)
        states = {
            "local": '[state]\nbackend = "local"\n',
            "redis": f'[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_port}/0"\n',
        }
        targets: dict[str, Target] = {}
        pgids: dict[str, list[int]] = {}
        for name, state in states.items():
            port = free_port()
            config = work / f"{name}.toml"
            config.write_text(gateway_config(up_port, port, state))
            argv = [sys.executable, "-m", "octoroute", "serve", "--config", str(config), "--workers", "1"]
            gateway = start(services, work, f"octoroute-{name}", argv, port, "/health")
            targets[name] = Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", "fast")
            pgids[name] = [gateway.pid, *([redis.pid] if name == "redis" else [])]
        results = asyncio.run(end_to_end(targets, pgids, sequential=sequential, concurrent=concurrent, rounds=4))
        calls_us = asyncio.run(store_calls(redis_port, work, calls))
    local, remote = results["local"], results["redis"]
    print(f"end to end: {sequential} sequential + {concurrent} at concurrency 16 per backend, 4 interleaved rounds")
    print(f"{'backend':<8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/request':>15}")
    for name, row in results.items():
        print(f"{name:<8} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['cpu_us_per_request']:>15.0f}")
    ratios = {
        "p50": remote["p50_ms"] / local["p50_ms"],
        "cpu": remote["cpu_us_per_request"] / local["cpu_us_per_request"],
    }
    print(
        f"redis / local: p50 latency x{ratios['p50']:.2f} "
        f"(+{(remote['p50_ms'] - local['p50_ms']) * 1000:.0f} us), "
        f"CPU per request x{ratios['cpu']:.2f} (gateway + redis-server)"
    )
    print(
        f"store call alone ({calls} admits, one at a time): "
        + ", ".join(f"{k} {v:.1f} us" for k, v in calls_us.items())
    )
    if args.json:
        args.json.write_bytes(
            orjson.dumps(
                {"end_to_end": results, "ratios": ratios, "store_call_us": calls_us}, option=orjson.OPT_INDENT_2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

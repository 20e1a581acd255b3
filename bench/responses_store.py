"""What storing and reading one Responses API conversation costs in each backend of
`server.responses_store.Responses`, in this process, one call at a time.

Backends: memory (one process), directory (`--workers N`: one file per response,
I/O in `asyncio.to_thread`) and Redis (`[state]` on Redis, through `GuardedState`,
with this process's copy beside it). For each conversation size (a few turns of
text to about a megabyte) it reports the median and p99 of a put and of a get
(decoding included), and, for the directory, the longest time the event loop was
held by one call (median over 50 gets: what other requests on the worker wait for), next to the same
file I/O done on the loop without a thread.

Reports; never fails on a number.

    .venv/bin/python bench/responses_store.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from octoroute.fleet.state import LocalState
from octoroute.server.responses_store import Responses, ResponseStore, StoredResponse
from octoroute.state.documents import DirectoryDocuments
from octoroute.state.guard import GuardedState
from octoroute.state.redis_store import RedisState
from procs import Services, free_port
from state_backend import redis_ready

SIZES = {"2 KB": 2_000, "64 KB": 64_000, "1 MB": 1_000_000}


def conversation(response_id: str, size: int) -> StoredResponse:
    turns = max(1, size // 1000)
    items = [{"role": "user" if i % 2 else "assistant", "content": f"{i:05d} " + "w" * 990} for i in range(turns)]
    return StoredResponse({"id": response_id, "object": "response", "output": []}, items)


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1e6


async def loop_hold(call: Callable[[], Awaitable[Any]]) -> float:
    """The longest stretch (us) the event loop could not run another task during `call`."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await call()
    running = False
    await task
    return longest * 1e6


async def measure(store: Responses, size: int, calls: int) -> dict[str, float]:
    ids = [f"resp_bench_{size}_{i}" for i in range(calls)]
    docs = [conversation(i, size) for i in ids]
    puts = [await timed(lambda d=d: store.put(d)) for d in docs]
    gets = [await timed(lambda i=i: store.get(i)) for i in ids]
    hold = statistics.median([await loop_hold(lambda: store.get(ids[0])) for _ in range(50)])
    return {
        "put_p50_us": statistics.median(puts),
        "put_p99_us": sorted(puts)[int(len(puts) * 0.99) - 1],
        "get_p50_us": statistics.median(gets),
        "get_p99_us": sorted(gets)[int(len(gets) * 0.99) - 1],
        "get_loop_hold_us": hold,
    }


async def on_loop_io(path: Path, size: int) -> float:
    """The same get with its file read on the event loop (no thread): the loop hold it would cost."""
    doc = conversation("x", size).encode()
    (path / "on-loop").write_bytes(doc)

    async def read() -> None:
        StoredResponse.decode((path / "on-loop").read_bytes())

    return statistics.median([await loop_hold(read) for _ in range(50)])


async def run(redis_port: int, work: Path, calls: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    guard = GuardedState(
        RedisState(f"redis://127.0.0.1:{redis_port}/0", prefix="bench:", timeout_seconds=2.0),
        LocalState(time.monotonic),
        timeout_seconds=2.0,
        retry_seconds=1.0,
    )
    await guard.start(2.0)
    for label, size in SIZES.items():
        n = calls if size < 500_000 else max(20, calls // 10)
        rows = {
            "memory": Responses(ResponseStore(10 * n, 3600, time.monotonic)),
            "directory": Responses(
                ResponseStore(10 * n, 3600, time.monotonic), DirectoryDocuments(str(work / f"dir-{size}"))
            ),
            "redis": Responses(ResponseStore(10 * n, 3600, time.monotonic), guard, keep_local=True),
        }
        out[label] = {name: await measure(store, size, n) for name, store in rows.items()}
        out[label]["directory, read on the loop"] = {"get_loop_hold_us": await on_loop_io(work, size)}
    await guard.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is missing: make system-deps", file=sys.stderr)
        return 1
    calls = 200 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="octoroute-bench-responses-") as tmp, Services(Path(tmp)) as services:
        redis_port = free_port()
        services.start(
            "redis", [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )
        redis_ready(redis_port)
        results = asyncio.run(run(redis_port, Path(tmp), calls))
    print(f"one call at a time; {calls} per size ({max(20, calls // 10)} for 1 MB); times in microseconds")
    print(f"{'size':<6} {'backend':<28} {'put p50':>9} {'put p99':>9} {'get p50':>9} {'get p99':>9} {'loop held':>10}")
    for label, rows in results.items():
        for name, row in rows.items():
            cells = [row.get(k) for k in ("put_p50_us", "put_p99_us", "get_p50_us", "get_p99_us", "get_loop_hold_us")]
            text = " ".join(f"{'':>9}" if c is None else f"{c:>9.0f}" for c in cells[:4])
            print(f"{label:<6} {name:<28} {text} {cells[4]:>10.0f}")
    if args.json:
        args.json.write_bytes(orjson.dumps({"calls": calls, "cpus": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

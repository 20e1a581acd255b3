"""What does reloading the config cost the traffic going through?

One process, one uvloop: a zero-delay simulated upstream, a gateway in front of it
(`create_app` on a `GatewayRunner`, as `octoroute serve` runs it) and the load
generator. Phases of steady traffic alternate with phases in which the config is
reloaded every `--every` seconds (two configs that differ in their endpoints'
weights, so every reload builds and swaps a new `Gateway`). It prints requests per
second, latency and errors of each kind of phase, their ratio measured in the same
run, and how long a reload takes (`Live.reload`, from the loaded config to the
swap). It reports and never fails on a number.

    .venv/bin/python bench/reload.py              # ~25 s
    .venv/bin/python bench/reload.py --stream --endpoints 32
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop
from aiohttp import web

from loadgen import LoadGenerator, RunResult, Target, percentile
from octoroute.config import build_topology, parse_config
from octoroute.demo.simulated import SimulatedUpstream
from octoroute.server import GatewayRunner, create_app
from octoroute.server.state import LIVE


def config_data(base_url: str, endpoints: int, weight: float) -> dict[str, Any]:
    return {
        "models": {
            "fast": [
                {"id": f"ep{i}", "name": f"m{i}", "base_url": base_url, "weight": weight} for i in range(endpoints)
            ]
        },
        "routing": {"strategy": "rule"},
        "health": {"active": False, "discover": False},
        "observability": {"log_level": "warn"},
    }


async def reload_every(live: Any, configs: list[Any], every: float, took_ms: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await live.reload(configs[live.generation % 2], {})  # always the other one
        took_ms.append((time.perf_counter() - started) * 1000)
        try:
            async with asyncio.timeout(every):
                await stop.wait()
        except TimeoutError:
            pass


async def run(args: argparse.Namespace) -> None:
    upstream = SimulatedUpstream(record=False)
    await upstream.start()
    datas = [config_data(upstream.base_url, args.endpoints, w) for w in (1.0, 2.0)]
    configs = [parse_config(d, {}) for d in datas]
    app = create_app(configs[0], build_topology(configs[0], {}))
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    live = app[LIVE]
    target = Target("octoroute", f"http://127.0.0.1:{port}/v1/chat/completions", "fast")
    results: dict[str, RunResult] = {"steady": RunResult(), "reloading": RunResult()}
    took_ms: list[float] = []
    try:
        async with LoadGenerator() as load:
            await load.run(target, requests=200, concurrency=args.concurrency, stream=args.stream, time_limit=5)
            for _ in range(args.rounds):
                for phase in ("steady", "reloading"):
                    stop = asyncio.Event()
                    reloader = None
                    if phase == "reloading":
                        reloader = asyncio.create_task(reload_every(live, configs, args.every, took_ms, stop))
                    result = await load.run(
                        target,
                        requests=10_000_000,
                        concurrency=args.concurrency,
                        stream=args.stream,
                        time_limit=args.seconds,
                    )
                    stop.set()
                    if reloader is not None:
                        await reloader
                    results[phase].merge(result)
    finally:
        await runner.cleanup()
        await upstream.stop()
    kind = "stream" if args.stream else "non-stream"
    print(f"{kind}, c={args.concurrency}, {args.endpoints} endpoints, {args.rounds} rounds of {args.seconds:g} s each")
    for phase, result in results.items():
        print(
            f"  {phase:<10} {result.rps:8,.0f} req/s  p50 {result.quantile(0.5):6.2f} ms  "
            f"p99 {result.quantile(0.99):6.2f} ms  errors {result.errors}"
            + (f" (first: {result.first_error})" if result.first_error else "")
        )
    ratio = results["reloading"].rps / results["steady"].rps
    print(f"  reloading / steady throughput: {ratio:.2f}")
    took_ms.sort()
    print(
        f"  reloads: {len(took_ms)} (generation {live.generation}), "
        f"each p50 {percentile(took_ms, 0.5):.2f} ms, p99 {percentile(took_ms, 0.99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true", help="streamed requests (default: non-streamed)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--endpoints", type=int, default=8, help="endpoints in the reloaded config (default 8)")
    parser.add_argument("--every", type=float, default=0.1, help="seconds between reloads (default 0.1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="steady/reloading pairs (default 3)")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""The fault mix and soak of issue 11, with large numbers.

    .venv/bin/python bench/faults.py --requests 2000 --concurrency 32
    .venv/bin/python bench/faults.py --requests 2000 --rounds 10     # soak: 20,000 requests

Starts a healthy fixture upstream and one faulty upstream of every kind
(`octoroute.demo.faults`) in this process, and `octoroute serve --workers 1` as a
child process in front of them. Sends `--rounds` rounds of `--requests` mixed
requests (both APIs, stream or not, good and bad input), reads the gateway's RSS
and open descriptors from /proc after each round, and prints a table. Exits 1 if
any request was lost, cut silently or got a 5xx for bad input; never fails on a
resource number (the test suite's tests/integration/test_soak.py does).
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

from octoroute.demo.faults import VIOLATIONS, FaultFleet, Outcome, config_toml, measure, plan_mix, run_mix
from octoroute.demo.simulated import SimulatedUpstream
from procs import Services, free_port, wait_ready


async def soak(requests: int, concurrency: int, rounds: int, seed: int, work: Path) -> int:
    healthy = SimulatedUpstream(label="healthy", record=False)
    await healthy.start()
    try:
        async with FaultFleet(healthy.base_url) as fleet:
            port = free_port()
            config = work / "faults.toml"
            config.write_text(config_toml(fleet.gateway_config(), port=port))
            with Services(work) as services:
                argv = [sys.executable, "-m", "octoroute", "serve", "--config", str(config), "--workers", "1"]
                gateway = services.start("octoroute", argv)
                await asyncio.to_thread(wait_ready, gateway, port, "/health", 30)
                return await _rounds(f"http://127.0.0.1:{port}", gateway.pid, requests, concurrency, rounds, seed)
    finally:
        await healthy.stop()


async def _rounds(url: str, pid: int, requests: int, concurrency: int, rounds: int, seed: int) -> int:
    start = measure(pid)
    totals: Counter[Outcome] = Counter()
    violations: list[str] = []
    print(f"{'round':>5} {'requests':>9} {'RSS MiB':>8} {'fds':>5} {'violations':>10}")
    print(f"{'start':>5} {0:>9} {start.rss_kib / 1024:>8.1f} {start.fds:>5} {0:>10}")
    for n in range(1, rounds + 1):
        report = await run_mix(url, plan_mix(requests, seed=seed + n), concurrency=concurrency)
        totals.update(report.outcomes)
        violations += report.violations
        now = measure(pid)
        print(f"{n:>5} {n * requests:>9} {now.rss_kib / 1024:>8.1f} {now.fds:>5} {len(violations):>10}")
    print(f"\nRSS {start.rss_kib / 1024:.1f} -> {now.rss_kib / 1024:.1f} MiB, fds {start.fds} -> {now.fds}")
    print("\noutcome                 requests")
    for outcome in Outcome:
        marker = "  <- must be 0" if outcome in VIOLATIONS else ""
        print(f"{outcome.value:<22} {totals[outcome]:>9}{marker}")
    for line in violations[:20]:
        print("  ", line)
    return 1 if violations else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, measured after each (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="octoroute-faults-") as work:
        return asyncio.run(soak(args.requests, args.concurrency, args.rounds, args.seed, Path(work)))


if __name__ == "__main__":
    sys.exit(main())

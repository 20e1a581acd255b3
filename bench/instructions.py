"""Instructions per request, counted by valgrind's callgrind: repeatable where timings are not.

Runs one octoroute worker under `valgrind --tool=callgrind` in front of the
simulated upstream, sends it a fixed number of non-streaming requests one at
a time over one keep-alive connection, stops it, and reads the instruction
total. Two runs per variant (`--base` requests, then `--base + --requests`)
cancel start-up and shutdown out: their difference divided by `--requests`
is the cost of one request. The variants are the gateway with metrics on and
with `[observability] metrics = false`, so the last line is what metrics cost
per request, in instructions. The same code and inputs give the same counts
within about 1.5% whatever else the machine is doing (0.5% between back-to-back
runs; up to 1.5% seen across runs of code paths a change did not touch), which
makes this the measure to compare changes with; the CPU times of `overhead.py`
move by ±10-20% between runs. It takes about two minutes (callgrind runs Python some
fifty times slower).

    .venv/bin/python bench/instructions.py [--requests 400] [--base 40]
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import sys
import tempfile
from pathlib import Path

import orjson

from overhead import UPSTREAM_MODEL, gateway_config
from procs import Services, free_port, wait_ready

SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)
BODY = orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi there"}]})


def count(work: Path, metrics: bool, requests: int, valgrind: str) -> int:
    """Instructions of one gateway run that served `requests` requests."""
    with Services(work) as services:
        upstream_port, port = free_port(), free_port()
        argv = [sys.executable, "-m", "octoroute.demo.simulated", "--port", str(upstream_port), "--label", "up"]
        wait_ready(services.start("upstream", argv), upstream_port, "/health", timeout=30)
        config = work / f"octoroute-{metrics}.toml"
        config.write_text(gateway_config(upstream_port, None, port, metrics=metrics))
        out = work / f"callgrind-{metrics}-{requests}.out"
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "octoroute"]
        gateway = services.start("octoroute", [*argv, "serve", "--config", str(config), "--port", str(port)])
        wait_ready(gateway, port, "/health", timeout=300)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for _ in range(requests):
                conn.request("POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"the gateway answered {response.status}:\n{gateway.log_tail()}")
        finally:
            conn.close()
        services.stop(gateway)  # SIGTERM: a clean exit, so callgrind writes its totals
    match = SUMMARY.search(out.read_bytes())
    if match is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests whose cost is measured")
    parser.add_argument("--base", type=int, default=40, help="requests in the baseline run (warms the gateway up)")
    args = parser.parse_args()
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="octoroute-instructions-") as tmp:
        for name, metrics in (("metrics on", True), ("metrics off", False)):
            low = count(Path(tmp), metrics, args.base, valgrind)
            high = count(Path(tmp), metrics, args.base + args.requests, valgrind)
            per_request[name] = (high - low) / args.requests
            print(f"{name:<12} {per_request[name]:>10,.0f} instructions per request", flush=True)
    extra = per_request["metrics on"] - per_request["metrics off"]
    share = extra / per_request["metrics off"]
    print(f"{'metrics cost':<12} {extra:>10,.0f} instructions per request ({share:+.1%})")
    print(f"(one non-streaming request at a time, model 'fast', upstream model '{UPSTREAM_MODEL}')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

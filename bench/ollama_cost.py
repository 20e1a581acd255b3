"""What Ollama's API costs next to the OpenAI one, per request, in one run.

Starts a simulated OpenAI-compatible upstream (zero delays) and one gateway
worker as child processes, then sends the same one-message chat, one request at
a time, as `POST /v1/chat/completions` (passed through) and as `POST /api/chat`
(translated to OpenAI and back, NDJSON when streamed), streamed and not, in
interleaved rounds. It prints the gateway's CPU milliseconds per request (utime
+ stime from /proc) for each, and the ratio to the OpenAI route. Never fails on
a number; see bench/README.md.

    .venv/bin/python bench/ollama_cost.py [--requests 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

from procs import Services, cpu_by_group, free_port, wait_ready

MESSAGES = [{"role": "user", "content": "Why is the sky blue? Answer in one short paragraph."}]
ROUTES = {
    "openai": ("/v1/chat/completions", {"model": "fast", "messages": MESSAGES}),
    "ollama": ("/api/chat", {"model": "fast:latest", "messages": MESSAGES}),
}


def config(upstream_port: int, port: int) -> str:
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[[models.fast]]\nname = "sim"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n\n'
        '[routing]\nstrategy = "rule"\n\n[health]\nactive = false\n\n[observability]\nlog_level = "warning"\n'
    )


def send(conn: http.client.HTTPConnection, path: str, body: bytes) -> None:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {data[:200]!r}")


def cpu_ms_per_request(pgid: int, port: int, path: str, body: bytes, requests: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        send(conn, path, body)  # warm: connection and code paths
        before = cpu_by_group([pgid])[pgid]
        for _ in range(requests):
            send(conn, path, body)
        return (cpu_by_group([pgid])[pgid] - before) / requests * 1000
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Services(Path(tmp)) as services:
        up_port, port = free_port(), free_port()
        upstream = services.start(
            "upstream", [sys.executable, "-m", "octoroute.demo.simulated", "--port", str(up_port)]
        )
        wait_ready(upstream, up_port, "/health", timeout=30)
        (Path(tmp) / "gw.toml").write_text(config(up_port, port))
        argv = [sys.executable, "-m", "octoroute", "serve", "--config", str(Path(tmp) / "gw.toml"), "--workers", "1"]
        gateway = services.start("octoroute", argv)
        wait_ready(gateway, port, "/health", timeout=30)
        samples: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, (path, body) in ROUTES.items():
                for stream in (False, True):
                    raw = orjson.dumps({**body, "stream": stream})
                    key = f"{name} {'stream' if stream else 'whole'}"
                    samples.setdefault(key, []).append(cpu_ms_per_request(gateway.pid, port, path, raw, args.requests))
    medians = {key: statistics.median(values) for key, values in samples.items()}
    print(f"gateway CPU per request, median of {args.rounds} rounds of {args.requests} sequential requests")
    for key, value in medians.items():
        base = medians[f"openai {key.split()[1]}"]
        print(f"  {key:14} {value:6.3f} ms   ×{value / base:4.2f} of /v1/chat/completions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

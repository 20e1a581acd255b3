"""CPU of `/v1/responses` translated to chat completions, next to `/v1/chat/completions`,
in one run against the same gateway and upstream.

Starts the simulated upstream (zero delays) and one `octoroute serve --workers 1`
in front of it, then sends the same prompt one request at a time over a keep-alive
connection to each route in turn, in interleaved blocks so drift hits both alike:
non-streamed and streamed. The gateway's CPU (utime + stime of its process group,
from /proc) over each block gives CPU per request; for streams also per upstream
chunk (the same chunks feed both routes) and per event the client received (a
Responses stream has more: created, in_progress, item and part events). It reports
and never fails on a number.

    .venv/bin/python bench/responses_cost.py [--requests 400] [--rounds 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from overhead import start_gateway
from procs import Service, Services, cpu_by_group, free_port, wait_ready

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SAME_ANSWER = "same prompt on both routes; the upstream answers both with the same chunks"


@dataclass(slots=True)
class Row:
    route: str
    mode: str
    requests: int = 0
    cpu_seconds: float = 0.0
    upstream_chunks: int = 0
    client_events: int = 0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def cpu_us_per_chunk(self) -> float:
        return self.cpu_seconds * 1e6 / self.upstream_chunks if self.upstream_chunks else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds * 1e6 / self.client_events if self.client_events else 0.0


def body(route: str, stream: bool) -> bytes:
    if route == "/v1/chat/completions":
        return orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": PROMPT}], "stream": stream})
    return orjson.dumps({"model": "fast", "input": PROMPT, "stream": stream, "store": False})


def send(conn: http.client.HTTPConnection, route: str, stream: bool) -> tuple[int, int]:
    """One request; (upstream chunks, client events) it carried (0, 1 unstreamed)."""
    conn.request("POST", route, body(route, stream), {"Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read()
    if response.status != 200:
        raise SystemExit(f"{route} answered {response.status}: {raw[:300]!r}")
    if not stream:
        return 0, 1
    if route == "/v1/chat/completions":
        data = raw.count(b"\ndata: ") + raw.startswith(b"data: ")
        return data - 1, data  # every chunk but [DONE] came from the upstream
    return 0, raw.count(b"event: ")


def run_block(
    conn: http.client.HTTPConnection, gateway: Service, row: Row, requests: int, chunks_per_stream: int
) -> None:
    stream = row.mode == "streamed"
    before = cpu_by_group([gateway.pid])[gateway.pid]
    events = 0
    for _ in range(requests):
        _, received = send(conn, row.route, stream)
        events += received
    row.cpu_seconds += cpu_by_group([gateway.pid])[gateway.pid] - before
    row.requests += requests
    row.client_events += events
    row.upstream_chunks += chunks_per_stream * requests if stream else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per route, mode and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="octoroute-bench-") as tmp, Services(Path(tmp)) as services:
        upstream_port = free_port()
        argv = [sys.executable, "-m", "octoroute.demo.simulated", "--port", str(upstream_port), "--label", "up"]
        wait_ready(services.start("upstream", argv), upstream_port, "/health", timeout=30)
        gateway, port = start_gateway(services, Path(tmp), upstream_port, None)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        chunks, _ = send(conn, "/v1/chat/completions", True)
        rows = [
            Row(route, mode)
            for mode in ("non-streamed", "streamed")
            for route in ("/v1/chat/completions", "/v1/responses")
        ]
        for row in rows:  # warm-up, unmeasured
            for _ in range(50):
                send(conn, row.route, row.mode == "streamed")
        for _ in range(args.rounds):
            for row in rows:
                run_block(conn, gateway, row, args.requests, chunks)
        conn.close()
    print(f"octoroute CPU per request, {args.rounds} x {args.requests} requests per row ({SAME_ANSWER})")
    print(f"{'route':<22} {'mode':<13} {'CPU ms/req':>10} {'µs/upstream chunk':>18} {'client events/req':>18}")
    for row in rows:
        per_chunk = f"{row.cpu_us_per_chunk:.1f}" if row.upstream_chunks else "-"
        per_req_events = row.client_events / row.requests
        print(f"{row.route:<22} {row.mode:<13} {row.cpu_ms_per_request:>10.3f} {per_chunk:>18} {per_req_events:>18.1f}")
    for mode in ("non-streamed", "streamed"):
        chat, responses = (r for r in rows if r.mode == mode)
        ratio = responses.cpu_seconds / chat.cpu_seconds if chat.cpu_seconds else float("nan")
        print(f"{mode}: /v1/responses costs {ratio:.2f}x the CPU of /v1/chat/completions per request")
    if args.json is not None:
        rows_out = [
            {**asdict(r), "cpu_ms_per_request": r.cpu_ms_per_request, "cpu_us_per_chunk": r.cpu_us_per_chunk}
            for r in rows
        ]
        args.json.write_bytes(orjson.dumps(rows_out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()

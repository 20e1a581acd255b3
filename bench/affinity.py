"""Slots and conversation affinity against weighted random selection.

Multi-turn conversations (an agent's shape: one shared system prompt, every
turn adding a tool result and a question) run concurrently through a gateway
in front of several servers with slots and a per-slot prompt cache. Each
selection mode gets a fresh gateway and fresh servers (empty caches):

- `weighted random`: octoroute 1.0's selection, no slots, no affinity
  (`[selection] least_busy = false`, `[affinity] enabled = false`);
- `least busy + slots`: `max_concurrency` per endpoint, least-busy selection
  and the waiting line, affinity off;
- `slots + affinity`: the same with `[affinity]` on (the default).

Reported per mode: p50/p99 latency of a turn as the client sees it, and the
prompt tokens the servers processed per turn (llama.cpp's `timings.prompt_n`:
the tokens not found in the slot's cache), for later turns (2..n) and all.

    .venv/bin/python bench/affinity.py                  # fixture servers (demo.slotted), ~1 min
    .venv/bin/python bench/affinity.py --llama          # two real llama-server processes (tiny model)

The fixture is `octoroute.demo.slotted.SlottedUpstream`: N slots each keeping
its last prompt, `--prefill-ms` per prompt token not in the cache (the cost
that makes re-processing visible), `--token-ms` per generated token.
`--llama` starts llama.cpp servers with `../shared/llm/start_llama_server.sh`
(one slot each: the script runs `-np 1`) and reads the real `timings`.
Everything is on loopback, bounded by `--time-limit`; it reports and never
fails on a number. Timings belong here, not in tests/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from octoroute.config import build_topology, parse_config
from octoroute.demo.slotted import SlottedUpstream
from octoroute.server import create_app

REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO.parent / "shared" / "llm" / "start_llama_server.sh"
WORDS = [
    "file",
    "module",
    "function",
    "returns",
    "value",
    "error",
    "test",
    "config",
    "request",
    "endpoint",
    "slot",
    "cache",
    "prompt",
    "token",
    "server",
    "client",
    "stream",
    "header",
    "status",
    "retry",
    "queue",
    "worker",
    "process",
    "memory",
    "thread",
    "lock",
    "buffer",
    "index",
]

MODES: dict[str, dict[str, Any]] = {
    "weighted random": {"slots": False, "selection": {"least_busy": False}, "affinity": {"enabled": False}},
    "least busy + slots": {"slots": True, "selection": {"least_busy": True}, "affinity": {"enabled": False}},
    "slots + affinity": {"slots": True, "selection": {"least_busy": True}, "affinity": {"enabled": True}},
}


@dataclass(slots=True)
class Turn:
    conversation: int
    number: int
    latency_s: float
    prompt_tokens: int
    prompt_n: int  # processed (not from cache)
    endpoint: str
    affinity: str


@dataclass(slots=True)
class ModeResult:
    mode: str
    turns: list[Turn] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(t.latency_s for t in self.turns)
        later = [t for t in self.turns if t.number > 1]
        return {
            "mode": self.mode,
            "turns": len(self.turns),
            "errors": dict(self.errors),
            "p50_ms": round(_pct(lat, 0.50) * 1000, 1) if lat else None,
            "p99_ms": round(_pct(lat, 0.99) * 1000, 1) if lat else None,
            "later_turn_mean_ms": round(statistics.mean(t.latency_s for t in later) * 1000, 1) if later else None,
            "later_turn_p50_ms": round(_pct(sorted(t.latency_s for t in later), 0.5) * 1000, 1) if later else None,
            "prompt_n_per_later_turn": round(statistics.mean(t.prompt_n for t in later), 1) if later else None,
            "prompt_tokens_per_later_turn": round(statistics.mean(t.prompt_tokens for t in later), 1)
            if later
            else None,
            "prompt_n_per_turn": round(statistics.mean(t.prompt_n for t in self.turns), 1) if self.turns else None,
            "prompt_n_total": sum(t.prompt_n for t in self.turns),
            "affinity": dict(Counter(t.affinity for t in self.turns)),
            "seconds": round(self.seconds, 1),
        }


def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def system_prompt(words: int) -> str:
    return "You are a coding agent. Tools: read, write, run. Rules follow. " + _text(random.Random(0), words)


@contextlib.asynccontextmanager
async def gateway(config: dict[str, Any]) -> AsyncIterator[str]:
    """An octoroute app on a loopback port, in this process; yields its base URL."""
    parsed = parse_config(config, {})
    app = create_app(parsed, build_topology(parsed, {}))
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def gateway_config(mode: str, urls: Sequence[str], slots: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = MODES[mode]
    endpoints = []
    for i, url in enumerate(urls):
        entry: dict[str, Any] = {"name": f"s{i}", "id": f"s{i}", "base_url": url}
        if spec["slots"]:
            entry["max_concurrency"] = slots
        endpoints.append(entry)
    return {
        "models": {"fast": endpoints},
        "routing": {"strategy": "rule"},
        # Discovery would read the servers' slots (llama.cpp /props): only the slot modes may know them.
        "health": {"active": False, "discover": bool(spec["slots"])},
        "timeouts": {"connect": 5, "fast": {"first_byte": 600, "total": 600}},
        "queue": {"max_waiting": 1000, "max_wait_seconds": 600},
        "selection": spec["selection"],
        "affinity": spec["affinity"],
        "observability": {"log_level": "warning"},
    }


async def conversation(
    session: aiohttp.ClientSession, url: str, index: int, args: argparse.Namespace, result: ModeResult
) -> None:
    rng = random.Random(1000 + index)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": system_prompt(args.system_words)},
        {"role": "user", "content": f"Task {index}: " + _text(rng, args.turn_words)},
    ]
    for number in range(1, args.turns + 1):
        body = {"model": "fast", "messages": messages, "max_tokens": args.max_tokens, "temperature": 0}
        began = time.perf_counter()
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            raw = await response.read()
            headers = response.headers
            status = response.status
        latency = time.perf_counter() - began
        if status != 200:
            result.errors[str(status)] += 1
            return
        payload = orjson.loads(raw)
        timings = payload.get("timings") or {}
        usage = payload.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        prompt_n = int(timings.get("prompt_n", prompt_tokens))
        result.turns.append(
            Turn(
                index,
                number,
                latency,
                prompt_tokens,
                prompt_n,
                headers.get("X-Octoroute-Endpoint", "?"),
                headers.get("X-Octoroute-Affinity", "off"),
            )
        )
        answer = payload["choices"][0]["message"].get("content") or ""
        messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": "Tool result: " + _text(rng, args.turn_words)})


async def run_mode(mode: str, urls: Sequence[str], slots: int, args: argparse.Namespace) -> ModeResult:
    result = ModeResult(mode)
    began = time.perf_counter()
    async with gateway(gateway_config(mode, urls, slots, args)) as url:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            gate = asyncio.Semaphore(args.concurrency)

            async def one(i: int) -> None:
                async with gate:
                    await conversation(session, url, i, args, result)

            try:
                async with asyncio.timeout(args.time_limit):
                    await asyncio.gather(*(one(i) for i in range(args.conversations)))
            except TimeoutError:
                result.errors["time limit"] += 1
    result.seconds = time.perf_counter() - began
    return result


async def fixture_run(args: argparse.Namespace) -> list[ModeResult]:
    results = []
    for mode in MODES:
        ups = [
            SlottedUpstream(
                label=f"s{i}",
                slots=args.slots,
                prefill_seconds_per_token=args.prefill_ms / 1000,
                reply_tokens=args.max_tokens,
                token_delay=args.token_ms / 1000,
            )
            for i in range(args.endpoints)
        ]
        for up in ups:
            await up.start()
        try:
            results.append(await run_mode(mode, [u.base_url for u in ups], args.slots, args))
        finally:
            for up in ups:
                await up.stop()
    return results


def start_llama(workdir: Path, model: str) -> tuple[int, str]:
    """One llama-server from the shared script; (pid, base_url)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run(
        ["bash", str(START_SCRIPT), str(workdir), str(port), model],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"llama-server did not start: {out.stdout}{out.stderr}")
    pid, url = out.stdout.strip().splitlines()[-1].split()
    return int(pid), f"{url}/v1"


def stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def llama_run(args: argparse.Namespace) -> list[ModeResult]:
    results = []
    for mode in ("weighted random", "slots + affinity"):
        pids: list[int] = []
        try:
            urls = []
            for _ in range(args.endpoints):  # fresh servers per mode: empty caches
                pid, url = start_llama(REPO / ".llm", args.model)
                pids.append(pid)
                urls.append(url)
            results.append(await run_mode(mode, urls, 1, args))
        finally:
            for pid in pids:
                stop_pid(pid)
    return results


def print_results(results: list[ModeResult], args: argparse.Namespace) -> None:
    print(f"# {args.title}")
    print(
        f"endpoints={args.endpoints} slots/endpoint={1 if args.llama else args.slots} "
        f"conversations={args.conversations} "
        f"concurrency={args.concurrency} turns={args.turns} system_words={args.system_words} "
        f"turn_words={args.turn_words} max_tokens={args.max_tokens}"
        + ("" if args.llama else f" prefill_ms/token={args.prefill_ms} token_ms={args.token_ms}")
    )
    head = (
        "| mode | turns | p50 ms | p99 ms | later turns: mean ms | later turns: p50 ms "
        "| prompt tokens / later turn | processed / later turn | processed / turn | processed total "
        "| affinity | errors |"
    )
    print(head)
    print("|" + "---|" * 12)
    for r in results:
        s = r.summary()
        print(
            f"| {s['mode']} | {s['turns']} | {s['p50_ms']} | {s['p99_ms']} | {s['later_turn_mean_ms']} "
            f"| {s['later_turn_p50_ms']} | {s['prompt_tokens_per_later_turn']} "
            f"| {s['prompt_n_per_later_turn']} | {s['prompt_n_per_turn']} | {s['prompt_n_total']} "
            f"| {s['affinity']} | {s['errors'] or '-'} |"
        )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama", action="store_true", help="real llama-server processes instead of fixtures")
    p.add_argument("--model", default="tiny", help="with --llama: tiny, toolcaller or smollm2")
    p.add_argument("--endpoints", type=int, default=None)
    p.add_argument("--slots", type=int, default=2, help="fixture slots per endpoint")
    p.add_argument("--conversations", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=None, help="conversations running at once")
    p.add_argument("--turns", type=int, default=None)
    p.add_argument("--system-words", type=int, default=None)
    p.add_argument("--turn-words", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument(
        "--prefill-ms",
        type=float,
        default=1.0,
        help="fixture: per prompt token not in the cache (1 ms: 1,000 tokens/s)",
    )
    p.add_argument("--token-ms", type=float, default=2.0, help="fixture: per generated token")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per mode")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    # Defaults differ: the fixture can take an agent-sized prompt; llama's tiny model has n_ctx 2048.
    defaults = (
        {"endpoints": 2, "conversations": 4, "concurrency": 2, "turns": 6, "system_words": 250, "turn_words": 30}
        if args.llama
        else {
            "endpoints": 3,
            "conversations": 18,
            "concurrency": 6,
            "turns": 8,
            "system_words": 1500,
            "turn_words": 150,
        }
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.title = "real llama-server (" + args.model + ")" if args.llama else "fixture servers (demo.slotted)"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    results = asyncio.run(llama_run(args) if args.llama else fixture_run(args))
    print_results(results, args)
    if args.json is not None:
        args.json.write_text(orjson.dumps([r.summary() for r in results], option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decision time of `strategy = "tool"` with a real llama.cpp server as the router
model: `Router.decide` per request, through the gateway's own router call
(pool, attempt plan, timeout), p50 and p90 in ms.

    .venv/bin/python bench/tool_routing.py [--decisions 60]      # ~30 s

Starts llama-server (../shared/llm/start_llama_server.sh, model `toolcaller`, a
random-weight model steered to answer `tool_choice: "required"` with one call)
and times decisions for a short question and a 100 KB paste (cut to
`llm_max_prompt_chars`, here 400: the toy model's vocabulary spends about a
token per character and has a 2,048-token context). The `llm` rows ask the
same server for a tier word, which this model answers with empty text at once:
they show the cost of the round trip alone, next to the ~60 tokens the
forced call takes. The decision column shows what was decided, so a fallback
cannot pass for a fast call. Reports and never fails on a number; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

from aiohttp import web

from octoroute.config.loader import parse_config
from octoroute.config.topology import build_topology
from octoroute.core.types import Importance
from octoroute.routing.features import extract_features
from octoroute.server import create_app
from octoroute.server.state import LIVE

ROOT = Path(__file__).resolve().parents[1]
START = ROOT.parent / "shared" / "llm" / "start_llama_server.sh"
MODEL = "toolcaller"
PROMPTS = {"short": "What is the history of tea?", "100 KB": "word " * 20_000}


def start_llama() -> tuple[int, str]:
    out = subprocess.run(
        ["bash", str(START), str(ROOT / ".llm"), str(18000 + os.getpid() % 1000), MODEL],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    pid, url = out.stdout.split()[-2:]
    return int(pid), url


async def time_decisions(url: str, strategy: str, prompt: str, count: int) -> tuple[float, float, set[str]]:
    config = parse_config(
        {
            "models": {"fast": [{"name": MODEL, "base_url": f"{url}/v1"}]},
            "routing": {"strategy": strategy, "router_tier": "fast", "llm_max_prompt_chars": 400},
            "health": {"active": False},
            "capabilities": {MODEL: {"tools": True}},  # the bundled table does not know the toy model
        },
        {},
    )
    app = create_app(config, build_topology(config, {}))
    runner = web.AppRunner(app)
    await runner.setup()  # starts the upstream pool; no port is needed to call the router
    try:
        router = app[LIVE].gateway.router
        messages = [{"role": "user", "content": prompt}]
        features = extract_features(messages, tools_present=False, importance=Importance.NORMAL, task_type=None)
        times, decided = [], set()
        for _ in range(count):
            started = time.perf_counter()
            decision = await router.decide(features, prompt)
            times.append((time.perf_counter() - started) * 1000)
            decided.add(f"{decision.group} {decision.reason.value}")
    finally:
        await runner.cleanup()
    times.sort()
    return statistics.median(times), times[max(0, int(0.9 * count) - 1)], decided


async def main(url: str, count: int) -> None:
    print(f"{'strategy':<9}{'prompt':<8}{'p50 ms':>9}{'p90 ms':>9}  decision")
    for strategy in ("tool", "llm"):
        for label, prompt in PROMPTS.items():
            p50, p90, decided = await time_decisions(url, strategy, prompt, count)
            print(f"{strategy:<9}{label:<8}{p50:>9.1f}{p90:>9.1f}  {', '.join(sorted(decided))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=60)
    args = parser.parse_args()
    pid, url = start_llama()
    try:
        asyncio.run(main(url, args.decisions))
    finally:
        os.kill(pid, signal.SIGTERM)

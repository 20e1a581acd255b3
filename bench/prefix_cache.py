"""Prompt tokens a real llama.cpp server re-processes per turn of an agent's
conversation through /v1/messages, when a system message arrives mid-conversation
(Claude Code sends one; with mid-conversation tool changes it can appear late).

    .venv/bin/python bench/prefix_cache.py            # ~30 s with the tiny model

Starts llama-server (../shared/llm/start_llama_server.sh, model `tiny` with a
Qwen 2.5-style chat template, one slot, prompt cache on by default) and an in-process gateway in front of it, then plays
the same four-turn conversation three ways:

- `user note`: octoroute now, `[groups] late_system = "user"` (the default);
- `system in place`: octoroute now, `late_system = "system"`;
- `hoisted`: what octoroute did before, the late system message folded into the
  leading system prompt (played by sending it folded).

llama-server reports `prompt_tokens_details.cached_tokens`; through the Anthropic
translation that is `cache_read_input_tokens`, and `input_tokens` is what it had
to process. Reports and never fails on a number; loopback only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from octoroute.config.loader import parse_config
from octoroute.config.topology import build_topology
from octoroute.server import create_app

ROOT = Path(__file__).resolve().parents[1]
START = ROOT.parent / "shared" / "llm" / "start_llama_server.sh"
SYSTEM = "You are a careful coding assistant. " + " ".join(f"Rule {i}: keep the code tidy." for i in range(4))
LATE = "Environment: the working directory is /work; the date is Monday."
USER = [f"Question {n}: please look at file_{n}.py and tell me what it does." for n in range(4)]
ASSISTANT = [f"Answer {n}: it defines a helper." for n in range(3)]
# Chat templates in the Qwen style render tool definitions after the system text, so what
# changes at the end of the system message changes everything after it.
TOOLS = [
    {
        "name": name,
        "description": f"{name} a file in the workspace; paths are relative to the working directory.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    }
    for name in ("Read", "Write", "Edit")
]


def conversation(turn: int, late_at: int = 2) -> list[dict[str, Any]]:
    """Turn `turn` (0-based): user/assistant pairs so far, the late system message
    (from turn `late_at` on) right after the assistant answer it followed."""
    messages: list[dict[str, Any]] = []
    for n in range(turn + 1):
        if n > 0:
            messages.append({"role": "assistant", "content": ASSISTANT[n - 1]})
        if n == late_at:
            messages.append({"role": "system", "content": LATE})
        messages.append({"role": "user", "content": USER[n]})
    return messages


def hoisted(messages: list[dict[str, Any]], system: str) -> tuple[list[dict[str, Any]], str]:
    late = [m["content"] for m in messages if m["role"] == "system"]
    return [m for m in messages if m["role"] != "system"], "\n\n".join([system, *late])


async def gateway(upstream: str, late_system: str) -> web.AppRunner:
    data = {
        "models": {"fast": [{"name": "tiny", "base_url": upstream}]},
        "routing": {"strategy": "rule"},
        "health": {"active": False},
        "groups": {"fast": {"late_system": late_system}},
    }
    config = parse_config(data, {})
    runner = web.AppRunner(create_app(config, build_topology(config, {})), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def play(session: aiohttp.ClientSession, url: str, variant: str) -> list[tuple[int, int]]:
    """(processed, cached) prompt tokens per turn."""
    system = f"[{variant}] {SYSTEM}"  # a different start per variant: turn 1 never reuses another's cache
    rows = []
    for turn in range(4):
        messages = conversation(turn)
        body: dict[str, Any] = {"model": "fast", "max_tokens": 1, "system": system, "messages": messages}
        body["tools"] = TOOLS
        if variant == "hoisted":
            body["messages"], body["system"] = hoisted(messages, system)
        async with session.post(f"{url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}) as r:
            answer = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{variant} turn {turn + 1}: {r.status} {answer}")
        usage = answer["usage"]
        rows.append((usage["input_tokens"], usage["cache_read_input_tokens"]))
    return rows


def start_llama() -> tuple[int, str]:
    out = subprocess.run(
        ["bash", str(START), str(ROOT / ".llm"), str(18000 + os.getpid() % 1000), "tiny"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    pid, url = out.stdout.split()[-2:]
    return int(pid), url


async def main(pid: int, url: str) -> None:
    try:
        results = {}
        async with aiohttp.ClientSession() as session:
            for variant, late in (("user note", "user"), ("system in place", "system"), ("hoisted", "system")):
                runner = await gateway(f"{url}/v1", late)
                try:
                    port = runner.addresses[0][1]
                    results[variant] = await play(session, f"http://127.0.0.1:{port}", variant)
                finally:
                    await runner.cleanup()
    finally:
        os.kill(pid, signal.SIGTERM)
    print("prompt tokens processed / reused from llama-server's cache, per turn (late system message from turn 3)")
    print(f"{'turn':<6}" + "".join(f"{v:>24}" for v in results))
    for turn in range(4):
        cells = "".join(f"{rows[turn][0]:>14} / {rows[turn][1]:<7}" for rows in results.values())
        print(f"{turn + 1:<6}{cells}")
    for variant, rows in results.items():
        print(f"{variant}: {sum(p for p, _ in rows[1:])} tokens processed over turns 2-4")


if __name__ == "__main__":
    asyncio.run(main(*start_llama()))
    sys.exit(0)

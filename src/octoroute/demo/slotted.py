"""A fixture server that behaves like llama.cpp's llama-server with slots.

`SlottedUpstream` has `slots` slots, each keeping the prompt it processed last
(its KV cache). A request takes an idle slot (the one whose cached prompt
shares the longest prefix with it, else the least recently used), waits in the
server's own FIFO when all are busy (as llama-server does), processes only the
tokens past the cached prefix (`prefill_seconds_per_token` each) and answers
with llama.cpp's `timings` (`cache_n`, `prompt_n`) and
`usage.prompt_tokens_details.cached_tokens`. `GET /props` answers
`total_slots` and `n_ctx` as llama-server does.

Tokens are counted as 4 characters of a flat rendering of the messages, which
is enough for prefix reuse to behave as it does on the real server.

Tests can hold answers: with `hold = True` every request, once it has a slot,
waits until `release()` lets it go (`wait_held(n)` returns once n are held).
Used by tests and by `bench/affinity.py`; as a process:
`python -m octoroute.demo.slotted --slots 2 --prefill-ms 0.5`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

CHARS_PER_TOKEN = 4
JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def render_prompt(messages: Sequence[Any]) -> str:
    """A flat text of the messages, as a chat template would make (role markers + text)."""
    parts = []
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, list):
            text = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        else:
            text = "" if content is None else str(content)
        parts.append(f"<|{m.get('role')}|>{text}<|end|>")
    return "".join(parts) + "<|assistant|>"


def tokens_of(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def shared_tokens(a: str, b: str) -> int:
    """Whole tokens of the common prefix of two prompts."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search on slice equality: each comparison runs in C
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo // CHARS_PER_TOKEN


@dataclass(slots=True)
class Slot:
    index: int
    cached: str = ""
    busy: bool = False
    last_used: float = 0.0


@dataclass(frozen=True, slots=True)
class Served:
    """One answered request, for tests and the bench."""

    slot: int
    prompt_tokens: int
    cache_n: int
    prompt_n: int


class SlottedUpstream:
    """A llama-server-like OpenAI-compatible server with slots, on loopback."""

    def __init__(
        self,
        *,
        label: str = "slotted",
        slots: int = 1,
        n_ctx: int = 32768,
        prefill_seconds_per_token: float = 0.0,
        reply_tokens: int = 8,
        token_delay: float = 0.0,
    ) -> None:
        self.label = label
        self.slots = [Slot(i) for i in range(slots)]
        self.n_ctx = n_ctx
        self.prefill_seconds_per_token = prefill_seconds_per_token
        self.reply_tokens = reply_tokens
        self.token_delay = token_delay
        self.hold = False
        self.served: list[Served] = []
        self.arrived = 0  # chat requests received
        self.active = 0  # chat requests being processed in a slot now
        self.max_active = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._held: deque[asyncio.Future[None]] = deque()
        self._held_waiters: list[tuple[int, asyncio.Event]] = []
        self._arrival_waiters: list[tuple[int, asyncio.Event]] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/props", self._props)
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        for future in [*self._held, *self._queue]:
            if not future.done():
                future.cancel()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SlottedUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test controls -------------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._held)

    async def wait_held(self, count: int) -> None:
        """Return once `count` requests are held (needs `hold = True`)."""
        await self._wait(self._held_waiters, lambda: len(self._held) >= count, count)

    async def wait_arrived(self, count: int) -> None:
        """Return once `count` chat requests have arrived."""
        await self._wait(self._arrival_waiters, lambda: self.arrived >= count, count)

    async def _wait(self, waiters: list[tuple[int, asyncio.Event]], done: Any, count: int) -> None:
        if done():
            return
        event = asyncio.Event()
        waiters.append((count, event))
        await event.wait()

    @staticmethod
    def _notify(waiters: list[tuple[int, asyncio.Event]], value: int) -> None:
        for count, event in waiters:
            if value >= count:
                event.set()

    def release(self, count: int = 1) -> None:
        """Let the `count` longest-held requests answer."""
        for _ in range(count):
            future = self._held.popleft()
            if not future.done():
                future.set_result(None)

    def release_all(self) -> None:
        self.hold = False
        self.release(len(self._held))

    # -- the server ----------------------------------------------------------

    def _pick_slot(self, prompt: str) -> Slot | None:
        idle = [s for s in self.slots if not s.busy]
        if not idle:
            return None
        return max(idle, key=lambda s: (shared_tokens(s.cached, prompt), -s.last_used))

    async def _take_slot(self, prompt: str) -> Slot:
        slot = self._pick_slot(prompt) if not self._queue else None
        while slot is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future in self._queue:
                    self._queue.remove(future)
                raise
            slot = self._pick_slot(prompt)
        slot.busy = True
        return slot

    def _free_slot(self, slot: Slot) -> None:
        slot.busy = False
        slot.last_used = time.monotonic()
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                break

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.arrived += 1
        self._notify(self._arrival_waiters, self.arrived)
        prompt = render_prompt(body.get("messages") or [])
        total = tokens_of(prompt)
        if total > self.n_ctx:
            message = (
                f"the request exceeds the available context size, try increasing it "
                f"(n_prompt_tokens={total}, n_ctx={self.n_ctx})"
            )
            error = {"error": {"code": 400, "message": message, "type": "exceed_context_size_error"}}
            return web.Response(status=400, body=orjson.dumps(error), content_type=JSON)
        slot = await self._take_slot(prompt)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            cache_n = min(shared_tokens(slot.cached, prompt), max(total - 1, 0))  # at least one token is processed
            prompt_n = total - cache_n
            began = time.perf_counter()
            if self.prefill_seconds_per_token > 0:
                await asyncio.sleep(prompt_n * self.prefill_seconds_per_token)
            slot.cached = prompt
            prompt_ms = (time.perf_counter() - began) * 1000
            if self.hold:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._held.append(future)
                self._notify(self._held_waiters, len(self._held))
                await future
            served = Served(slot.index, total, cache_n, prompt_n)
            self.served.append(served)
            text = f"{self.label} slot {slot.index} " + "tok " * max(self.reply_tokens - 3, 0)
            slot.cached = prompt + text.strip() + "<|end|>"
            timings = {"cache_n": cache_n, "prompt_n": prompt_n, "prompt_ms": round(prompt_ms, 3)}
            usage = {
                "prompt_tokens": total,
                "completion_tokens": self.reply_tokens,
                "total_tokens": total + self.reply_tokens,
                "prompt_tokens_details": {"cached_tokens": cache_n},
            }
            if body.get("stream") is True:
                return await self._stream(request, body, text.strip(), timings, usage)
            if self.token_delay > 0:
                await asyncio.sleep(self.token_delay * self.reply_tokens)
            return web.Response(
                body=orjson.dumps(self._completion(body, text.strip(), timings, usage)), content_type=JSON
            )
        finally:
            self.active -= 1
            self._free_slot(slot)

    def _completion(self, body: Mapping[str, Any], text: str, timings: object, usage: object) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.label}-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.label),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
            "timings": timings,
        }

    async def _stream(
        self, request: web.Request, body: Mapping[str, Any], text: str, timings: object, usage: object
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{self.label}-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model") or self.label),
        }

        def event(data: object) -> bytes:
            return b"data: " + orjson.dumps(data) + b"\n\n"

        await response.write(
            event(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}],
                }
            )
        )
        for word in text.split(" "):
            if self.token_delay > 0:
                await asyncio.sleep(self.token_delay)
            chunk = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
            await response.write(event({**base, "choices": [chunk]}))
        await response.write(
            event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "timings": timings})
        )
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage") is True:
            await response.write(event({**base, "choices": [], "usage": usage, "timings": timings}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        data = {"object": "list", "data": [{"id": self.label, "object": "model", "created": 0, "owned_by": "llamacpp"}]}
        return web.Response(body=orjson.dumps(data), content_type=JSON)

    async def _props(self, request: web.Request) -> web.Response:
        props = {
            "total_slots": len(self.slots),
            "default_generation_settings": {"n_ctx": self.n_ctx},
            "model_alias": self.label,
        }
        return web.Response(body=orjson.dumps(props), content_type=JSON)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def _serve(args: argparse.Namespace) -> None:
    upstream = SlottedUpstream(
        label=args.label,
        slots=args.slots,
        prefill_seconds_per_token=args.prefill_ms / 1000,
        reply_tokens=args.reply_tokens,
        token_delay=args.token_ms / 1000,
    )
    await upstream.start(args.host, args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    print(f"slotted upstream {args.label} listening on {upstream.base_url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await upstream.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m octoroute.demo.slotted", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--label", default="slotted")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--prefill-ms", type=float, default=0.0, help="per prompt token not in the slot's cache")
    parser.add_argument("--token-ms", type=float, default=0.0, help="per generated token")
    parser.add_argument("--reply-tokens", type=int, default=8)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()

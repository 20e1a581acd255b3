"""A reference relay: the least an aiohttp server + aiohttp client can do per
request, for comparison with the real gateway (whose upstream client is not
aiohttp's: see upstream/http.py).

It forwards the client's body bytes unchanged to one upstream (no parsing, no
routing, no retries, no timeouts, no extra headers) and relays the answer: the
whole body for JSON, chunks as they arrive for SSE. Same event loop (uvloop),
same server settings (`AppRunner(handler_cancellation=True, access_log=None)`)
as octoroute.

    python bench/floor_relay.py --port 3001 --upstream http://127.0.0.1:8081/v1
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": "application/json"}
    async with request.app[SESSION].post(request.app[UPSTREAM], data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(status=upstream.status, body=await upstream.read(), content_type="application/json")
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text='{"status":"ok"}', content_type="application/json")


async def serve(port: int, upstream: str) -> None:
    app = web.Application()
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), skip_auto_headers=("User-Agent",)
    )
    app[SESSION] = session
    app[UPSTREAM] = f"{upstream}/chat/completions"
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.upstream.rstrip("/")))


if __name__ == "__main__":
    main()

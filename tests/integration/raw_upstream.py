"""A scripted upstream on raw sockets, for faults an HTTP framework won't produce:
bodies delimited by the end of the connection, streams cut after an event,
bodies bigger than they should be, events that never end.

    upstream = RawUpstream([Script(head=..., parts=[...], close=True)])
    await upstream.start()          # upstream.base_url -> "http://127.0.0.1:PORT/v1"
    ...
    await upstream.stop()

Each accepted request takes the next script (the last one repeats). A script is
the raw bytes to send after reading the request: the status line and headers,
then each part in turn (an `asyncio.Event` part waits until the test sets it),
then the connection is closed if `close` is set, else kept for the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from octoroute.demo.faults import ANSWER, FIRST, RawServer

__all__ = ["ANSWER", "CHUNK", "LAST_CHUNK", "SSE_HEAD_UNDELIMITED", "RawUpstream", "Script", "json_head", "sse_event"]

SSE_HEAD_UNDELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
"""A stream whose end is the end of the connection (no length, no chunking)."""


def json_head(length: int, status: int = 200) -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


CHUNK = FIRST  # the first chunk of a stream: "Hel"
LAST_CHUNK = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}'
)


@dataclass
class Script:
    head: bytes
    parts: Sequence[bytes | asyncio.Event] = ()  # an Event: wait until the test sets it
    close: bool = True


class RawUpstream(RawServer):
    """Answers the n-th request with the n-th script (the last one repeats)."""

    def __init__(self, scripts: list[Script]) -> None:
        super().__init__()
        self.scripts = scripts

    async def answer(self, writer: asyncio.StreamWriter, body: bytes) -> bool:
        script = self.scripts[min(self.served - 1, len(self.scripts) - 1)]
        writer.write(script.head)
        for part in script.parts:
            if isinstance(part, asyncio.Event):
                await part.wait()
                continue
            writer.write(part)
            await writer.drain()
        await writer.drain()
        return not script.close

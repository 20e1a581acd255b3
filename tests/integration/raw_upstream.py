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
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

SSE_HEAD_UNDELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
"""A stream whose end is the end of the connection (no length, no chunking)."""


def json_head(length: int, status: int = 200) -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


CHUNK = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}'
)
LAST_CHUNK = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}'
)
ANSWER = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


@dataclass
class Script:
    head: bytes
    parts: Sequence[bytes | asyncio.Event] = ()  # an Event: wait until the test sets it
    close: bool = True


@dataclass
class RawUpstream:
    scripts: list[Script]
    served: int = 0
    port: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._read_request(reader):
                script = self.scripts[min(self.served, len(self.scripts) - 1)]
                self.served += 1
                writer.write(script.head)
                for part in script.parts:
                    if isinstance(part, asyncio.Event):
                        await part.wait()
                        continue
                    writer.write(part)
                    await writer.drain()
                await writer.drain()
                if script.close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        return True

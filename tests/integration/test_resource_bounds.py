"""Regression (issue 11): huge upstream answers cost the gateway a bounded amount.
Before the limits, a 256 MiB body took `octoroute serve` to 837 MB RSS (four at
once: 2.9 GB) and one unterminated 96 MiB SSE event cost quadratic CPU. Asserted by
bytes the gateway let the upstream send and by its peak RSS (/proc VmHWM) with the
default `[limits]`, never by time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import urllib3
from tests.support import eventually, free_port, octoroute_serve

from octoroute.demo.faults import config_toml

MIB = 1024 * 1024
PIECE = b"x" * (64 * 1024)


@dataclass
class Firehose:
    """Answers every request with `head`, then up to `total` bytes of `prefix` + x's, never ending
    an event or a JSON value; `sent` counts what the gateway accepted before hanging up."""

    head: bytes
    prefix: bytes
    total: int
    sent: list[int] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")), 0
            )
            await reader.readexactly(length)
            writer.write(self.head + self.prefix)
            while sent < self.total:
                writer.write(PIECE)
                await writer.drain()
                sent += len(PIECE)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sent.append(sent)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
def hoses(loop_thread) -> Iterator[tuple[Firehose, Firehose]]:
    close = b"Connection: close\r\n\r\n"
    body = Firehose(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + close, b'{"a":"', 256 * MIB)
    event = Firehose(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + close, b"data: ", 96 * MIB)
    for hose in (body, event):
        loop_thread.run(hose.start())
    yield body, event
    for hose in (body, event):
        loop_thread.run(hose.stop())


@pytest.fixture
def serve(hoses, tmp_path) -> Iterator[tuple[str, int]]:
    body, event = hoses
    port = free_port()
    models = {
        "fast": [{"name": "m", "base_url": f"http://127.0.0.1:{body.port}/v1"}],
        "deep": [{"name": "m", "base_url": f"http://127.0.0.1:{event.port}/v1"}],
    }
    data = {"models": models, "health": {"active": False, "discover": False}, "retry": {"max_attempts": 1}}
    config = tmp_path / "bounds.toml"
    config.write_text(config_toml(data, port=port))
    with octoroute_serve(config, port) as proc:
        yield f"http://127.0.0.1:{port}", proc.pid


def chat(url: str, model: str, *, stream: bool) -> urllib3.BaseHTTPResponse:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return urllib3.request(
        "POST", f"{url}/v1/chat/completions", body=orjson.dumps(body), headers={"content-type": "application/json"}
    )


def test_four_concurrent_256_mib_answers_are_cut_at_the_limit(serve, hoses, loop_thread):
    url, pid = serve
    body, _ = hoses
    baseline = peak_rss_kib(pid)

    async def four() -> list[urllib3.BaseHTTPResponse]:
        return await asyncio.gather(*(asyncio.to_thread(chat, url, "fast", stream=False) for _ in range(4)))

    responses = loop_thread.run(four(), timeout=120)
    for response in responses:
        assert response.status == 502
        assert "33,554,432-byte limit" in orjson.loads(response.data)["error"]["message"]
    eventually(lambda: len(body.sent) == 4, what="the upstream to see the gateway hang up")
    assert max(body.sent) < 64 * MIB  # the 32 MiB default plus socket buffers, not 256 MiB
    assert peak_rss_kib(pid) - baseline < 400 * 1024  # was 2.9 GB for these four


def test_a_96_mib_event_that_never_ends_is_refused_after_the_event_limit(serve, hoses):
    url, pid = serve
    _, event = hoses
    baseline = peak_rss_kib(pid)
    response = chat(url, "deep", stream=True)
    assert response.status == 502
    assert "8,388,608" in orjson.loads(response.data)["error"]["message"]
    eventually(lambda: len(event.sent) == 1, what="the upstream to see the gateway hang up")
    assert event.sent[0] < 32 * MIB  # read up to the 8 MiB default plus buffers, not 96 MiB
    assert peak_rss_kib(pid) - baseline < 200 * 1024

"""Server-sent events, framed incrementally (https://html.spec.whatwg.org/#server-sent-events).

The relay forwards upstream bytes untouched but only in whole events, so that a
failure mid-event never leaves half an event on the client's stream before the
terminal error event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class EventFramer:
    """Buffers stream bytes and releases them only up to the last complete event.

    >>> f = EventFramer(); f.feed(b"data: 1\\n\\ndata: 2"), f.feed(b"\\n\\n")
    (b'data: 1\\n\\n', b'data: 2\\n\\n')
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk if self._buffer else chunk
        cut = -1
        for sep in _SEPARATORS:
            pos = data.rfind(sep)
            if pos >= 0:
                cut = max(cut, pos + len(sep))
        if cut < 0:
            self._buffer = data
            return b""
        self._buffer = data[cut:]
        return data[:cut]

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated."""
        return self._buffer


def iter_data(payload: bytes) -> Iterator[bytes]:
    """The `data:` values of complete events in `payload` (multi-line data joined by \\n)."""
    text = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for block in text.split(b"\n\n"):
        lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            yield b"\n".join(lines)


def encode_data(payload: bytes) -> bytes:
    """One SSE event carrying `payload` (which must not contain newlines)."""
    return b"data: " + payload + b"\n\n"


def encode_json_events(items: Iterable[object]) -> bytes:
    """One `data:` event per JSON-serialisable item (OpenAI chunks), concatenated."""
    return b"".join(b"data: " + orjson.dumps(item) + b"\n\n" for item in items)

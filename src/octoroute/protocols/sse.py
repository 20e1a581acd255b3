"""Server-sent events, framed incrementally (https://html.spec.whatwg.org/#server-sent-events).

The relay forwards upstream bytes untouched but only in whole events, so that a
failure mid-event never leaves half an event on the client's stream before the
terminal error event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import orjson

_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
_SEPARATOR_REACH = 3  # a separator that straddles two chunks starts at most this many bytes back
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')
_MESSAGE_STOP = re.compile(rb'"type"\s*:\s*"message_stop"')


class EventTooLarge(ValueError):
    """One event grew past the framer's limit before it ended."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"one stream event exceeded {limit:,} bytes (at {size:,} and not yet ended)")
        self.size = size
        self.limit = limit


class EventFramer:
    """Buffers stream bytes and releases them only up to the last complete event.

    Linear in the input: each chunk is searched for event ends once (plus the few
    bytes before it where a separator may have started), and pending bytes are
    joined only when an event completes, so an event that never ends costs
    O(its size), not O(size squared). An event pending past `max_event_bytes`
    raises `EventTooLarge`.

    >>> f = EventFramer(); f.feed(b"data: 1\\n\\ndata: 2"), f.feed(b"\\n\\n")
    (b'data: 1\\n\\n', b'data: 2\\n\\n')
    """

    __slots__ = ("_parts", "_size", "max_event_bytes")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        reach = self._parts[-1][-_SEPARATOR_REACH:] if self._parts else b""
        window = reach + chunk if reach else chunk
        cut = -1
        for sep in _SEPARATORS:
            pos = window.rfind(sep)
            if pos >= 0:
                cut = max(cut, pos + len(sep))
        if cut < 0:
            self._keep(chunk)
            return b""
        offset = cut - len(reach)  # > 0: a separator wholly inside `reach` would have been cut already
        done = b"".join((*self._parts, chunk[:offset])) if self._parts else chunk[:offset]
        self._parts.clear()
        self._size = 0
        if offset < len(chunk):
            self._keep(chunk[offset:])
        return done

    def _keep(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        limit = self.max_event_bytes
        if limit is not None and self._size > limit:
            raise EventTooLarge(self._size, limit)

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated."""
        return b"".join(self._parts)


def ends_stream(events: bytes, anthropic: bool) -> bool:
    """Whether `events` hold the event that ends a stream normally: Anthropic's
    `message_stop`, or OpenAI's `[DONE]` or a chunk with a `finish_reason`."""
    if anthropic:
        return _MESSAGE_STOP.search(events) is not None
    return b"[DONE]" in events or _FINISH_REASON.search(events) is not None


_RESPONSE_END = re.compile(rb'"type"\s*:\s*"(?:response\.completed|response\.failed|response\.incomplete|error)"')


def ends_responses_stream(events: bytes) -> bool:
    """Whether `events` hold the event that ends a Responses API stream:
    `response.completed`, `response.failed`, `response.incomplete` or `error`."""
    return _RESPONSE_END.search(events) is not None


def _readable(data: bytes) -> bool:
    """Whether one `data:` value is JSON, or the `[DONE]` that ends OpenAI streams."""
    if data == b"[DONE]":
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def first_data_problem(events: bytes) -> str | None:
    """Why the first `data:` event in `events` cannot start a stream (it is not
    JSON), or None when it can, or when `events` hold no data yet (comments only)."""
    first = next(iter_data(events), None)
    return None if first is None or _readable(first) else "its first event is not valid JSON"


UNREADABLE = "it sent an event that is not JSON"


class UnreadableEvent(Exception):
    """A stream converter met an upstream event that is not JSON: the stream has a hole
    in it. `converted` is what the events before it became, to send before the error
    event; the relay then ends the stream as for any failure after the commit point."""

    def __init__(self, converted: bytes = b"") -> None:
        super().__init__(UNREADABLE)
        self.converted = converted


def all_data_readable(events: bytes) -> bool:
    """Whether every `data:` value in `events` is JSON (or `[DONE]`): what a stream's
    unterminated last event must be to count as whole rather than cut inside."""
    return all(_readable(data) for data in iter_data(events))


def has_data(events: bytes) -> bool:
    """Whether `events` hold at least one `data:` line (not only comments or ids)."""
    return next(iter_data(events), None) is not None


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

"""A fault mix: faulty upstreams of every kind next to healthy ones, mixed client
traffic (both APIs, stream or not, good and bad input) and a verdict per request.

Used by tests/integration/test_fault_mix.py (small numbers) and bench/faults.py
(large numbers). The faulty servers speak raw HTTP/1.1 on asyncio sockets, so
they can send what a framework never would: bodies cut by the end of the
connection, events that never end, bodies over any limit::

    async with FaultFleet(healthy_base_url) as fleet:
        config = fleet.gateway_config()          # a config dict for octoroute
        ...                                      # start a gateway from it
        report = await run_mix(gateway_url, plan_mix(200, seed=0), concurrency=16)
        assert not report.violations

Every request's verdict is an `Outcome`; the ones that must never happen are in
`VIOLATIONS`: a request lost although a healthy endpoint could serve it, a 5xx
for bad client input, a stream that ends without its terminal or error event,
an answer from a faulty endpoint, an error body not in the API's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

MAX_RESPONSE_BYTES = 65_536
MAX_EVENT_BYTES = 4_096
FIRST_BYTE_TIMEOUT = 0.3  # seconds, for the faulty endpoints only
SLOW_DELAY = 3.0  # seconds before a SLOW_FIRST_BYTE endpoint answers: well past FIRST_BYTE_TIMEOUT


class Fault(enum.StrEnum):
    """How a faulty upstream answers every request."""

    REFUSED = "refused"  # nobody listens on the port
    ERROR_500 = "error_500"
    ERROR_429 = "error_429"  # with Retry-After
    HANG_HEADERS = "hang_headers"  # reads the request, never answers
    SLOW_FIRST_BYTE = "slow_first_byte"  # a valid answer, long after the first-byte timeout
    DROP_MID_STREAM = "drop_mid_stream"  # chunked: one event (or half a body), then a TCP reset
    CUT_UNDELIMITED = "cut_undelimited"  # close-delimited: one event (or half a body), then EOF
    BAD_FIRST_EVENT = "bad_first_event"  # `data: {not json` first
    OVERSIZED = "oversized"  # a body over max_response_bytes
    UNTERMINATED_EVENT = "unterminated_event"  # one event over max_event_bytes that never ends
    GARBAGE = "garbage"  # 200 with a body that is not JSON


POST_COMMIT = frozenset({Fault.DROP_MID_STREAM, Fault.CUT_UNDELIMITED})
"""Faults that strike a stream after its first valid event: the client gets the
API's error event (the commit point was passed), never a retry and never a cut."""


class Api(enum.StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class BadInput(enum.StrEnum):
    MALFORMED_JSON = "malformed_json"
    WRONG_TYPES = "wrong_types"
    DEEP_JSON = "deep_json"
    UNKNOWN_MODEL = "unknown_model"


class Outcome(enum.StrEnum):
    SERVED = "served"  # 2xx from a healthy endpoint, stream complete
    STREAM_ERROR_EVENT = "stream_error_event"  # committed stream ended by the API's error event
    NO_ENDPOINT = "no_endpoint"  # well-formed 5xx where no endpoint could serve
    REJECTED = "rejected"  # well-formed 4xx for bad input
    LOST = "lost"  # an error although a healthy endpoint could serve
    SERVER_ERROR_FOR_BAD_INPUT = "5xx_for_bad_input"
    SILENT_CUT = "silent_cut"  # a stream with neither its terminal nor an error event
    WRONG_ENDPOINT = "wrong_endpoint"  # a 2xx relayed from a faulty endpoint
    MALFORMED = "malformed"  # a body not in the API's shape
    TRANSPORT_ERROR = "transport_error"  # the connection failed or the client timed out


VIOLATIONS = frozenset(
    {
        Outcome.LOST,
        Outcome.SERVER_ERROR_FOR_BAD_INPUT,
        Outcome.SILENT_CUT,
        Outcome.WRONG_ENDPOINT,
        Outcome.MALFORMED,
        Outcome.TRANSPORT_ERROR,
    }
)

HEALTHY_PREFIX = "ok-"
DEAD_GROUP = "dead"
FIRST = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}'
)
ANSWER = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


def _head(status: int, content_type: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n{extra}".encode()


def _json(status: int, body: bytes, extra: str = "") -> bytes:
    return _head(status, "application/json", f"Content-Length: {len(body)}\r\n{extra}\r\n") + body


def _sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class RawServer:
    """A raw-socket HTTP/1.1 server on loopback for faults a framework won't produce.

    Each request's body is read (by Content-Length) and handed to `answer`, which
    writes whatever bytes it likes and says whether the connection stays open;
    `served` counts requests. Subclasses implement `answer`."""

    def __init__(self) -> None:
        self.served = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def answer(self, writer: asyncio.StreamWriter, body: bytes) -> bool:
        """Write the answer to one request whose body is `body`; False ends the connection."""
        raise NotImplementedError

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (body := await _read_request(reader)) is not None:
                self.served += 1
                if not await self.answer(writer, body):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): ending quietly, or asyncio logs the handler as failed
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)


class FaultServer(RawServer):
    """One raw-socket upstream that answers every request with `fault`; `served` counts requests."""

    def __init__(self, fault: Fault) -> None:
        super().__init__()
        self.fault = fault

    async def start(self) -> None:
        if self.fault is Fault.REFUSED:  # a port that was free a moment ago: connections are refused
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
            return
        await super().start()

    async def answer(self, writer: asyncio.StreamWriter, body: bytes) -> bool:
        return await self._answer(writer, b'"stream":true' in body.replace(b" ", b""))

    async def _answer(self, writer: asyncio.StreamWriter, stream: bool) -> bool:
        """Write the fault's answer; False when the connection must end."""
        fault = self.fault
        if fault is Fault.ERROR_500:
            writer.write(_json(500, b'{"error":{"message":"boom","type":"server_error"}}'))
            return True
        if fault is Fault.ERROR_429:
            writer.write(_json(429, b'{"error":{"message":"slow down","type":"rate_limit"}}', "Retry-After: 1\r\n"))
            return True
        if fault is Fault.HANG_HEADERS:
            await asyncio.Event().wait()  # until stop() cancels
        if fault is Fault.SLOW_FIRST_BYTE:
            await asyncio.sleep(SLOW_DELAY)  # the fault itself: a server slower than the timeout
            writer.write(_json(200, ANSWER))
            return True
        if fault is Fault.DROP_MID_STREAM:
            if stream:
                writer.write(
                    _head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n\r\n") + _chunk(_sse(FIRST))
                )
            else:
                writer.write(_head(200, "application/json", f"Content-Length: {len(ANSWER)}\r\n\r\n") + ANSWER[:40])
            await writer.drain()
            writer.transport.abort()
            return False
        if fault is Fault.CUT_UNDELIMITED:
            close = "Connection: close\r\n\r\n"
            if stream:
                writer.write(_head(200, "text/event-stream", close) + _sse(FIRST))
            else:
                writer.write(_head(200, "application/json", close) + ANSWER[:40])
            return False
        if fault is Fault.BAD_FIRST_EVENT:
            writer.write(_head(200, "text/event-stream", "Connection: close\r\n\r\n") + b"data: {not json\n\n")
            writer.write(_sse(FIRST) + _sse(b"[DONE]") if stream else ANSWER)
            return False
        if fault is Fault.OVERSIZED:
            writer.write(_json(200, b" " * (MAX_RESPONSE_BYTES * 3) + ANSWER))
            return True
        if fault is Fault.UNTERMINATED_EVENT:
            content_type = "text/event-stream" if stream else "application/json"
            writer.write(_head(200, content_type, "Connection: close\r\n\r\n") + b"data: " + b"x" * MAX_EVENT_BYTES * 4)
            return False
        writer.write(_json(200, b"<html>not json</html>"))  # Fault.GARBAGE
        return True


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return await reader.readexactly(length) if length else b""


class FaultFleet:
    """One `FaultServer` per `Fault`, and the gateway config that puts each in
    front of (at a higher priority than) the healthy upstream at `healthy_base_url`."""

    def __init__(self, healthy_base_url: str) -> None:
        self.healthy_base_url = healthy_base_url
        self.servers = {fault: FaultServer(fault) for fault in Fault}

    async def __aenter__(self) -> FaultFleet:
        for server in self.servers.values():
            await server.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in self.servers.values():
            await server.stop()

    def gateway_config(self) -> dict[str, Any]:
        """Group `f-<fault>`: the faulty endpoint first, a healthy one second. Group
        `dead`: refusing and failing endpoints only. Faulty endpoints never leave the
        rotation (high failure threshold) so the faults keep being exercised."""
        faulty = {"timeouts": {"first_byte": FIRST_BYTE_TIMEOUT}, "priority": 2}
        models: dict[str, list[dict[str, Any]]] = {
            group_of(fault): [
                {"name": "m", "id": fault.value, "base_url": server.base_url, **faulty},
                {"name": "m", "id": f"{HEALTHY_PREFIX}{fault.value}", "base_url": self.healthy_base_url},
            ]
            for fault, server in self.servers.items()
        }
        models["fast"] = [{"name": "m", "id": f"{HEALTHY_PREFIX}fast", "base_url": self.healthy_base_url}]
        models[DEAD_GROUP] = [
            {"name": "m", "id": f"dead-{fault.value}", "base_url": self.servers[fault].base_url, **faulty}
            for fault in (Fault.REFUSED, Fault.ERROR_500)
        ]
        return {
            "models": models,
            "routing": {"strategy": "rule"},
            "health": {"active": False, "discover": False, "failure_threshold": 100},
            "retry": {"max_attempts": 3, "backoff_base_ms": 1, "backoff_max_ms": 5},
            "limits": {"max_response_bytes": MAX_RESPONSE_BYTES, "max_event_bytes": MAX_EVENT_BYTES},
        }


def group_of(fault: Fault) -> str:
    return f"f-{fault.value.replace('_', '-')}"


@dataclass(frozen=True, slots=True)
class Planned:
    """One request of the mix: a fault group, the dead group, or bad input."""

    api: Api
    stream: bool
    fault: Fault | None = None  # None with bad=None: the dead group
    bad: BadInput | None = None


def plan_mix(requests: int, seed: int = 0) -> list[Planned]:
    """`requests` requests: every fault and every bad input at least once (when
    `requests` allows), the rest drawn from a seeded random source."""
    rng = random.Random(seed)
    kinds: list[Fault | BadInput | None] = [*Fault, *BadInput, None]
    plan: list[Planned] = []
    for i in range(requests):
        kind = kinds[i] if i < len(kinds) else rng.choice([*Fault, *Fault, *Fault, *BadInput, None])
        api, stream = rng.choice(list(Api)), rng.random() < 0.5
        if isinstance(kind, BadInput):
            plan.append(Planned(api, stream, bad=kind))
        else:
            plan.append(Planned(api, stream, fault=kind))
    rng.shuffle(plan)
    return plan


def _body(item: Planned) -> bytes:
    model = DEAD_GROUP if item.fault is None else group_of(item.fault)
    messages: Any = [{"role": "user", "content": "hi"}]
    extra: dict[str, Any] = {}
    if item.bad is BadInput.MALFORMED_JSON:
        return b'{"model": "f-garbage", "messages": [{"role": "user", "content": "hi"'
    if item.bad is BadInput.WRONG_TYPES:
        messages = "hi"
        extra["max_tokens"] = "ten"
    if item.bad is BadInput.UNKNOWN_MODEL:
        model = "no-such-model"
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": item.stream, **extra}
    if item.api is Api.ANTHROPIC:
        body.setdefault("max_tokens", 20)
    encoded = orjson.dumps(body)
    if item.bad is BadInput.DEEP_JSON:
        return encoded[:-1] + b',"metadata":' + b"[" * 2000 + b"]" * 2000 + b"}"
    return encoded


def _error_shaped(api: Api, data: bytes) -> bool:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    error = body["error"]
    if api is Api.ANTHROPIC and body.get("type") != "error":
        return False
    return isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def _stream_ending(api: Api, data: bytes) -> Outcome:
    """SERVED for a complete stream, STREAM_ERROR_EVENT for one ended by an error event."""
    names: list[str] = []
    payloads: list[bytes] = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                names.append(line[6:].strip().decode(errors="replace"))
            elif line.startswith(b"data:"):
                payloads.append(line[5:].strip())
    if api is Api.ANTHROPIC:
        last = names[-1] if names else ""
        return {"message_stop": Outcome.SERVED, "error": Outcome.STREAM_ERROR_EVENT}.get(last, Outcome.SILENT_CUT)
    if any(p.startswith(b'{"error"') for p in payloads):
        return Outcome.STREAM_ERROR_EVENT
    return Outcome.SERVED if payloads and payloads[-1] == b"[DONE]" else Outcome.SILENT_CUT


def judge(item: Planned, status: int, endpoint: str, content_type: str, data: bytes) -> Outcome:
    """The verdict on one answer (pure: the data in, an `Outcome` out)."""
    if item.bad is not None:
        if status >= 500:
            return Outcome.SERVER_ERROR_FOR_BAD_INPUT
        return Outcome.REJECTED if 400 <= status < 500 and _error_shaped(item.api, data) else Outcome.MALFORMED
    if status >= 400:
        if not _error_shaped(item.api, data):
            return Outcome.MALFORMED
        return Outcome.NO_ENDPOINT if item.fault is None and status >= 500 else Outcome.LOST
    if item.fault is None:
        return Outcome.WRONG_ENDPOINT  # nothing in the dead group can answer 2xx
    if item.stream and "text/event-stream" in content_type:
        ending = _stream_ending(item.api, data)
        if ending is Outcome.STREAM_ERROR_EVENT:
            return ending if item.fault in POST_COMMIT else Outcome.LOST
        if ending is not Outcome.SERVED:
            return ending
    elif item.stream:
        return Outcome.MALFORMED
    else:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return Outcome.MALFORMED
        expected = ("type", "message") if item.api is Api.ANTHROPIC else ("object", "chat.completion")
        if not isinstance(body, dict) or body.get(expected[0]) != expected[1]:
            return Outcome.MALFORMED
    return Outcome.SERVED if endpoint.startswith(HEALTHY_PREFIX) else Outcome.WRONG_ENDPOINT


@dataclass
class MixReport:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    by_kind: dict[str, Counter[Outcome]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # a line per violating request

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def record(self, item: Planned, outcome: Outcome, detail: str) -> None:
        self.outcomes[outcome] += 1
        kind = item.bad.value if item.bad is not None else (item.fault.value if item.fault else DEAD_GROUP)
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        if outcome in VIOLATIONS:
            self.violations.append(f"{kind} {item.api.value} stream={item.stream}: {outcome.value} {detail}")


async def _send(session: aiohttp.ClientSession, base_url: str, item: Planned) -> tuple[Outcome, str]:
    path = "/v1/messages" if item.api is Api.ANTHROPIC else "/v1/chat/completions"
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    try:
        async with session.post(base_url + path, data=_body(item), headers=headers) as response:
            data = await response.read()
            endpoint = response.headers.get("X-Octoroute-Endpoint", "")
            outcome = judge(item, response.status, endpoint, response.content_type, data)
            return outcome, f"status={response.status} endpoint={endpoint!r} body={data[-200:]!r}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome.TRANSPORT_ERROR, f"{type(exc).__name__}: {exc}"


async def run_mix(
    base_url: str, plan: Sequence[Planned], *, concurrency: int = 16, request_timeout: float = 30.0
) -> MixReport:
    """Send `plan` to the gateway at `base_url` (no /v1), `concurrency` at a time;
    each request is bounded by `request_timeout` so a hang is a TRANSPORT_ERROR, never a stuck run."""
    report = MixReport()
    queue = list(reversed(plan))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
    ) as session:

        async def worker() -> None:
            while queue:
                item = queue.pop()
                outcome, detail = await _send(session, base_url, item)
                report.record(item, outcome, detail)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return report


@dataclass(frozen=True, slots=True)
class Resources:
    """What /proc says about one process."""

    rss_kib: int
    fds: int


def measure(pid: int) -> Resources:
    """VmRSS from /proc/<pid>/status and the number of entries in /proc/<pid>/fd (Linux)."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Resources(rss, sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()))


def config_toml(data: dict[str, Any], *, port: int) -> str:
    """`FaultFleet.gateway_config()` (plus a loopback `[server]`) as TOML, for `octoroute serve --config`."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        return str(v)

    lines = [f'[server]\nhost = "127.0.0.1"\nport = {port}\n', '[observability]\nlog_level = "warning"\n']
    for section, table in data.items():
        if section == "models":
            for group, entries in table.items():
                for entry in entries:
                    lines.append(f'[[models."{group}"]]\n' + "".join(f"{k} = {value(v)}\n" for k, v in entry.items()))
        else:
            lines.append(f"[{section}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items()))
    return "\n".join(lines)

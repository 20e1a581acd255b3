"""A small closed-loop HTTP load generator: one aiohttp session on uvloop,
keep-alive connections, prebuilt request bodies, almost no per-request work
beyond sending, reading the whole answer and checking it.

Streaming requests read the body to EOF and check it ends with `data: [DONE]`,
so a streamed answer is timed to its last event.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

Messages = tuple[Mapping[str, str], ...]

PROMPT: Messages = (
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "hi there, how are you today?"},
)
_SENTENCES = (
    "The team moved the nightly jobs to the new cluster in week {n}.",
    "Storage costs fell by {n} percent after old snapshots were pruned.",
    "Two on-call engineers reported {n} pages during the holiday period.",
    "The migration script touched {n} tables and finished without errors.",
    "Customers in region {n} saw slower page loads during the evening peak.",
    "The budget review asked for a clearer plan before the next quarter.",
)
_DONE = b"data: [DONE]"
_MAX_ERROR_FRACTION = 0.05  # a run stops early when more than this fraction has failed


def long_prompt(kb: int) -> Messages:
    """A pasted document of about `kb` KB of prose (no code, no summary/analysis/creative keywords)
    and a question about it: the request rule routing has to scan the most text for."""
    parts: list[str] = []
    size, n = 0, 0
    while size < kb * 1024:
        sentence = _SENTENCES[n % len(_SENTENCES)].format(n=n + 3)
        parts.append(sentence + ("\n" if n % 5 == 4 else " "))
        size += len(sentence) + 1
        n += 1
    question = "Here are my notes from this year:\n\n" + "".join(parts) + "\n\nWhich of these points matter most?"
    return ({"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question})


def chat_body(model: str, *, stream: bool, messages: Messages = PROMPT) -> bytes:
    """A chat request; by default a short casual one (rule routing sends it to `fast`)."""
    return orjson.dumps({"model": model, "messages": messages, "max_tokens": 64, "stream": stream})


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: the chat completions URL and the model name to ask for."""

    label: str
    url: str
    model: str
    headers: Mapping[str, str] = field(default_factory=dict)
    messages: Messages = PROMPT
    body: bytes | None = None  # sent instead of a chat request (another API: embeddings)
    expect: bytes = b'"choices"'  # what a non-streamed answer must hold to count as one


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..1); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class RunResult:
    """What one run (or several runs merged) produced. Latencies in milliseconds."""

    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    capped: bool = False  # stopped by its time limit or its error limit before the planned count
    latencies_ms: list[float] = field(default_factory=list)

    def merge(self, other: RunResult) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.elapsed_s += other.elapsed_s
        self.capped = self.capped or other.capped
        self.latencies_ms.extend(other.latencies_ms)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def quantile(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)


class LoadGenerator:
    """Sends chat requests through one shared session. Use as an async context manager."""

    def __init__(self, request_timeout: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LoadGenerator:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, skip_auto_headers=("User-Agent",), auto_decompress=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, target: Target, body: bytes, *, stream: bool) -> tuple[str | None, bytes]:
        """One request; returns (problem or None, the response body)."""
        assert self._session is not None
        headers = {"Content-Type": "application/json", **target.headers}
        try:
            async with self._session.post(target.url, data=body, headers=headers) as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}", b""
        if status != 200:
            return f"HTTP {status}: {data[:200]!r}", data
        if stream:
            if not data.rstrip().endswith(_DONE):
                return f"stream did not end with [DONE]: ...{data[-120:]!r}", data
        elif target.expect not in data:
            return f"no {target.expect.decode()} in the answer: {data[:200]!r}", data
        return None, data

    async def run(
        self, target: Target, *, requests: int, concurrency: int, stream: bool, time_limit: float
    ) -> RunResult:
        """`requests` requests from `concurrency` workers; stops early at `time_limit` seconds
        (requests in flight then finish) or when too many fail."""
        body = target.body or chat_body(target.model, stream=stream, messages=target.messages)
        result = RunResult()
        remaining = requests
        max_errors = max(10, int(requests * _MAX_ERROR_FRACTION))
        started = time.perf_counter()
        deadline = started + time_limit

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                if time.perf_counter() > deadline or result.errors > max_errors:
                    result.capped = True
                    return
                remaining -= 1
                t0 = time.perf_counter()
                problem, _ = await self.send(target, body, stream=stream)
                if problem is None:
                    result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    result.ok += 1
                else:
                    result.errors += 1
                    result.first_error = result.first_error or problem

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, requests))]
        try:  # a hard stop too, in case a request hangs past its own timeout
            async with asyncio.timeout(time_limit + self._timeout.total + 5):  # type: ignore[operator]
                await asyncio.gather(*workers)
        except TimeoutError:
            result.capped = True
            result.first_error = result.first_error or "run did not finish in time"
        finally:
            for task in workers:
                task.cancel()
        result.elapsed_s = time.perf_counter() - started
        return result

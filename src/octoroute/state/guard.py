"""`GuardedState`: a remote store (Redis) in front of a local one, so a dead or slow
Redis never takes the gateway down.

Every call to the remote store is bounded (`timeout_seconds`, on top of the
client's own socket timeouts). The first failure opens the circuit: one WARNING,
the `on_change(False, error)` hook (the `octoroute_state_backend_up` gauge), and
from then on every call goes straight to the local fallback, costing nothing
remote per request. A background task pings the remote store every
`retry_seconds`; the first answer closes the circuit again (one INFO line and
`on_change(True, "")`). Each failed call also reports `on_error()` (the
`octoroute_state_backend_errors_total` counter).

While the circuit is open each process limits with its own buckets, so a
client's rate may reach (number of processes) × its limit for that time; the
fallback's buckets start full. Counters added while open stay in that
process's fallback store and are not copied to Redis afterwards.

Documents (`core.state.DocumentStore`) go through the same circuit, but there
is no fallback store for them here: while the circuit is open, or when a call
fails, `put_document`, `get_document` and `delete_document` raise
`StateUnavailable`, and the caller (the Responses store, `server.responses_store`)
answers from its own process's copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from octoroute.core.state import Admission, DocumentStore, Gcra, StateStore, Take

log = logging.getLogger("octoroute.state")
_T = TypeVar("_T")


class StateUnavailable(Exception):
    """The remote store is not in use (the circuit is open) or has just failed: a document
    call has no local fallback in `GuardedState`, so the caller chooses its own."""


class Remote(StateStore, DocumentStore, Protocol):
    """A store that can fail: `errors` are the exceptions that mean "it did not answer"."""

    errors: tuple[type[Exception], ...]

    async def ping(self) -> None: ...

    async def prepare(self) -> None: ...


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:200]


class GuardedState:
    """`StateStore` that is `remote` while it answers and `fallback` otherwise (see the module docstring)."""

    def __init__(
        self,
        remote: Remote,
        fallback: StateStore,
        *,
        timeout_seconds: float,
        retry_seconds: float,
        on_change: Callable[[bool, str], None] = lambda up, error: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._remote = remote
        self._errors: tuple[type[Exception], ...] = (*remote.errors, TimeoutError)
        self._fallback = fallback
        self._timeout = timeout_seconds
        self._retry = retry_seconds
        self._on_change = on_change
        self._on_error = on_error
        self._up = True
        self._probe: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """The remote store is in use (the circuit is closed)."""
        return self._up

    @property
    def name(self) -> str:
        return self._remote.name if self._up else self._fallback.name

    async def start(self, timeout_seconds: float) -> None:
        """Connect before serving (within `timeout_seconds`, longer than a request's bound);
        a remote store that does not answer opens the circuit at once."""
        try:
            async with asyncio.timeout(max(timeout_seconds, self._timeout)):
                await self._remote.prepare()
        except self._errors as error:
            self._trip(error)

    def _trip(self, error: BaseException) -> None:
        self._on_error()
        if not self._up:
            return
        self._up = False
        log.warning(
            "shared state backend %s failed (%s); using local state until it answers again",
            self._remote.name,
            _describe(error),
        )
        self._on_change(False, _describe(error))
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reconnect(), name="octoroute-state-reconnect")

    async def _reconnect(self) -> None:
        while not self._up:
            await asyncio.sleep(self._retry)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._remote.ping()
            except self._errors:  # still down: the next ping decides
                continue
            self._up = True
            log.info("shared state backend %s answers again; shared state back in use", self._remote.name)
            self._on_change(True, "")

    async def admit(self, takes: Sequence[Take]) -> Admission:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.admit(takes)
            except self._errors as error:  # the boundary: a remote failure means "fall back"
                self._trip(error)
        return await self._fallback.admit(takes)

    async def wait(self, takes: Sequence[Take]) -> Admission:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.wait(takes)
            except self._errors as error:
                self._trip(error)
        return await self._fallback.wait(takes)

    async def charge(self, key: str, bucket: Gcra, cost: float) -> None:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.charge(key, bucket, cost)
            except self._errors as error:
                self._trip(error)
        await self._fallback.charge(key, bucket, cost)

    async def incr_many(
        self, key: str, amounts: Mapping[str, float], ttl_seconds: float | None = None
    ) -> dict[str, float]:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.incr_many(key, amounts, ttl_seconds)
            except self._errors as error:
                self._trip(error)
        return await self._fallback.incr_many(key, amounts, ttl_seconds)

    async def read_many(self, key: str, fields: Sequence[str]) -> list[float | None]:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.read_many(key, fields)
            except self._errors as error:
                self._trip(error)
        return await self._fallback.read_many(key, fields)

    async def put_many(self, key: str, values: Mapping[str, float], ttl_seconds: float | None = None) -> None:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.put_many(key, values, ttl_seconds)
            except self._errors as error:
                self._trip(error)
        await self._fallback.put_many(key, values, ttl_seconds)

    async def lease(self, key: str, ttl_seconds: float) -> bool:
        if self._up:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._remote.lease(key, ttl_seconds)
            except self._errors as error:
                self._trip(error)
        return await self._fallback.lease(key, ttl_seconds)

    async def put_document(self, doc_id: str, document: bytes, ttl_seconds: float, max_entries: int) -> None:
        await self._document(lambda: self._remote.put_document(doc_id, document, ttl_seconds, max_entries))

    async def get_document(self, doc_id: str, ttl_seconds: float) -> bytes | None:
        return await self._document(lambda: self._remote.get_document(doc_id, ttl_seconds))

    async def delete_document(self, doc_id: str, ttl_seconds: float) -> bool:
        return await self._document(lambda: self._remote.delete_document(doc_id, ttl_seconds))

    async def _document(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call` on the remote store within the timeout; `StateUnavailable` while the
        circuit is open or when it fails (which opens it): documents have no fallback here."""
        if not self._up:
            raise StateUnavailable(f"shared state backend {self._remote.name} is not answering")
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except self._errors as error:
            self._trip(error)
            raise StateUnavailable(_describe(error)) from error

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._remote.close()
        await self._fallback.close()

"""`DirectoryDocuments`: `core.state.DocumentStore` as one file per document in a
directory, for the workers of one `octoroute serve --workers N` without Redis.

Why files and not the shared-memory table (`shm.py`): a document is as large as
a conversation (kilobytes to megabytes), far past a fixed slot, and a file
needs no allocator. The workers already share a private temporary directory
(the metrics directory), which holds this one and goes away with it.

- A file's name is a BLAKE2b digest of the id (any id a client sends is a safe
  name); its content is the document's bytes.
- Writes are atomic: a temporary file (a leading dot, never read) then
  `os.replace`, so a reader sees the whole old file, the whole new one or none.
- Times are the file's own: mtime is when it was written (the TTL), atime when
  it was last read or written (least recently used first out); both are set
  explicitly with `os.utime` in nanoseconds from the injected wall clock, not
  left to the kernel's coarse timestamps or mount options.
- The count bound is enforced on put by one process at a time, every
  `max(1, max_entries // PRUNE_FRACTION)` of its own puts: one directory scan
  removes the expired files and then the least recently used past
  `max_entries`. Between scans the directory may hold up to (workers ×
  max_entries / PRUNE_FRACTION) more; an expired file is never served (`get`
  checks the age itself).

No lock: ids are unique, a read racing an unlink is a miss, two pruners racing
unlink the same files. Every method moves its file I/O off the event loop
(`asyncio.to_thread`): a document may be megabytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable

PRUNE_FRACTION = 16


def _name(doc_id: str) -> str:
    return hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class DirectoryDocuments:
    """Documents in `path` (created if missing); `clock_ns`: wall-clock nanoseconds."""

    name = "directory"

    def __init__(self, path: str, clock_ns: Callable[[], int] = time.time_ns) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self._dir = path
        self._clock_ns = clock_ns
        self._puts = 0  # this process's puts since its last prune

    def _path(self, doc_id: str) -> str:
        return os.path.join(self._dir, _name(doc_id))

    async def put_document(self, doc_id: str, document: bytes, ttl_seconds: float, max_entries: int) -> None:
        await asyncio.to_thread(self._put, doc_id, document, ttl_seconds, max_entries)

    async def get_document(self, doc_id: str, ttl_seconds: float) -> bytes | None:
        return await asyncio.to_thread(self._get, doc_id, ttl_seconds)

    async def delete_document(self, doc_id: str, ttl_seconds: float) -> bool:
        return await asyncio.to_thread(self._delete, doc_id, ttl_seconds)

    def _put(self, doc_id: str, document: bytes, ttl_seconds: float, max_entries: int) -> None:
        name = _name(doc_id)
        temporary = os.path.join(self._dir, f".{name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(document)
            now = self._clock_ns()
            os.utime(temporary, ns=(now, now))
            os.replace(temporary, os.path.join(self._dir, name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._puts += 1
        if self._puts >= max(1, max_entries // PRUNE_FRACTION):
            self._puts = 0
            self._prune(self._clock_ns(), _ns(ttl_seconds), max_entries)

    def _prune(self, now: int, ttl_ns: int, max_entries: int) -> None:
        live: list[tuple[int, str]] = []
        with os.scandir(self._dir) as entries:
            for entry in entries:
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                if now - stat.st_mtime_ns >= ttl_ns:  # expired (or a temporary file left by a dead worker)
                    _unlink(entry.path)
                elif not entry.name.startswith("."):
                    live.append((stat.st_atime_ns, entry.path))
        if len(live) > max_entries:
            live.sort()
            for _, path in live[: len(live) - max_entries]:
                _unlink(path)

    def _get(self, doc_id: str, ttl_seconds: float) -> bytes | None:
        path = self._path(doc_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as file:
            written = os.fstat(fd).st_mtime_ns
            now = self._clock_ns()
            if now - written >= _ns(ttl_seconds):
                _unlink(path)
                return None
            document = file.read()
            os.utime(fd, ns=(now, written))  # read now: recently used; still written then
        return document

    def _delete(self, doc_id: str, ttl_seconds: float) -> bool:
        path = self._path(doc_id)
        try:
            written = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return False
        _unlink(path)
        return self._clock_ns() - written < _ns(ttl_seconds)  # an expired one was already gone


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

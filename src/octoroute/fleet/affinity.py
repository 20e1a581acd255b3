"""Conversation affinity: the turns of one conversation go to the endpoint that
served the last one, so a llama.cpp server finds the prompt it already holds in
a slot's KV cache and only processes the new tokens.

A conversation is named by `conversation_of`: an explicit session key when
the client sends one (the `X-Octoroute-Session` or `X-Session-Id` header,
Anthropic `metadata.user_id`, OpenAI `user`), else the prompt's beginning
(tools, the system prompt and the first user message), which every later turn
repeats. Keys are digests: no prompt text or user id is kept.

`AffinityTable` remembers key → endpoint, bounded (least recently used go
first) and forgetting entries unused for `ttl_seconds`; the clock is passed in.

    table = AffinityTable(max_entries=10_000, ttl_seconds=1800, clock=time.monotonic)
    target = table.get(key)               # None: a new conversation (or forgotten)
    ...
    table.remember(key, served_by)
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

SESSION_HEADERS = ("X-Octoroute-Session", "X-Session-Id")
MAX_SESSION_CHARS = 512


class AffinityResult(enum.StrEnum):
    """Whether a request kept its conversation's endpoint (header and metric label)."""

    HIT = "hit"  # served by the endpoint of the conversation's previous turn
    NEW = "new"  # the first turn seen (or the entry was forgotten): served anywhere, now remembered
    BROKEN = "broken"  # that endpoint could not take it (unhealthy, full, failed): moved


def _digest(kind: str, data: bytes) -> str:
    return kind + hashlib.blake2b(data, digest_size=16).hexdigest()


def session_of(headers: Mapping[str, str]) -> str | None:
    """An explicit session key from the request headers, if the client sent one."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:MAX_SESSION_CHARS]
    return None


def _prefix(body: Mapping[str, Any]) -> list[Any]:
    """The messages up to and including the first user message: what every turn repeats."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    out: list[Any] = []
    for message in messages:
        out.append(message)
        if isinstance(message, dict) and message.get("role") == "user":
            break
    return out


@dataclass(frozen=True, slots=True)
class Conversation:
    """A request's conversation: `key`, and whether the request continues it
    (`follow_up`: an explicit session key, or turns after the first user message).
    Only a follow-up looks for its endpoint: a first turn, or the same one-shot
    prompt sent again, is balanced like any request (and remembered)."""

    key: str
    follow_up: bool


def conversation_of(
    body: Mapping[str, Any], anthropic_body: Mapping[str, Any] | None = None, session: str | None = None
) -> Conversation:
    """The conversation a chat request belongs to (see the module docstring).

    `body` is the OpenAI chat body; `anthropic_body` the client's Messages request
    when it spoke that API; `session` an explicit key from a header (`session_of`).
    """
    if session:
        return Conversation(_digest("s:", session.encode()), True)
    if anthropic_body is not None:
        metadata = anthropic_body.get("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        if isinstance(user_id, str) and user_id:
            return Conversation(_digest("u:", user_id.encode()), True)
    user = body.get("user")
    if isinstance(user, str) and user:
        return Conversation(_digest("u:", user.encode()), True)
    prefix = _prefix(body)
    messages = body.get("messages")
    follow_up = isinstance(messages, list) and len(messages) > len(prefix)
    key = _digest("p:", orjson.dumps((body.get("tools"), prefix)))
    return Conversation(key, follow_up)


class AffinityTable:
    """Conversation key → the endpoint that served it last; LRU-bounded with a TTL."""

    __slots__ = ("_clock", "_entries", "max_entries", "ttl_seconds")

    def __init__(self, *, max_entries: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        """The endpoint remembered for `key`, or None when unknown or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        endpoint, seen = entry
        if self._clock() - seen > self.ttl_seconds:
            del self._entries[key]
            return None
        return endpoint

    def remember(self, key: str, endpoint: str) -> None:
        """`endpoint` served `key` now; the least recently used entry goes when full."""
        entries = self._entries
        entries[key] = (endpoint, self._clock())
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        self._expire_oldest()

    def _expire_oldest(self) -> None:
        """Drop expired entries from the old end (they are in last-use order), a few per call."""
        entries = self._entries
        now = self._clock()
        for _ in range(2):
            if not entries:
                return
            key = next(iter(entries))
            if now - entries[key][1] <= self.ttl_seconds:
                return
            del entries[key]

    def forget(self, endpoint: str) -> None:
        """Drop every conversation of `endpoint` (its cache is gone: restarted, out of rotation)."""
        for key in [k for k, (e, _) in self._entries.items() if e == endpoint]:
            del self._entries[key]


def classify(target: str | None, served_by: str) -> AffinityResult:
    """The affinity outcome of a request whose conversation was at `target` and that `served_by` served."""
    if target is None:
        return AffinityResult.NEW
    return AffinityResult.HIT if target == served_by else AffinityResult.BROKEN

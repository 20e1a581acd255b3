"""What the gateway does to an OpenAI answer before the client sees it: the
group's output filters, then tool-call repair (filters first, so a call is
never hidden behind a `<think>` block). One object per request.

    post = PostProcess.build(output_filter, declared_tools, make_id)
    if post is None: relay bytes untouched (the fast path)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from octoroute.protocols.filters import OutputFilter, StreamFilter
from octoroute.protocols.repair import MakeId, StreamRepair, repair_completion
from octoroute.protocols.sse import encode_data, encode_json_events, iter_data


def declared_tools(body: Mapping[str, Any]) -> frozenset[str]:
    """Function names an OpenAI request declares, unless it forbids tool use."""
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none":
        return frozenset()
    names = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return frozenset(names)


class PostProcess:
    """Filters and repair for one answer, whole or streamed."""

    __slots__ = ("_declared", "_filter", "_finished", "_make_id", "_repair", "_stream_filter")

    def __init__(self, output_filter: OutputFilter | None, declared: frozenset[str], make_id: MakeId) -> None:
        self._filter = output_filter
        self._declared = declared
        self._make_id = make_id
        self._stream_filter: StreamFilter | None = output_filter.stream() if output_filter else None
        self._repair: StreamRepair | None = StreamRepair(declared, make_id) if declared else None
        self._finished = False

    @classmethod
    def build(cls, output_filter: OutputFilter | None, declared: frozenset[str], make_id: MakeId) -> PostProcess | None:
        """None when there is nothing to do, so the caller keeps the untouched fast path."""
        active = output_filter if output_filter is not None and output_filter.active else None
        if active is None and not declared:
            return None
        return cls(active, declared, make_id)

    def completion(self, response: dict[str, Any]) -> bool:
        """Apply to a whole chat.completion in place; True when it changed."""
        changed = self._filter.apply_completion(response) if self._filter else False
        if self._declared:
            changed = repair_completion(response, self._declared, self._make_id) or changed
        return changed

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks to send for one upstream chunk (possibly none, possibly several)."""
        chunks = [chunk]
        if self._stream_filter is not None:
            kept = self._stream_filter.feed(chunk)
            chunks = [] if kept is None else [kept]
        if self._repair is not None:
            chunks = [out for c in chunks for out in self._repair.feed(c)]
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """Whatever was held back, at the end of the stream (once; later calls return nothing)."""
        if self._finished:
            return []
        self._finished = True
        chunks = self._stream_filter.finish() if self._stream_filter is not None else []
        if self._repair is not None:
            chunks = [out for c in chunks for out in self._repair.feed(c)] + self._repair.finish()
        return chunks

    def sse(self, events: bytes) -> bytes:
        """Whole upstream SSE events in, processed SSE events out (`[DONE]` kept last)."""
        out: list[bytes] = []
        for data in iter_data(events):
            if data.strip() == b"[DONE]":
                out.append(encode_json_events(self.finish()))
                out.append(encode_data(b"[DONE]"))
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                out.append(encode_data(data))
                continue
            if not isinstance(parsed, dict) or "error" in parsed:
                out.append(encode_data(data))
                continue
            out.append(encode_json_events(self.chunk(parsed)))
        return b"".join(out)

"""Everything the gateway reports about one request, and where it goes.

A `RequestTrace` is created when an API request arrives (`Observer.start`),
filled in by the handlers and the attempt loop as the request is routed and
served, and handed back to `Observer.finish` once the response (the whole
stream, for streams) has been sent. `finish` writes it once to each sink that
is switched on: the access log (one line per request, JSON or human), the
recent-decisions window behind `/metrics.json`, the JSONL event file, and the
request's trace span. Prometheus counters are recorded where the events
happen, through `Observer.metrics` (a `Recorder`); a served request's usage
per client key is counted by `finish`, through `Observer.usage`.

The event file also receives health transitions, fallbacks and config
warnings. Prompt and completion text reach the log and the event file only
with `[observability] log_content = true`, and never the decisions window.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from octoroute.core.errors import ErrorType
from octoroute.observe.decisions import DECISION_SLOT, ERROR_SLOT, SlotRing, read_ring_files
from octoroute.observe.logs import access_log_enabled, log_request, log_shadow
from octoroute.observe.metrics import Recorder
from octoroute.observe.usage import UsageLedger

if TYPE_CHECKING:
    from octoroute.observe.tracing import SpanHandle, Tracing

log = logging.getLogger("octoroute.events")
ERRORS_KEPT = 64
MAX_NAME = 64  # client-chosen model names are cut to this in the decisions window
MAX_TEXT = 16_000  # prompt / completion text kept per request when log_content is on


@dataclass(slots=True)
class RequestTrace:
    """One API request as it is routed and served; the handlers fill it in."""

    request_id: str
    route: str
    method: str
    time: float  # wall clock at arrival (seconds since the epoch)
    started: float  # perf_counter at arrival
    log_content: bool = False
    model: str | None = None
    tier: str | None = None  # the group routing chose (before any fallback)
    group: str | None = None  # the group that served, None when none did
    endpoint: str | None = None
    strategy: str | None = None
    reason: str | None = None
    score: float | None = None  # the routing score of an auto-routed request
    shadow_strategy: str | None = None  # shadow mode's candidate, when it looked at this request
    shadow_tier: str | None = None  # its decision, when made inline (a judge candidate reports later)
    shadow_score: float | None = None
    shadow_reason: str | None = None
    fallback_from: str | None = None
    client: str | None = None  # the [auth] key's name, never the key
    attempts: int = 0
    status: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    degraded: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # what exactly was dropped, as in X-Octoroute-Dropped
    fail_open: bool = False  # served by an endpoint tried although none was healthy
    prompt: str | None = None
    completion: str | None = None
    span: SpanHandle | None = field(default=None, repr=False)

    def set_usage(self, input_tokens: int | None, output_tokens: int | None) -> None:
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if output_tokens is not None:
            self.output_tokens = output_tokens

    def keep_text(self, prompt: str | None = None, completion: str | None = None) -> None:
        """Record prompt / completion text, only when `log_content` is on."""
        if not self.log_content:
            return
        if prompt is not None:
            self.prompt = prompt[:MAX_TEXT]
        if completion is not None:
            self.completion = completion[:MAX_TEXT]

    def fields(self) -> dict[str, object]:
        """The log / event record: every field that is set."""
        out: dict[str, object] = {
            "request_id": self.request_id,
            "route": self.route,
            "model": self.model,
            "tier": self.tier,
            "group": self.group,
            "endpoint": self.endpoint,
            "strategy": self.strategy,
            "reason": self.reason,
            "score": None if self.score is None else round(self.score, 4),
            "shadow_strategy": self.shadow_strategy,
            "shadow_tier": self.shadow_tier,
            "shadow_score": None if self.shadow_score is None else round(self.shadow_score, 4),
            "shadow_reason": self.shadow_reason,
            # the verdict comes in a later `shadow` event (a judge candidate in the background)
            "shadow_pending": True if self.shadow_strategy is not None and self.shadow_tier is None else None,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "attempts": self.attempts,
            "retries": max(self.attempts - 1, 0),
            "fallback_from": self.fallback_from,
            "client": self.client,
            "degraded": ",".join(self.degraded) or None,
            "dropped": ",".join(self.dropped) or None,
            "fail_open": True if self.fail_open else None,
            "prompt": self.prompt,
            "completion": self.completion,
        }
        return {k: v for k, v in out.items() if v is not None}

    def row(self) -> DecisionRow:
        """The decision record's values, unencoded (cheap enough for every request)."""
        return (
            self.time,
            self.request_id,
            self.route,
            None if self.model is None else self.model[:MAX_NAME],
            self.tier,
            self.group,
            self.endpoint,
            self.strategy,
            self.reason,
            self.status,
            self.latency_ms,
            self.ttft_ms,
            self.attempts,
            self.fallback_from,
            self.input_tokens,
            self.output_tokens,
            self.shadow_tier,
        )


DecisionRow = tuple[
    float, str, str, str | None, str | None, str | None, str | None, str | None, str | None,
    int, float, float | None, int, str | None, int | None, int | None, str | None,
]  # fmt: skip
ROW_FIELDS = (
    "time", "request_id", "route", "model", "tier", "group", "endpoint", "strategy", "reason",
    "status", "latency_ms", "ttft_ms", "attempts", "fallback_from", "input_tokens", "output_tokens",
    "shadow_tier",
)  # fmt: skip
_CUTTABLE = frozenset({"request_id", "tier", "group", "endpoint", "reason", "fallback_from", "shadow_tier"})
_ROUNDED = {"time": 3, "latency_ms": 2, "ttft_ms": 2}


def encode_row(row: DecisionRow, cut: int | None = None) -> bytes:
    """A decision record as JSON (no text, ever); with `cut`, every name is cut to that
    many characters, for records that would not fit a slot otherwise."""
    record: dict[str, object] = dict(zip(ROW_FIELDS, row, strict=True))
    for key, places in _ROUNDED.items():
        value = record[key]
        if isinstance(value, float):
            record[key] = round(value, places)
    if cut is not None:
        for key in _CUTTABLE:
            value = record[key]
            if isinstance(value, str):
                record[key] = value[:cut]
    return orjson.dumps(record)


class MemoryWindow:
    """The recent decisions of a single process: rows kept as they are and encoded only
    when `/metrics.json` reads them."""

    def __init__(self, capacity: int) -> None:
        self._rows: deque[DecisionRow] = deque(maxlen=capacity)

    def add(self, row: DecisionRow) -> None:
        self._rows.append(row)

    def records(self) -> list[bytes]:
        return [encode_row(row) for row in self._rows]

    def close(self) -> None:
        self._rows.clear()


class SharedWindow:
    """The recent decisions of one of several workers, in a memory-mapped `SlotRing`
    the others read: rows are encoded as they are added."""

    def __init__(self, ring: SlotRing) -> None:
        self._ring = ring

    def add(self, row: DecisionRow) -> None:
        if not self._ring.add(encode_row(row)):
            self._ring.add(encode_row(row, cut=MAX_NAME))  # very long config names

    def records(self) -> list[bytes]:
        return self._ring.records()

    def close(self) -> None:
        self._ring.close()


class EventFile:
    """An append-only JSONL file: one `os.write` per line, so the lines of several
    workers appending to the same file never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, event: str, fields: dict[str, object]) -> None:
        if self._fd is None:
            return
        line = orjson.dumps({"ts": round(time.time(), 3), "event": event, **fields}) + b"\n"
        try:
            os.write(self._fd, line)
        except OSError as exc:  # a full disk must not fail requests; say so once
            log.error("cannot write to the event file %s (%s); no more events will be written", self.path, exc)
            self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Observer:
    """The sinks of one app. `decisions` / `errors` are None when metrics are off;
    `events` and `tracing` when not configured."""

    def __init__(
        self,
        metrics: Recorder,
        *,
        decisions: MemoryWindow | SharedWindow | None = None,
        errors: SlotRing | None = None,
        events: EventFile | None = None,
        tracing: Tracing | None = None,
        log_content: bool = False,
        multiprocess_dir: str | None = None,
        workers: int = 1,
    ) -> None:
        self.metrics = metrics
        self.usage = UsageLedger(metrics)
        self.multiprocess_dir = multiprocess_dir
        self.workers = workers
        self.decisions = decisions
        self.errors = errors
        self.events = events
        self.tracing = tracing
        self.log_content = log_content

    @classmethod
    def build(
        cls,
        metrics: Recorder,
        *,
        decisions_kept: int,
        events_file: str | None,
        log_content: bool,
        tracing: Tracing | None,
        multiprocess_dir: str | None,
        workers: int = 1,
    ) -> Observer:
        """The windows live in memory, or in files under `multiprocess_dir` when
        several workers must read each other's."""
        decisions: MemoryWindow | SharedWindow | None = None
        errors = None
        if metrics.enabled:
            if multiprocess_dir is None:
                decisions = MemoryWindow(decisions_kept)
                errors = SlotRing.in_memory(ERRORS_KEPT, ERROR_SLOT)
            else:
                base, pid = Path(multiprocess_dir), os.getpid()
                decisions = SharedWindow(
                    SlotRing.in_file(base / f"decisions_{pid}.ring", decisions_kept, DECISION_SLOT)
                )
                errors = SlotRing.in_file(base / f"errors_{pid}.ring", ERRORS_KEPT, ERROR_SLOT)
        events = EventFile(Path(events_file)) if events_file else None
        return cls(
            metrics,
            decisions=decisions,
            errors=errors,
            events=events,
            tracing=tracing,
            log_content=log_content,
            multiprocess_dir=multiprocess_dir,
            workers=workers,
        )

    def windows(self) -> tuple[list[bytes], list[bytes]]:
        """The decision and error records of every worker."""
        if self.decisions is None or self.errors is None:
            return [], []
        if self.multiprocess_dir is None:
            return self.decisions.records(), self.errors.records()
        base = Path(self.multiprocess_dir)
        return (
            read_ring_files(sorted(base.glob("decisions_*.ring")), DECISION_SLOT),
            read_ring_files(sorted(base.glob("errors_*.ring")), ERROR_SLOT),
        )

    def start(self, request_id: str, route: str, method: str, traceparent: str | None) -> RequestTrace:
        trace = RequestTrace(request_id, route, method, time.time(), time.perf_counter(), self.log_content)
        if self.tracing is not None:
            trace.span = self.tracing.request(method, route, request_id, traceparent)
        return trace

    def finish(self, trace: RequestTrace) -> None:
        """Once per request, after the last byte of the response."""
        if self.usage.counting and trace.group is not None and trace.endpoint is not None:  # an endpoint served it
            self.usage.record(trace.client, trace.group, trace.endpoint, trace.input_tokens, trace.output_tokens)
        if trace.tier is not None and self.decisions is not None:
            self.decisions.add(trace.row())
        log_on = access_log_enabled()
        if log_on or self.events is not None:
            fields = trace.fields()
            if log_on:
                log_request(fields)
            if self.events is not None:
                self.events.write("request", fields)
        if trace.span is not None:
            trace.span.set("http.response.status_code", trace.status)
            trace.span.end(f"HTTP {trace.status}" if trace.status >= 500 else None)

    def upstream_error(self, endpoint: str, error_type: ErrorType, message: str) -> None:
        if self.errors is not None:
            record = {"time": round(time.time(), 3), "endpoint": endpoint, "error_type": error_type.value}
            if not self.errors.add(orjson.dumps({**record, "message": message[:400]})):
                self.errors.add(orjson.dumps({**record, "message": message[:80]}))  # a very long endpoint id

    def health_changed(self, endpoint: str, healthy: bool, detail: str) -> None:
        self.metrics.health(endpoint, healthy)
        if self.events is not None:
            self.events.write("health", {"endpoint": endpoint, "healthy": healthy, "detail": detail})

    def cooled_down(self, endpoint: str, reason: str, seconds: float, until: float) -> None:
        """An upstream asked to back off (`reason`: a `Pressure` value); out of rotation until
        `until` (unix seconds)."""
        self.metrics.cooldown(endpoint, reason, until)
        if self.events is not None:
            self.events.write("cooldown", {"endpoint": endpoint, "reason": reason, "seconds": round(seconds, 3)})

    def credentials_changed(self, endpoint: str, refused: bool, detail: str) -> None:
        """The endpoint refused our credentials (401/403) and left rotation, or took them again."""
        self.metrics.credentials_refused(endpoint, refused)
        if self.events is not None:
            self.events.write("credentials", {"endpoint": endpoint, "refused": refused, "detail": detail})

    def failed_open(self, request_id: str, group: str, endpoint: str) -> None:
        """No endpoint was healthy; `endpoint` is tried anyway."""
        self.metrics.fail_open(group)
        if self.events is not None:
            self.events.write("fail_open", {"request_id": request_id, "group": group, "endpoint": endpoint})

    def shadow_judged(self, fields: dict[str, object]) -> None:
        """A background shadow decision ended (after or before its request's record):
        one `shadow` event and one log line, joined to the request by `request_id`."""
        log_shadow(fields)
        if self.events is not None:
            self.events.write("shadow", fields)

    def fallback(self, request_id: str, from_group: str, to_group: str) -> None:
        self.metrics.fallback(from_group, to_group)
        if self.events is not None:
            self.events.write("fallback", {"request_id": request_id, "from_group": from_group, "to_group": to_group})

    def config_warning(self, message: str) -> None:
        log.warning("config: %s", message)
        if self.events is not None:
            self.events.write("config_warning", {"message": message})

    def started(self, fields: dict[str, object]) -> None:
        if self.events is not None:
            self.events.write("start", fields)

    def close(self) -> None:
        for ring in (self.decisions, self.errors):
            if ring is not None:
                ring.close()
        if self.events is not None:
            self.events.close()
        if self.tracing is not None:
            self.tracing.shutdown()

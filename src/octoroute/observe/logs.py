"""Logging configuration and the per-request access record."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass

import orjson

ACCESS = logging.getLogger("octoroute.access")
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    route: str
    model: str
    group: str | None
    endpoint: str | None
    strategy: str | None
    reason: str | None
    status: int
    latency_ms: float
    ttfb_ms: float | None
    attempts: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    degraded: str | None = None  # comma-separated DegradationKind values


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if fields is not None:
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: str, fmt: str) -> None:
    """Set the root handler once per process (called by the CLI, never on import)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))


def access_log_enabled() -> bool:
    """Callers check this before building a `RequestRecord` (hot path)."""
    return ACCESS.isEnabledFor(logging.INFO)


def log_request(record: RequestRecord) -> None:
    fields = asdict(record)
    fields["latency_ms"] = round(record.latency_ms, 2)
    if record.ttfb_ms is not None:
        fields["ttfb_ms"] = round(record.ttfb_ms, 2)
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    ACCESS.info(text, extra={"fields": fields})

"""Logging configuration and the per-request access line."""

from __future__ import annotations

import logging
import re
import sys

import orjson

ACCESS = logging.getLogger("octoroute.access")
SHADOW = logging.getLogger("octoroute.shadow")
_NEEDS_QUOTES = re.compile(r'[\s"=]')
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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


def log_request(fields: dict[str, object]) -> None:
    """One access line: `k=v` pairs for people (values with spaces, quotes or `=` quoted
    as JSON strings), the same fields as JSON with `log_format = "json"`."""
    text = " ".join(f"{k}={_human(v)}" for k, v in fields.items())
    ACCESS.info(text, extra={"fields": fields})


def log_shadow(fields: dict[str, object]) -> None:
    """One line for a shadow decision that ended after its request was logged."""
    if not SHADOW.isEnabledFor(logging.INFO):
        return
    text = " ".join(f"{k}={_human(v)}" for k, v in fields.items())
    SHADOW.info(text, extra={"fields": fields})


def _human(value: object) -> str:
    if isinstance(value, str) and _NEEDS_QUOTES.search(value):
        return orjson.dumps(value).decode()
    return str(value)

"""Logging configuration and the per-request access line."""

from __future__ import annotations

import logging
import re
import sys

import orjson

ACCESS = logging.getLogger("octoroute.access")
SHADOW = logging.getLogger("octoroute.shadow")
_NEEDS_QUOTES = re.compile(r'[\s"=\x00-\x1f\x7f-\x9f]')
# what a terminal or a line-based log reader would act on: C0 and C1 controls (ESC, CSI),
# DEL and the Unicode line and paragraph separators
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
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


class HumanFormatter(logging.Formatter):
    """One line per record (a traceback after it stays as it is): control characters in
    the message, which may come from a client (a model name) or an upstream (an error
    text), are written as escapes, so no request can start a forged line or send a
    terminal escape sequence. Access lines quote such values as JSON strings first."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return line if line.isprintable() else _CONTROLS.sub(_escape, line)  # the scan only when needed


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def configure_logging(level: str, fmt: str) -> None:
    """Set the root handler once per process (called by the CLI, never on import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else HumanFormatter())
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
        return orjson.dumps(value).decode()  # C0 controls as \u00XX; the formatter escapes the rest
    return str(value)

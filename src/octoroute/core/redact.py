"""Secrets out of text that leaves the process: one function, `redact`.

Upstream error bodies, exception messages and URLs end up in client responses,
log lines, `/models` and `/metrics.json`. Before any of them leaves, it goes
through `redact`, which removes

- the secrets the caller knows (an endpoint's API key, every configured key),
- credentials in URLs (`http://user:pass@host` → `http://[redacted]@host`),
- bearer tokens (`Bearer abc…` → `Bearer [redacted]`),
- strings shaped like API keys (`sk-…`, `sk-ant-…`, `gsk_…`, `xai-…`),
- the value after a key-ish name (`api_key=…`, `"token": "…"`, `x-api-key: …`),

and bounds the result to one line of at most `max_chars` characters. It is
pure (stdlib `re` only) and cheap enough for every error path:

    redact('upstream said: bad key sk-abc123def456ghi', secrets=[key])
    # 'upstream said: bad key [redacted]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
DEFAULT_MAX_CHARS = 500
MIN_SECRET_CHARS = 4  # shorter "secrets" would redact ordinary words
PATTERN_MARGIN = 1024  # characters past the limit still read, so a secret crossing it is seen whole

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]*@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]{6,})")
_KEY_SHAPED = re.compile(r"\b(?:sk|pk|rk|gsk|xai|hf|ghp|gho|github_pat)[-_][A-Za-z0-9_\-]{8,}")
# A name that says "secret here", then a separator, then the value (quoted or not); the
# value is redacted only when it looks like one (`_looks_secret`), so "max_tokens: 4096"
# or "too many tokens: reduce the prompt" stay readable.
_KEY_VALUE = re.compile(
    r"(?i)((?:api[_\-\s]?key|x-api-key|access[_\-]?token|auth[_\-]?token|token|secret|password|passwd|"
    r"authorization|credential)s?[\"']?\s*[:=]\s*[\"']?)"
    r"(?!bearer\b|basic\b)([^\s\"',;&}]{6,})"
)


def _looks_secret(value: str) -> bool:
    """Letters mixed with digits (a password, a hex key), with capitals inside (base64), or
    a long run of letters; not a number, not an ordinary word."""
    if not any(c.isalpha() for c in value):
        return False
    if len(value) >= 16 or any(c.isdigit() for c in value):
        return True
    rest = value[1:]
    return len(value) >= 8 and any(c.isupper() for c in rest) and any(c.islower() for c in rest)


def _redact_value(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED if _looks_secret(match.group(2)) else match.group(0)


def _redact_credentials(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + REDACTED if _looks_secret(match.group(3)) else match.group(0)


def redact(text: str, secrets: Iterable[str | None] = (), *, max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """`text` without secrets, on one line, at most `max_chars` characters (None: unbounded).

    `secrets` are literal strings to remove wherever they occur (None and strings
    shorter than 4 characters are ignored). Redaction runs before truncation, so
    a secret cut in half by the limit cannot leak its first half.
    """
    out = text
    if max_chars is not None and len(out) > 2 * max_chars + PATTERN_MARGIN:
        # Only the kept part is redacted: a 64 KiB error body costs what a short one does. The
        # margin keeps whole any secret that starts inside the kept part, so none leaks half.
        out = out[: 2 * max_chars + PATTERN_MARGIN]
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    out = _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", out)
    out = _BEARER.sub(_redact_credentials, out)
    out = _KEY_VALUE.sub(_redact_value, out)
    out = _KEY_SHAPED.sub(REDACTED, out)
    out = " ".join(out.split())
    if max_chars is not None and len(out) > max_chars:
        out = out[: max(0, max_chars - 1)] + "…"
    return out

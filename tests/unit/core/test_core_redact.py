"""`core.redact.redact`: every kind of secret it must remove, and what it must keep."""

from __future__ import annotations

import pytest

from octoroute.core.redact import REDACTED, redact

KEY = "local-key-9f8e7d6c"


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        pytest.param("Invalid API Key", (), "Invalid API Key", id="plain-message-kept"),
        pytest.param(f"key {KEY} is wrong", (KEY,), f"key {REDACTED} is wrong", id="the-endpoint-key"),
        pytest.param(f"{KEY}{KEY}", (KEY,), f"{REDACTED}{REDACTED}", id="every-occurrence"),
        pytest.param("abc is short", ("abc",), "abc is short", id="too-short-secret-ignored"),
        pytest.param("nothing here", (None, ""), "nothing here", id="none-and-empty-ignored"),
        pytest.param(
            "Incorrect API key provided: sk-proj-AbCdEf123456. You can find your key",
            (),
            f"Incorrect API key provided: {REDACTED}. You can find your key",
            id="openai-sk-key",
        ),
        pytest.param("bad sk-ant-api03-xyzXYZ0123456789", (), f"bad {REDACTED}", id="anthropic-key"),
        pytest.param(
            "header Authorization: Bearer eyJhbGciOi.JIUzI1.NiIs was refused",
            (),
            f"header Authorization: Bearer {REDACTED} was refused",
            id="bearer-token",
        ),
        pytest.param(
            "cannot reach http://admin:hunter22@10.0.0.5:8080/v1",
            (),
            f"cannot reach http://{REDACTED}@10.0.0.5:8080/v1",
            id="url-credentials",
        ),
        pytest.param(
            "https://user@example.org/v1 is fine", (), "https://user@example.org/v1 is fine", id="url-user-only-kept"
        ),
        pytest.param(
            '{"api_key": "0123456789abcdef0123456789abcdef"}',
            (),
            f'{{"api_key": "{REDACTED}"}}',
            id="json-key-value",
        ),
        pytest.param("token=c2VjcmV0c2VjcmV0&x=1", (), f"token={REDACTED}&x=1", id="query-token"),
        pytest.param("x-api-key: abcdef123456", (), f"x-api-key: {REDACTED}", id="x-api-key-header"),
        pytest.param("password: hunter2hunter2", (), f"password: {REDACTED}", id="password"),
        pytest.param(
            "request (6030 tokens) exceeds the available context size (4096 tokens)",
            (),
            "request (6030 tokens) exceeds the available context size (4096 tokens)",
            id="token-counts-kept",
        ),
        pytest.param("line one\n  line\ttwo", (), "line one line two", id="one-line"),
        pytest.param("'max_tokens': 128000 is too large", (), "'max_tokens': 128000 is too large", id="numbers-kept"),
        pytest.param("too many tokens: reduce the prompt", (), "too many tokens: reduce the prompt", id="words-kept"),
        pytest.param("Basic authentication required", (), "Basic authentication required", id="auth-scheme-word-kept"),
        pytest.param(
            "Authorization: Basic dXNlcjpwYXNz", (), f"Authorization: Basic {REDACTED}", id="basic-credentials"
        ),
        pytest.param("secret=QWxhZGRpbjpvcGVuc2VzYW1l", (), f"secret={REDACTED}", id="long-base64-without-digits"),
    ],
)
def test_redact(text: str, secrets: tuple[str | None, ...], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_bounded_after_redaction() -> None:
    text = "x" * 10 + KEY + "y" * 100
    out = redact(text, [KEY], max_chars=20)
    assert len(out) == 20
    assert out.endswith("…")
    assert KEY[:4] not in out


def test_unbounded() -> None:
    assert redact("z" * 5000, max_chars=None) == "z" * 5000
    assert len(redact("z" * 5000)) == 500


def test_a_secret_crossing_the_limit_leaks_no_part() -> None:
    for start in range(480, 520):
        text = "x" * start + " sk-abcdefghijklmnopqrstuvwxyz0123456789 " + "y" * 100_000
        out = redact(text)
        assert len(out) <= 500
        assert "sk-" not in out
        assert "abcdefgh" not in out

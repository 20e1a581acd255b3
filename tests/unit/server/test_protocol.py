"""Which route a broken request head names, and what each parser refusal becomes."""

from __future__ import annotations

import pytest
from aiohttp import http_exceptions

from octoroute.server.protocol import ClientTimeout, describe_reject, path_of_head


@pytest.mark.parametrize(
    ("head", "path"),
    [
        (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n", "/v1/messages"),
        (b"POST /v1/messages/count_tokens?beta=true HTTP/1.1\r\n", "/v1/messages/count_tokens"),
        (b"GET /v1/mod", "/v1/mod"),
        (b"\r\nPOST /chat HTTP/1.1\r\n", "/chat"),
        (b"\x16\x03\x01\x02\x00", ""),
        (b"", ""),
        (b"POST http://example.com/v1/messages HTTP/1.1\r\n", "/v1/messages"),  # absolute form
        (b"POST http://example.com HTTP/1.1\r\n", ""),
    ],
)
def test_path_of_head(head: bytes, path: str) -> None:
    assert path_of_head(head) == path


@pytest.mark.parametrize(
    ("exc", "head", "status", "code"),
    [
        (ClientTimeout(message="late"), b"GET /", 408, "request_timeout"),
        (http_exceptions.LineTooLong(b"x", 8190), b"GET /aaaa", 414, "uri_too_long"),
        (http_exceptions.LineTooLong(b"x", 8190), b"GET / HTTP/1.1\r\nX: aaa", 431, "header_fields_too_large"),
        (http_exceptions.BadHttpMessage("Too many headers"), b"GET / HTTP/1.1\r\n", 431, "header_fields_too_large"),
        (http_exceptions.InvalidHeader(b"Bad Header"), b"GET / HTTP/1.1\r\n", 400, "malformed_request"),
        (http_exceptions.TransferEncodingError("bad chunk"), b"GET / HTTP/1.1\r\n", 400, "malformed_request"),
        (http_exceptions.BadHttpMethod("\x16\x03"), b"\x16\x03", 400, "malformed_request"),
        (http_exceptions.BadHttpMessage("anything"), b"GET / HTTP/1.1\r\n", 400, "malformed_request"),
        (
            http_exceptions.BadHttpMessage("Missing 'Host' header in request."),
            b"GET / HTTP/1.1\r\n",
            400,
            "malformed_request",
        ),
        (http_exceptions.InvalidURLError("aaa"), b"GET /aaa HTTP/1.1\r\n", 400, "malformed_request"),
        (
            http_exceptions.BadHttpMessage("Transfer-Encoding can't be present with Content-Length"),
            b"",
            400,
            "malformed_request",
        ),
    ],
)
def test_describe_reject(exc: BaseException, head: bytes, status: int, code: str) -> None:
    got_status, message, got_code = describe_reject(400, exc, head)
    assert (got_status, got_code) == (status, code)
    assert "aaa" not in message  # never the client's bytes

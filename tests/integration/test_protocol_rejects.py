"""Protocol-level rejects and client read timeouts over raw sockets: every
malformed or stalled request gets the error shape of the route it named (or a
clean close), the right status, and no traceback in the log."""

from __future__ import annotations

import logging
import socket

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.bodies import BOUNDED
from tests.support import endpoint, fleet_config

GUARD = 10.0  # seconds a socket read may block before the test fails: a hang, not a timing assertion
CHAT = b'{"model":"fast","messages":[{"role":"user","content":"hi"}]}'


def exchange(port: int, data: bytes, *, shut: bool = False) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):  # b"" when the server closes; socket.timeout (a failure) if it never does
        received += chunk
    return received


def parse(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, orjson.loads(body)


def openai_error(raw: bytes, status: int) -> dict[str, object]:
    got, body = parse(raw)
    assert got == status, raw
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    return error


def anthropic_error(raw: bytes, status: int) -> dict[str, object]:
    got, body = parse(raw)
    assert got == status, raw
    assert body["type"] == "error"
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"type", "message"}
    return error


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.fixture
def port(upstreams, gateway) -> int:
    sim = upstreams("fast")
    return int(gateway(fleet_config({"fast": [endpoint(sim, "m")]}, server={"max_body_bytes": 4096})).port)


MALFORMED = [
    pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, id="no-colon"),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        400,
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        id="cl-and-te",
    ),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
        400,
        id="te-not-last-chunked",
    ),
    pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, id="negative-cl"),
    pytest.param(b"POST /v1/chat/completions HTTP/9.9\r\nHost: x\r\n\r\n", 400, id="bad-version"),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        id="header-too-long",
    ),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        431,
        id="too-many-headers",
    ),
]


@pytest.mark.parametrize(("request_bytes", "status"), MALFORMED)
def test_malformed_openai_requests_get_openai_errors(port, caplog, request_bytes: bytes, status: int) -> None:
    with caplog.at_level(logging.INFO):
        error = openai_error(exchange(port, request_bytes), status)
    assert error["type"] == "invalid_request_error"
    assert b"aaaa" not in orjson.dumps(error)  # the client's bytes are not echoed
    no_tracebacks(caplog)


@pytest.mark.parametrize(("request_bytes", "status"), MALFORMED)
def test_malformed_anthropic_requests_get_anthropic_errors(port, caplog, request_bytes: bytes, status: int) -> None:
    request_bytes = request_bytes.replace(b"/v1/chat/completions", b"/v1/messages", 1)
    with caplog.at_level(logging.INFO):
        error = anthropic_error(exchange(port, request_bytes), status)
    assert error["type"] == "invalid_request_error"
    no_tracebacks(caplog)


def test_rejects_name_the_fault_in_fixed_words(port) -> None:
    raw = exchange(port, b"POST /v1/messages HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert "Host header" in str(anthropic_error(raw, 400)["message"])
    raw = exchange(port, MALFORMED[2].values[0])  # type: ignore[index]
    assert "Content-Length and Transfer-Encoding" in str(openai_error(raw, 400)["message"])


def test_unparseable_request_line_gets_the_openai_shape(port, caplog) -> None:
    with caplog.at_level(logging.INFO):
        error = openai_error(exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n"), 400)
        assert error["code"] == "malformed_request"
        error = openai_error(exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"), 414)
        assert error["code"] == "uri_too_long"
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "head",
    [
        b"CONNECT  \r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",  # no target: once a hang
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
        b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\nanything after",
    ],
)
def test_connect_is_refused_with_a_405_and_a_close(port, caplog, head: bytes) -> None:
    with caplog.at_level(logging.INFO):
        error = openai_error(exchange(port, head), 405)  # exchange reads until the server closes
    assert error["code"] == "method_not_allowed"
    assert "not a proxy" in str(error["message"])
    no_tracebacks(caplog)


def test_bad_chunked_framing_is_a_400_in_the_route_shape(port, caplog) -> None:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        error = anthropic_error(exchange(port, head + b"zz\r\nhello\r\n0\r\n\r\n"), 400)
        assert "malformed" in str(error["message"])
        error = openai_error(exchange(port, head.replace(b"/v1/messages", b"/chat") + b"5\r\nhelloXX0\r\n\r\n"), 400)
    no_tracebacks(caplog)


def test_body_over_max_body_bytes_is_a_413_in_the_route_shape(port, caplog) -> None:
    body = b'{"model":"fast","messages":[{"role":"user","content":"' + b"x" * 8000 + b'"}]}'
    head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    with caplog.at_level(logging.INFO):
        error = anthropic_error(exchange(port, head % len(body) + body), 413)
        assert "max_body_bytes" in str(error["message"])
        chunked = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        raw = exchange(port, chunked + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        assert "max_body_bytes" in str(openai_error(raw, 413)["message"])
    no_tracebacks(caplog)


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
def test_a_body_not_in_its_content_encoding_is_a_400_without_a_traceback(port, caplog, encoding: bytes) -> None:
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    with caplog.at_level(logging.INFO):
        error = anthropic_error(exchange(port, head % (b"/v1/messages", encoding, len(CHAT)) + CHAT), 400)
        assert "Content-Encoding" in str(error["message"])
        openai_error(exchange(port, head % (b"/v1/chat/completions", encoding, len(CHAT)) + CHAT), 400)
    no_tracebacks(caplog)  # aiohttp met the error again draining the body, and logged it as unhandled


def ollama_error(raw: bytes, status: int) -> str:
    got, body = parse(raw)
    assert got == status, raw
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    return body["error"]


EXPECTING = b"HTTP/1.1\r\nHost: x\r\nExpect: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@pytest.mark.parametrize("expect", [b"x", b"a\x86", b"100-continue, x"])  # a\x86: not UTF-8, once a 500
def test_an_unknown_expectation_is_a_417_in_the_route_shape(port, caplog, expect: bytes) -> None:
    with caplog.at_level(logging.INFO):
        error = openai_error(exchange(port, b"POST /v1/chat/completions " + EXPECTING % expect), 417)
        assert error["code"] == "expectation_failed"
        assert "100-continue" in str(error["message"])
        anthropic_error(exchange(port, b"POST /v1/messages " + EXPECTING % expect), 417)
        assert "Expect" in ollama_error(exchange(port, b"POST /api/chat " + EXPECTING % expect), 417)
        openai_error(exchange(port, b"GET /no/such/route " + EXPECTING % expect), 417)  # unmatched routes too
    no_tracebacks(caplog)


def test_expect_100_continue_still_gets_the_body_read(port) -> None:
    raw = exchange(
        port,
        b"POST /v1/chat/completions "
        + EXPECTING.replace(b"{}", CHAT).replace(b": 2", b": %d" % len(CHAT)) % b"100-continue",
    )
    interim, _, final = raw.partition(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue"
    status, body = parse(final)
    assert status == 200
    assert body["object"] == "chat.completion"


def test_expect_100_continue_with_a_declared_body_over_the_limit_is_a_413_instead(port) -> None:
    head = EXPECTING.replace(b"{}", b"").replace(b": 2", b": 4097") % b"100-continue"  # max_body_bytes 4096
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(b"POST /v1/messages " + head)  # the body is never sent
        raw = b""
        while b"\r\n\r\n" not in raw:  # the answer comes without the body: socket.timeout (a failure) if not
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
        sock.shutdown(socket.SHUT_WR)  # then the server closes
        raw += read_to_close(sock)
    assert not raw.startswith(b"HTTP/1.1 100"), raw
    assert "max_body_bytes" in str(anthropic_error(raw, 413)["message"])


def test_a_metrics_token_that_is_not_utf8_is_a_401_not_a_500(upstreams, gateway, caplog) -> None:
    sim = upstreams("fast")
    config = fleet_config({"fast": [endpoint(sim, "m")]}, observability={"metrics_token_env": "TOKEN"})
    token_port = int(gateway(config, env={"TOKEN": "s3cret-token"}).port)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"
    with caplog.at_level(logging.INFO):
        assert openai_error(exchange(token_port, head % b"\xff\xfe"), 401)["code"] == "unauthorized"
        assert exchange(token_port, head % b"s3cret-token").startswith(b"HTTP/1.1 200")
    no_tracebacks(caplog)


@pytest.fixture
def slow_port(upstreams, gateway) -> int:
    """A gateway with small client timeouts, so the tests wait on the server's close, not a clock."""
    sim = upstreams("fast")
    limits = {
        "client_header_timeout_seconds": 0.3,
        "client_body_timeout_seconds": 0.3,
        "client_keepalive_timeout_seconds": 0.3,
    }
    config = fleet_config({"fast": [endpoint(sim, "m")]}, limits=limits, observability={"metrics_token_env": "TOKEN"})
    return int(gateway(config, env={"TOKEN": "s3cret-token"}).port)


def test_a_head_sent_too_slowly_is_a_408_in_the_route_shape(slow_port, caplog) -> None:
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
            sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
            error = anthropic_error(read_to_close(sock), 408)
        assert "client_header_timeout_seconds" in str(error["message"])
        with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
            sock.sendall(b"GET /v1/mod")
            assert openai_error(read_to_close(sock), 408)["code"] == "request_timeout"
    no_tracebacks(caplog)


def test_a_body_sent_too_slowly_is_a_408_in_the_route_shape(slow_port, caplog) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
            sock.sendall(head % len(CHAT) + CHAT[:10])  # the rest never comes
            error = openai_error(read_to_close(sock), 408)
        assert "client_body_timeout_seconds" in str(error["message"])
        with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
            sock.sendall((head % len(CHAT)).replace(b"/v1/chat/completions", b"/v1/messages"))  # no body at all
            anthropic_error(read_to_close(sock), 408)
    no_tracebacks(caplog)


def test_an_idle_connection_is_closed_without_a_response(slow_port) -> None:
    with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
        assert read_to_close(sock) == b""  # never sent a byte: a clean close
    with socket.create_connection(("127.0.0.1", slow_port), timeout=GUARD) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_to_close(sock)  # served, then closed once idle on the keep-alive timeout
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.count(b"HTTP/1.1") == 1


def test_a_well_formed_request_still_works_after_the_timeouts(slow_port) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    raw = exchange(slow_port, head % len(CHAT) + b"Connection: close\r\n\r\n" + CHAT)
    status, body = parse(raw)
    assert status == 200
    assert body["object"] == "chat.completion"


request_heads = st.tuples(
    st.sampled_from([b"POST", b"GET", b"PUT", b"get", b"P\x00ST", b"", b"CONNECT"]),
    st.sampled_from(
        [b"/v1/chat/completions", b"/v1/messages", b"/api/chat", b"/health", b"/metrics", b"*", b"", b"/%zz", b"/\xff"]
    ),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"http/1.1"]),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    *(b"Host", b"Content-Type", b"X-A", b"Transfer-Encoding", b"Content-Length", b"Expect"),
                    *(b"Authorization", b"X-Api-Key", b"X-Request-Id", b"traceparent", b"anthropic-beta"),
                    *(b"X-Octoroute-Importance", b"X-Octoroute-Task-Type", b"Accept"),
                ]
            )
            | st.binary(max_size=12),
            st.sampled_from([b"x", b"chunked", b"application/json", b"1", b"-1", b"100-continue", b"gzip"])
            | st.sampled_from([b"Bearer \xff", b"Bearer s3cret-token", b"high", b"00-\xfe-01"])
            | st.binary(max_size=24),
        ),
        max_size=6,
    ),
    st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"]),
)


@BOUNDED
@given(head=request_heads, body=st.binary(max_size=40))
def test_any_request_head_gets_an_answer_in_shape_or_a_close(slow_port, caplog, head, body: bytes) -> None:
    method, target, version, headers, eol = head
    raw = method + b" " + target + b" " + version + eol + b"Host: x" + eol  # HTTP/1.1 requires Host
    raw += b"".join(name + b": " + value + eol for name, value in headers)
    raw += b"Connection: close" + eol + b"Content-Length: %d" % len(body) + eol + eol + body
    with caplog.at_level(logging.INFO):
        answer = exchange(slow_port, raw)
    if answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):  # an interim answer to Expect: 100-continue
        answer = answer.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    if answer:  # nothing at all is a clean close (e.g. a head the client never finished)
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer
        if status >= 400:
            parse(answer)
    no_tracebacks(caplog)

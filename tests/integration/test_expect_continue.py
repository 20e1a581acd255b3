"""`Expect: 100-continue` over raw sockets: a request refused from its head alone (no or
unknown `[auth]` key, a declared body over the limit, a client over its `[rate_limit]`, a
path or method no route serves) gets its final answer in the route's shape with no
`100 Continue` first and without the client sending its body; a request that passes
gets `100 Continue`, then its answer."""

from __future__ import annotations

import gzip
import logging
import socket
import urllib.request
from typing import Any

import orjson
import pytest
from tests.support import FakeClock, endpoint, fleet_config

GUARD = 10.0  # seconds a socket read may block before the test fails: a hang, not a timing assertion
CI_KEY = "ork-" + "1f" * 32
BOT_KEY = "ork-" + "2e" * 32
ENV = {"CI_KEY": CI_KEY, "BOT_KEY": BOT_KEY}
LIMIT = 4096  # server.max_body_bytes
CHAT = b'{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
ANTHROPIC = b'{"model":"fast","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
OLLAMA = b'{"model":"fast","stream":false,"messages":[{"role":"user","content":"hi"}]}'
ANTHROPIC_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
ROUTES = [
    pytest.param("/v1/chat/completions", CHAT, "openai", id="openai"),
    pytest.param("/v1/messages", ANTHROPIC, "anthropic", id="anthropic"),
    pytest.param("/api/chat", OLLAMA, "ollama", id="ollama"),
]


@pytest.fixture
def port(upstreams, gateway) -> int:
    auth = {
        "enabled": True,
        "keys": [
            {"name": "ci", "key_env": "CI_KEY"},
            {"name": "bot", "key_env": "BOT_KEY", "models": ["deep"]},
        ],
    }
    config = fleet_config(
        {"fast": [endpoint(upstreams("fast"), "fast-model")], "deep": [endpoint(upstreams("deep"), "deep-model")]},
        auth=auth,
        server={"max_body_bytes": LIMIT},
    )
    return int(gateway(config, env=ENV).port)


def head(path: str, length: int, key: str | None, *, keep_alive: bool = True, method: str = "POST") -> bytes:
    lines = [
        b"%s %s HTTP/1.1" % (method.encode(), path.encode()),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % length,
        b"Expect: 100-continue",
    ]
    if key is not None:
        lines.append(b"Authorization: Bearer " + key.encode())
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):  # b"" when the server closes; socket.timeout (a failure) if it never does
        received += chunk
    return received


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of the first response head (interim or final), and no further."""
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)  # socket.timeout (a failure) if the server sends nothing
        assert byte, f"connection closed after {received!r}"
        received += byte
    return received


def refused_from_head(
    port: int, path: str, length: int, key: str | None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """Send only the head and read the answer; the body is never sent. The answer says
    `Connection: close`, and the server closes once the client is done sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head(path, length, key, method=method))
        first = read_head(sock)  # the server may not wait for a body it did not ask for
        status_line, *fields = first.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
        assert not status_line.startswith("HTTP/1.1 100"), first
        headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        assert headers["content-type"].startswith("application/json")
        assert headers["connection"].lower() == "close"
        sock.shutdown(socket.SHUT_WR)  # as a client does that read `Connection: close`: it sends nothing more
        body = read_to_close(sock)
    assert len(body) == int(headers["content-length"])
    return int(status_line.split(" ", 2)[1]), headers, body


def assert_error_shape(api: str, body: bytes, status: int) -> str:
    data: Any = orjson.loads(body)
    if api == "openai":
        assert set(data["error"]) == {"message", "type", "param", "code"}
        return str(data["error"]["message"])
    if api == "anthropic":
        assert data["type"] == "error"
        assert data["error"]["type"] == ANTHROPIC_TYPES[status]
        return str(data["error"]["message"])
    assert set(data) == {"error"}
    assert isinstance(data["error"], str)
    return str(data["error"])


@pytest.mark.parametrize(("path", "body", "api"), ROUTES)
@pytest.mark.parametrize("key", [None, "ork-" + "00" * 32], ids=["missing", "unknown"])
def test_a_request_without_a_good_key_is_401_before_any_100_continue(port, caplog, path, body, api, key) -> None:
    with caplog.at_level(logging.INFO):
        status, headers, answer = refused_from_head(port, path, len(body), key)
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="octoroute"'
    assert headers["x-request-id"]  # the middlewares ran: this is the gateway's own 401
    assert "missing or unknown API key" in assert_error_shape(api, answer, 401)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize(("path", "body", "api"), ROUTES)
def test_a_good_key_gets_100_continue_then_the_answer(port, path, body, api) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head(path, len(body), CI_KEY, keep_alive=False))
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        raw = read_to_close(sock)
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    answer: Any = orjson.loads(raw.partition(b"\r\n\r\n")[2])
    if api == "openai":
        assert answer["object"] == "chat.completion"
    elif api == "anthropic":
        assert answer["type"] == "message"
    else:
        assert answer["done"] is True


def test_a_good_key_keeps_the_connection_for_the_next_request(port) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        for _ in range(2):
            sock.sendall(head("/v1/chat/completions", len(CHAT), CI_KEY))
            assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(CHAT)
            final = read_head(sock)
            assert final.startswith(b"HTTP/1.1 200 "), final
            length = int(next(x for x in final.split(b"\r\n") if x.lower().startswith(b"content-length:"))[15:])
            received = b""
            while len(received) < length:
                chunk = sock.recv(length - len(received))
                assert chunk, "closed mid-body"
                received += chunk
            assert orjson.loads(received)["object"] == "chat.completion"


@pytest.mark.parametrize(("path", "body", "api"), ROUTES)
def test_a_declared_body_over_the_limit_is_413_before_any_100_continue(port, path, body, api) -> None:
    status, _, answer = refused_from_head(port, path, LIMIT + 1, CI_KEY)
    assert status == 413
    assert "max_body_bytes" in assert_error_shape(api, answer, 413)


def test_a_body_at_the_limit_still_gets_100_continue(port) -> None:
    body = CHAT[:-1] + b',"user":"' + b"x" * (LIMIT - len(CHAT) - 10) + b'"}'
    assert len(body) == LIMIT
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head("/v1/chat/completions", len(body), CI_KEY, keep_alive=False))
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_to_close(sock).startswith(b"HTTP/1.1 200 ")


def test_a_model_the_key_may_not_use_is_decided_from_the_body_after_100_continue(port) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head("/v1/chat/completions", len(CHAT), BOT_KEY, keep_alive=False))
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the model is in the body
        sock.sendall(CHAT)
        raw = read_to_close(sock)
    assert raw.startswith(b"HTTP/1.1 403 "), raw
    assert "'bot' may not use model 'fast'" in assert_error_shape("openai", raw.partition(b"\r\n\r\n")[2], 403)


def test_a_spent_token_budget_is_429_before_any_100_continue(upstreams, gateway) -> None:
    auth = {"enabled": True, "keys": [{"name": "ci", "key_env": "CI_KEY", "tokens_per_day": 1}]}
    config = fleet_config({"fast": [endpoint(upstreams("fast"), "fast-model")]}, auth=auth)
    port = int(gateway(config, env=ENV, wall_clock=lambda: 1_765_000_000.0).port)
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:  # spends the day's budget
        sock.sendall(head("/v1/chat/completions", len(CHAT), CI_KEY, keep_alive=False))
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CHAT)
        assert read_to_close(sock).startswith(b"HTTP/1.1 200 ")
    for path, body, api in [("/v1/chat/completions", CHAT, "openai"), ("/v1/messages", ANTHROPIC, "anthropic")]:
        status, headers, answer = refused_from_head(port, path, len(body), CI_KEY)
        assert status == 429
        assert int(headers["retry-after"]) > 0
        assert "has used its 1 tokens for this day" in assert_error_shape(api, answer, 429)


def test_a_good_keys_body_sent_too_slowly_is_a_408_not_a_hang(upstreams, gateway) -> None:
    """The key's model patterns are checked from the body only after the body middleware
    read it within `limits.client_body_timeout_seconds`: a key cannot hold a connection open."""
    auth = {"enabled": True, "keys": [{"name": "bot", "key_env": "BOT_KEY", "models": ["deep"]}]}
    config = fleet_config(
        {"fast": [endpoint(upstreams("fast"), "fast-model")]},
        auth=auth,
        limits={"client_body_timeout_seconds": 0.3},
    )
    port = int(gateway(config, env=ENV).port)
    for path, body, api in [("/v1/chat/completions", CHAT, "openai"), ("/api/chat", OLLAMA, "ollama")]:
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
            sock.sendall(head(path, len(body), BOT_KEY, keep_alive=False).replace(b"Expect: 100-continue\r\n", b""))
            sock.sendall(body[:10])  # and never the rest
            raw = read_to_close(sock)
        assert raw.startswith(b"HTTP/1.1 408 "), raw
        assert "client_body_timeout_seconds" in assert_error_shape(api, raw.partition(b"\r\n\r\n")[2], 408)


UNROUTED = [
    pytest.param("POST", "/v1/chat/completion", 404, "openai", id="openai-404"),
    pytest.param("POST", "/v1/messages/nope", 404, "anthropic", id="anthropic-404"),
    pytest.param("POST", "/api/nope", 404, "ollama", id="ollama-404"),
    pytest.param("PUT", "/v1/chat/completions", 405, "openai", id="openai-405"),
    pytest.param("POST", "/v1/models", 405, "openai", id="get-only-405"),
    pytest.param("PATCH", "/v1/messages", 405, "anthropic", id="anthropic-405"),
]


@pytest.mark.parametrize(("method", "path", "status", "api"), UNROUTED)
def test_a_path_or_method_no_route_serves_is_answered_before_any_100_continue(
    port, caplog, method, path, status, api
) -> None:
    with caplog.at_level(logging.INFO):
        got, headers, answer = refused_from_head(port, path, len(CHAT), CI_KEY, method)
    assert got == status
    assert headers["x-request-id"]  # through the middlewares, as without Expect
    message = assert_error_shape(api, answer, status)
    assert ("no such route" if status == 404 else "method not allowed") in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_an_unrouted_path_without_a_key_is_401_before_any_100_continue(port) -> None:
    status, _, answer = refused_from_head(port, "/v1/nope", len(CHAT), None)
    assert status == 401
    assert "missing or unknown API key" in assert_error_shape("openai", answer, 401)


def test_unrouted_answers_without_auth_are_the_same_as_without_expect(upstreams, gateway) -> None:
    port = int(gateway(fleet_config({"fast": [endpoint(upstreams("fast"), "fast-model")]})).port)
    for method, path, status in [("POST", "/v2/chat", 404), ("DELETE", "/v1/messages", 405)]:
        got, _, with_expect = refused_from_head(port, path, len(CHAT), None, method)
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
            plain = head(path, len(CHAT), None, keep_alive=False, method=method)
            sock.sendall(plain.replace(b"Expect: 100-continue\r\n", b"") + CHAT)
            raw = read_to_close(sock)
        assert got == status
        assert raw.startswith(b"HTTP/1.1 %d " % status), raw
        assert with_expect == raw.partition(b"\r\n\r\n")[2]


def test_an_unrouted_bodiless_request_keeps_its_connection(port) -> None:
    """Nothing to send, nothing to wait for: the connection serves the next request."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head("/v1/nope", 0, CI_KEY, method="GET"))
        first = read_head(sock)
        assert first.startswith(b"HTTP/1.1 404 "), first
        assert b"connection: close" not in first.lower()
        length = int(next(x for x in first.split(b"\r\n") if x.lower().startswith(b"content-length:"))[15:])
        while length:
            length -= len(sock.recv(length))
        sock.sendall(head("/v1/models", 0, CI_KEY, method="GET"))
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")


@pytest.fixture
def limited(upstreams, gateway):
    """Factory: a gateway with `[rate_limit]` on (and `[auth]` when given) on a fake clock
    the test moves; returns its port and the clock."""

    def make(rate_limit: dict[str, Any], **sections: Any) -> tuple[int, FakeClock]:
        clock = FakeClock()
        config = fleet_config(
            {"fast": [endpoint(upstreams("fast"), "fast-model")]},
            rate_limit={"enabled": True, **rate_limit},
            **sections,
        )
        return int(gateway(config, env=ENV, clock=clock).port), clock

    return make


def continued(port: int, path: str, body: bytes, key: str | None, *, chunked: bool = False) -> bytes:
    """A request with Expect that must get `100 Continue`: its body is sent after it; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sent = head(path, len(body), key, keep_alive=False)
        if chunked:
            sent = sent.replace(b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        sock.sendall(sent)
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        return read_to_close(sock)


def without_expect(port: int, path: str, body: bytes, key: str | None) -> tuple[int, str | None, bytes]:
    """The same request without Expect: status, Retry-After and body as the normal path answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(head(path, len(body), key, keep_alive=False).replace(b"Expect: 100-continue\r\n", b"") + body)
        raw = read_to_close(sock)
    status_line, _, rest = raw.partition(b"\r\n")
    fields, _, answer = rest.partition(b"\r\n\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (f.partition(b":") for f in fields.split(b"\r\n"))}
    retry_after = headers.get(b"retry-after")
    return int(status_line.split()[1]), retry_after.decode() if retry_after is not None else None, answer


@pytest.mark.parametrize(("path", "body", "api"), ROUTES)
def test_a_client_over_its_rate_limit_is_429_before_any_100_continue(limited, caplog, path, body, api) -> None:
    port, _ = limited({"requests_per_second": 0.5, "burst": 1})
    assert continued(port, path, body, "k1").startswith(b"HTTP/1.1 200 ")
    with caplog.at_level(logging.INFO):
        status, headers, answer = refused_from_head(port, path, len(body), "k1")
    assert status == 429
    assert headers["retry-after"] == "2"
    assert "rate limit exceeded" in assert_error_shape(api, answer, 429)
    assert without_expect(port, path, body, "k1") == (429, "2", answer)  # the clock has not moved
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_refusal_before_100_continue_charges_nothing_and_a_request_let_through_is_charged_once(limited) -> None:
    port, clock = limited({"requests_per_second": 0.5, "burst": 1})  # one request per 2 s
    assert continued(port, "/v1/chat/completions", CHAT, "k1").startswith(b"HTTP/1.1 200 ")
    for _ in range(3):
        status, headers, _ = refused_from_head(port, "/v1/chat/completions", len(CHAT), "k1")
        assert (status, headers["retry-after"]) == (429, "2")  # a refusal did not move the wait
    clock.advance(2.0)
    assert continued(port, "/v1/chat/completions", CHAT, "k1").startswith(b"HTTP/1.1 200 ")
    status, headers, _ = refused_from_head(port, "/v1/chat/completions", len(CHAT), "k1")
    assert (status, headers["retry-after"]) == (429, "2")  # charged once: not free, and not twice (4)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics.json", timeout=GUARD) as reply:
        refusals = orjson.loads(reply.read())["refusals"]
    assert refusals["by_reason"]["rate_limit_requests"] == 4  # counted as the refusals after a body are


def test_limits_are_per_key_from_the_head(limited) -> None:
    port, _ = limited({"requests_per_second": 0.5, "burst": 1})
    assert continued(port, "/v1/chat/completions", CHAT, "k1").startswith(b"HTTP/1.1 200 ")
    assert refused_from_head(port, "/v1/chat/completions", len(CHAT), "k1")[0] == 429
    assert continued(port, "/v1/chat/completions", CHAT, "k2").startswith(b"HTTP/1.1 200 ")
    assert continued(port, "/v1/messages/count_tokens", ANTHROPIC, "k1").startswith(b"HTTP/1.1 200 ")  # not limited


def test_an_auth_keys_own_limit_is_429_before_any_100_continue(limited) -> None:
    auth = {"enabled": True, "keys": [{"name": "ci", "key_env": "CI_KEY", "requests_per_second": 0.5, "burst": 1}]}
    port, _ = limited({"requests_per_second": 100, "burst": 100}, auth=auth)
    assert continued(port, "/v1/messages", ANTHROPIC, CI_KEY).startswith(b"HTTP/1.1 200 ")
    status, headers, answer = refused_from_head(port, "/v1/messages", len(ANTHROPIC), CI_KEY)
    assert (status, headers["retry-after"]) == (429, "2")
    assert "rate limit exceeded" in assert_error_shape("anthropic", answer, 429)


def test_a_key_limited_to_some_models_gets_the_same_answer_as_without_expect(limited) -> None:
    """Over its rate limit and naming a model it may not use, a restricted key gets 403 without
    Expect (the model check comes first): so with Expect its head alone cannot decide, it gets
    `100 Continue`, and its body gets the same 403 (or, for a model it may use, the 429)."""
    keys = [{"name": "bot", "key_env": "BOT_KEY", "models": ["fast"], "requests_per_second": 0.5, "burst": 1}]
    port, _ = limited({"requests_per_second": 100, "burst": 100}, auth={"enabled": True, "keys": keys})
    assert continued(port, "/v1/chat/completions", CHAT, BOT_KEY).startswith(b"HTTP/1.1 200 ")  # the burst, spent
    deep = CHAT.replace(b'"fast"', b'"deep"')
    status, _, answer = without_expect(port, "/v1/chat/completions", deep, BOT_KEY)
    assert status == 403
    forbidden = continued(port, "/v1/chat/completions", deep, BOT_KEY)
    assert forbidden.startswith(b"HTTP/1.1 403 "), forbidden
    assert forbidden.partition(b"\r\n\r\n")[2] == answer
    limited_now = continued(port, "/v1/chat/completions", CHAT, BOT_KEY)
    assert limited_now.startswith(b"HTTP/1.1 429 "), limited_now
    assert b"Retry-After: 2" in limited_now


def test_a_declared_body_over_the_whole_token_budget_is_413_before_any_100_continue(limited) -> None:
    port, _ = limited({"tokens_per_minute": 10})  # CHAT (60 bytes) is 15 tokens by body bytes / 4
    status, headers, answer = refused_from_head(port, "/v1/chat/completions", len(CHAT), "k1")
    assert status == 413
    assert "retry-after" not in headers
    assert "estimated at 15 tokens" in assert_error_shape("openai", answer, 413)
    assert without_expect(port, "/v1/chat/completions", CHAT, "k1") == (413, None, answer)


def test_a_body_of_undeclared_size_is_measured_after_100_continue(limited) -> None:
    """Chunked: the head says nothing of the body's tokens, so the budget decides once it is read."""
    port, _ = limited({"tokens_per_minute": 10})
    raw = continued(port, "/v1/chat/completions", CHAT, "k1", chunked=True)
    assert raw.startswith(b"HTTP/1.1 413 "), raw
    assert "estimated at 15 tokens" in assert_error_shape("openai", raw.partition(b"\r\n\r\n")[2], 413)


def test_an_encoded_body_is_measured_decoded_after_100_continue(limited) -> None:
    """Content-Length counts the gzip bytes (more than CHAT's 60 here), not the body's tokens:
    the head cannot refuse it, and the decoded body (15 tokens) fits the budget of 16."""
    port, _ = limited({"tokens_per_minute": 16})
    packed = gzip.compress(CHAT)
    assert (len(packed) + 3) // 4 > 16
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sent = head("/v1/chat/completions", len(packed), "k1", keep_alive=False)
        sock.sendall(sent.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n"))
        assert read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(packed)
        raw = read_to_close(sock)
    assert raw.startswith(b"HTTP/1.1 200 "), raw


def test_a_request_within_its_limits_gets_100_continue_then_200(limited) -> None:
    port, _ = limited({"requests_per_second": 0.5, "burst": 2, "tokens_per_minute": 1000})
    for path, body in [("/v1/chat/completions", CHAT), ("/v1/messages", ANTHROPIC)]:
        assert continued(port, path, body, "k1").startswith(b"HTTP/1.1 200 ")


def test_a_limit_shared_on_redis_is_429_before_any_100_continue_on_the_other_gateway(
    upstreams, gateway, redis_server
) -> None:
    """Two gateways share one bucket per client in Redis: the one that did not serve the
    burst refuses from the head, and its refusals take nothing from the shared bucket."""
    state = {"backend": "redis", "url": redis_server.url, "key_prefix": "expect:", "timeout_ms": 2000}
    config = fleet_config(
        {"fast": [endpoint(upstreams("fast"), "fast-model")]},
        rate_limit={"enabled": True, "requests_per_second": 0.01, "burst": 1},  # then one per 100 s
        state=state,
    )
    a, b = (int(gateway(config).port) for _ in range(2))
    assert continued(a, "/v1/chat/completions", CHAT, "k1").startswith(b"HTTP/1.1 200 ")
    for port in (b, b, b, a):
        status, headers, answer = refused_from_head(port, "/v1/messages", len(ANTHROPIC), "k1")
        assert status == 429
        assert 99 <= int(headers["retry-after"]) <= 100  # a refusal that took a request would add 100 s
        assert "rate limit exceeded" in assert_error_shape("anthropic", answer, 429)
    assert continued(b, "/v1/chat/completions", CHAT, "k2").startswith(b"HTTP/1.1 200 ")

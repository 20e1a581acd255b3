"""Secrets never leave (issue 11, item 4): planted secrets, every exit.

An upstream answers 401, 422 and 500 with bodies that echo the endpoint's own
API key (the value of its `api_key_env`), a `sk-...` token, a `Bearer ...`
header and `http://user:pass@host` credentials. Each exit is then read in full
(client error bodies of both APIs, streamed and not; every octoroute log line;
`/models`, `/metrics`, `/metrics.json`, `/dashboard`; the event file;
`octoroute stats --once`) and must hold none of them."""

from __future__ import annotations

import logging
import subprocess
import sys

import anthropic
import openai
import orjson
import pytest
import urllib3
from tests.error_upstreams import Canned, ScriptedUpstream, scripted  # noqa: F401  (fixture)
from tests.support import endpoint, fleet_config

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
ENDPOINT_KEY = "local-upstream-secret-5f2e9a71"  # not key-shaped: only the literal match catches it
SK_TOKEN = "sk-proj-Q7wErTy9UiOp1AsDfGh"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0"
URL_CREDENTIALS = "http://admin:hunter22@10.1.2.3/v1"
PLANTED = (ENDPOINT_KEY, SK_TOKEN, "eyJhbGciOiJIUzI1NiJ9", "hunter22", "admin:")


def leaky(status: int) -> Canned:
    message = (
        "Incorrect API key provided: {key}. Also tried " + SK_TOKEN + ", Authorization: " + BEARER
        + " via " + URL_CREDENTIALS
    )  # fmt: skip
    return Canned(status, orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}}), {})


def assert_clean(where: str, text: str) -> None:
    for secret in PLANTED:
        assert secret not in text, f"{secret!r} leaked through {where}"


def test_planted_secrets_never_leave_through_any_exit(scripted, gateway, sdk_clients, caplog, tmp_path):  # noqa: F811
    refusing, failing = scripted("refusing"), scripted("failing")
    refusing.script([leaky(401)])
    failing.script([leaky(422), *[leaky(500)] * 4])
    events = tmp_path / "events.jsonl"
    config = fleet_config(
        {
            "fast": [endpoint(refusing, "m", id="refusing", api_key_env="UP_KEY")],
            "deep": [endpoint(failing, "m", id="failing", api_key_env="UP_KEY")],
        },
        observability={"events_file": str(events), "metrics": True},
    )
    with caplog.at_level(logging.DEBUG, logger="octoroute"):
        gw = gateway(config, env={"UP_KEY": ENDPOINT_KEY})
        bodies: list[str] = []
        # The upstream 401 that echoes the key: a 502 naming the refusal, OpenAI shape.
        with pytest.raises(openai.APIStatusError) as refused:
            sdk_clients.openai(gw).chat.completions.create(model="fast", messages=HI)
        assert refused.value.status_code == 502
        bodies.append(refused.value.response.text)
        # A 4xx passed back in the Anthropic shape.
        with pytest.raises(anthropic.APIStatusError) as passed:
            sdk_clients.anthropic(gw).messages.create(model="deep", max_tokens=16, messages=HI)
        assert passed.value.status_code == 422
        bodies.append(passed.value.response.text)
        # Retryable 500s on a stream, every attempt logged, then the client's error.
        with pytest.raises(openai.APIStatusError) as exhausted:
            list(sdk_clients.openai(gw).chat.completions.create(model="deep", messages=HI, stream=True))
        bodies.append(exhausted.value.response.text)
        assert all("[redacted]" in body for body in bodies)  # the message got through, minus the secrets

        pages = {path: HTTP.request("GET", gw.url + path).data.decode() for path in
                 ("/models", "/metrics", "/metrics.json", "/dashboard", "/v1/models")}  # fmt: skip
        stats = subprocess.run(
            [sys.executable, "-m", "octoroute", "stats", "--url", gw.url, "--once"],
            capture_output=True, text=True, timeout=60, check=False, env={"COLUMNS": "200", "PATH": ""},
        )  # fmt: skip
    for i, body in enumerate(bodies):
        assert_clean(f"client error body {i}", body)
    assert "[redacted]" in pages["/models"]  # last_error is there, redacted
    for path, page in pages.items():
        assert_clean(path, page)
    assert stats.returncode == 0, stats.stderr
    assert_clean("octoroute stats", stats.stdout + stats.stderr)
    ours = [r for r in caplog.records if r.name.startswith("octoroute")]
    assert any("attempt" in r.getMessage() for r in ours)
    assert_clean("log lines", "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in ours))
    assert_clean("event file", events.read_text())
    assert events.read_text()

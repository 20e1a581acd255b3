"""`octoroute doctor`'s judgement of what it saw (pure): verdicts and fixes."""

from __future__ import annotations

import pytest

from octoroute.cli.doctor import Verdict, bind_findings, endpoint_findings, is_loopback, key_findings
from octoroute.config.loader import validate_config
from octoroute.config.topology import EndpointSpec, ResolvedTimeouts
from octoroute.core.facts import FactSource, ServerFacts
from octoroute.upstream.checkup import Checkup, Tried

EP = EndpointSpec("fast/m", "fast", "m", "http://127.0.0.1:1/v1", 1.0, 1, None, None, None, ResolvedTimeouts(5, 5, 5))
OK = Tried(True, "answered in 3 ms", 3.0)


def checkup(**changes: object) -> Checkup:
    base: dict[str, object] = {
        "endpoint": EP,
        "reached": True,
        "error": None,
        "listing_status": 200,
        "working_base_url": EP.base_url,
        "models": ("m",),
        "server": "vLLM",
        "refused": False,
        "facts": ServerFacts(FactSource.VLLM_MODELS, context_window=8192),
        "listing_ms": 2.0,
        "chat": OK,
        "stream": OK,
        "tools": OK,
    }
    return Checkup(**{**base, **changes})  # type: ignore[arg-type]


def verdicts(c: Checkup) -> dict[str, Verdict]:
    return {f.check: f.verdict for f in endpoint_findings(c, "models.fast[0]")}


def test_all_good_is_all_ok():
    assert set(verdicts(checkup()).values()) == {Verdict.OK}


@pytest.mark.parametrize(
    ("changes", "check", "verdict", "in_fix"),
    [
        ({"reached": False, "error": "cannot connect"}, "reachable", Verdict.FAIL, "base_url ="),
        ({"working_base_url": "http://127.0.0.1:1/v1/v1"}, "base_url", Verdict.FAIL, "/v1/v1"),
        ({"models": ("other",)}, "model", Verdict.FAIL, 'name = "other"'),
        ({"models": ("other",), "server": "llama.cpp"}, "model", Verdict.WARN, 'name = "other"'),
        ({"tools": Tried(False, "answered without a tool call")}, "tools", Verdict.FAIL, "tools = false"),
        ({"chat": Tried(False, "total timeout after 5s")}, "chat", Verdict.FAIL, "timeouts ="),
        ({"facts": None}, "context", Verdict.WARN, "context_window ="),
        ({"refused": True}, "api key", Verdict.FAIL, "api_key_env ="),
    ],
)
def test_each_problem_has_its_verdict_and_fix(changes, check, verdict, in_fix):
    findings = {f.check: f for f in endpoint_findings(checkup(**changes), "models.fast[0]")}
    assert findings[check].verdict is verdict
    assert in_fix in (findings[check].fix or "")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("gateway.lan", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_bind_and_keys():
    open_config = validate_config(
        {
            "server": {"host": "0.0.0.0"},
            "models": {"fast": [{"name": "m", "base_url": "http://h/v1", "api_key_env": "K"}]},
        }
    )
    assert [f.verdict for f in bind_findings(open_config)] == [Verdict.FAIL]
    assert [f.verdict for f in key_findings(open_config, {})] == [Verdict.FAIL]
    assert "is empty" in key_findings(open_config, {"K": ""})[0].detail
    assert [f.verdict for f in key_findings(open_config, {"K": "x"})] == [Verdict.OK]


def test_when_the_chat_fails_the_tool_check_does_not_blame_tool_calling():
    broken = Tried(False, "HTTP 500: out of memory", status=500)
    findings = {f.check: f for f in endpoint_findings(checkup(chat=broken, stream=broken, tools=broken), "m")}
    assert findings["chat"].verdict is Verdict.FAIL
    assert findings["chat"].fix is not None
    assert findings["tools"].verdict is Verdict.FAIL
    assert findings["tools"].fix is None


def test_a_server_without_a_listing_whose_chat_works_is_only_a_warning():
    quiet = checkup(working_base_url=None, models=(), listing_status=404, error="GET .../models answered HTTP 404")
    assert verdicts(quiet)["base_url"] is Verdict.WARN
    broken = checkup(working_base_url=None, models=(), listing_status=404, chat=Tried(False, "HTTP 404: nothing"))
    assert verdicts(broken)["base_url"] is Verdict.FAIL

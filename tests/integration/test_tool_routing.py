"""`strategy = "tool"` over real HTTP: the router model answers with a function
call, with none, with bad arguments, with a 400 for `tools`, or is known (by the
capability table) not to call tools; then the real llama.cpp toolcaller model
(../shared/llm) as the router. The client is the official `openai` SDK; the
decision is read from the `X-Octoroute-*` headers and `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import urllib3
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests.support import LoopbackApp, endpoint, fleet_config, make_features

from octoroute.core.types import Importance, JudgeFailure, TaskType, Tier
from octoroute.routing.features import extract_features

HTTP = urllib3.PoolManager()
ROUTER_MODEL = "qwen2.5-1.5b-instruct"  # tools = true in the bundled capability table
CODE = [{"role": "user", "content": "Fix this:\n```py\ndef f():\n    return 1\n```"}]  # rule_code -> balanced
UNMATCHED = [{"role": "user", "content": "What is the history of tea?"}]  # a short question: no rule fires


def tool_call(arguments: str, name: str = "route_request") -> dict[str, Any]:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}],
    }
    return completion(message, "tool_calls")


def text_answer(text: str) -> dict[str, Any]:
    return completion({"role": "assistant", "content": text}, "stop")


def completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-router",
        "object": "chat.completion",
        "created": 1,
        "model": ROUTER_MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@dataclass
class ScriptedRouter(LoopbackApp):
    """A real HTTP server on loopback standing in for the router model: a request
    carrying `tools` gets `(status, body)`; any other chat request gets a plain answer."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: tool_call('{"tier": "deep"}'))
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    @property
    def tool_requests(self) -> list[dict[str, Any]]:
        return [b for b in self.bodies if "tools" in b]

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if "tools" not in body:
            return web.json_response(text_answer("router tier answering"))
        return web.json_response(self.body, status=self.status)


@pytest.fixture
def router(loop_thread) -> Iterator[ScriptedRouter]:
    scripted = ScriptedRouter()
    loop_thread.run(scripted.start())
    yield scripted
    loop_thread.run(scripted.stop())


@pytest.fixture
def tool_gateway(router, upstreams, gateway) -> Callable[..., Any]:
    """`tool_gateway(router_name=..., **routing)`: fast = the scripted router, plus a
    balanced and a deep fixture upstream; strategy tool, router tier fast."""

    def make(router_name: str = ROUTER_MODEL, capabilities: dict[str, Any] | None = None, **routing: Any) -> Any:
        config = fleet_config(
            {
                "fast": [{"name": router_name, "base_url": router.base_url, "id": "router"}],
                "balanced": [endpoint(upstreams("balanced"), "b", id="balanced-1")],
                "deep": [endpoint(upstreams("deep"), "d", id="deep-1")],
            },
            routing={"strategy": "tool", "router_tier": "fast", "llm_retries": 2, **routing},
        )
        if capabilities:
            config["capabilities"] = capabilities
        return gateway(config)

    return make


NOMINAL_SCORES = {"fast": "0.000", "balanced": "0.500", "deep": "1.000"}


def ask(sdk_clients, gw, messages) -> tuple[str, str, str, str]:
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="auto", messages=messages)
    raw.parse()  # a valid chat.completion reached the client
    h = raw.headers
    assert h["X-Octoroute-Score"] == NOMINAL_SCORES[h["X-Octoroute-Tier"]]  # tool picks a tier: its nominal score
    return h["X-Octoroute-Tier"], h["X-Octoroute-Strategy"], h["X-Octoroute-Reason"], h["X-Octoroute-Endpoint"]


def metric(gw, name: str, **labels: str) -> float:
    text = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    want = set(labels.items())
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and want <= set(s.labels.items())
    )


def test_the_router_models_tool_call_picks_the_tier(router, tool_gateway, sdk_clients):
    gw = tool_gateway()
    # A rule would send this code question to balanced: the tool call decides first.
    assert ask(sdk_clients, gw, CODE) == ("deep", "tool", "tool_classified", "deep-1")
    (sent,) = router.tool_requests
    assert sent["model"] == ROUTER_MODEL
    assert (sent["stream"], sent["tool_choice"], sent["temperature"]) == (False, "required", 0)
    assert [t["function"]["name"] for t in sent["tools"]] == ["route_request"]
    assert sent["tools"][0]["function"]["parameters"]["properties"]["tier"]["enum"] == ["fast", "balanced", "deep"]
    assert "def f():" in orjson.dumps(sent["messages"]).decode()
    assert metric(gw, "octoroute_requests_total", tier="deep", strategy="tool") == 1
    assert metric(gw, "octoroute_model_invocations_total", tier="fast") == 1  # the router call
    assert metric(gw, "octoroute_model_invocations_total", tier="deep") == 1

    router.body = tool_call('{"tier" :"fast"}')  # llama.cpp's spacing; served by the router tier itself
    assert ask(sdk_clients, gw, CODE) == ("fast", "tool", "tool_classified", "router")
    assert metric(gw, "octoroute_requests_total", tier="fast", strategy="tool") == 1


def test_an_anthropic_client_is_routed_by_the_tool_call_too(router, tool_gateway, sdk_clients):
    gw = tool_gateway()
    raw = sdk_clients.anthropic(gw).messages.with_raw_response.create(
        model="auto", max_tokens=64, messages=[{"role": "user", "content": "What is the history of tea?"}]
    )
    assert raw.parse().content[0].type == "text"
    h = raw.headers
    assert (h["X-Octoroute-Tier"], h["X-Octoroute-Strategy"], h["X-Octoroute-Reason"]) == (
        "deep",
        "tool",
        "tool_classified",
    )
    (sent,) = router.tool_requests
    assert "history of tea" in orjson.dumps(sent["messages"]).decode()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, text_answer("DEEP")),  # prose naming a tier is not a call
        (200, text_answer("")),
        (200, tool_call('{"tier": "huge"}')),
        (200, tool_call('{"tier": "deep"')),  # arguments cut off: not JSON
        (200, tool_call('{"tier": "deep"}', name="get_weather")),
        (200, text_answer("I'm sorry, I can't help with that.")),
    ],
    ids=["prose", "empty", "tier-outside-enum", "arguments-not-json", "wrong-function", "refusal"],
)
def test_a_bad_answer_falls_back_to_the_rules_then_the_default_tier(router, tool_gateway, sdk_clients, status, body):
    router.status, router.body = status, body
    gw = tool_gateway()
    assert ask(sdk_clients, gw, CODE) == ("balanced", "tool", "tool_failed_fallback_rule", "balanced-1")
    assert ask(sdk_clients, gw, UNMATCHED) == ("balanced", "tool", "tool_failed_fallback_default", "balanced-1")
    assert len(router.tool_requests) == 2  # an answer is an answer: no retry on another endpoint
    assert metric(gw, "octoroute_requests_total", tier="balanced", strategy="tool") == 2


def test_a_server_refusing_tools_is_not_retried_and_stays_healthy(router, tool_gateway, sdk_clients, loop_thread):
    router.status = 400
    router.body = {
        "error": {"code": 400, "message": "tools param requires --jinja flag", "type": "invalid_request_error"}
    }
    gw = tool_gateway(default_tier="deep")
    assert ask(sdk_clients, gw, UNMATCHED) == ("deep", "tool", "tool_failed_fallback_default", "deep-1")
    assert ask(sdk_clients, gw, CODE) == ("balanced", "tool", "tool_failed_fallback_rule", "balanced-1")
    assert len(router.tool_requests) == 2  # one per request: a 4xx is the verdict, llm_retries aside
    assert gw.gateway.board.get("router").healthy
    assert ask_router(loop_thread, gw) is JudgeFailure.REJECTED


def ask_router(loop_thread, gw) -> Tier | JudgeFailure:
    """What the gateway's router makes of the router model's answer, over real HTTP."""
    return loop_thread.run(gw.gateway.router.ask_tool(make_features(50, TaskType.QUESTION_ANSWER), "hello"))


def test_a_router_model_without_tools_in_the_capability_table_is_never_asked(
    router, tool_gateway, sdk_clients, loop_thread, caplog
):
    with caplog.at_level(logging.WARNING, logger="octoroute.events"):
        gw = tool_gateway(router_name="smollm2-135m-instruct")  # tools = false in the bundled table
    (warning,) = [r.getMessage() for r in caplog.records if "strategy tool" in r.getMessage()]
    assert "router (smollm2-135m-instruct) cannot call tools" in warning
    assert ask(sdk_clients, gw, CODE) == ("balanced", "tool", "tool_failed_fallback_rule", "balanced-1")
    assert ask(sdk_clients, gw, UNMATCHED) == ("balanced", "tool", "tool_failed_fallback_default", "balanced-1")
    assert ask_router(loop_thread, gw) is JudgeFailure.TOOLS_UNSUPPORTED
    assert router.tool_requests == []
    assert metric(gw, "octoroute_model_invocations_total", tier="fast") == 0


def test_a_capability_override_lets_an_unknown_router_model_call_tools(router, tool_gateway, sdk_clients, caplog):
    with caplog.at_level(logging.WARNING, logger="octoroute.events"):
        gw = tool_gateway(router_name="my-router", capabilities={"my-router": {"tools": True}})
    assert not [r for r in caplog.records if "strategy tool" in r.getMessage()]
    assert ask(sdk_clients, gw, UNMATCHED) == ("deep", "tool", "tool_classified", "deep-1")
    assert len(router.tool_requests) == 1


def test_a_router_of_kind_anthropic_gets_the_call_translated(upstreams, gateway, sdk_clients):
    native, deep = upstreams("native"), upstreams("deep")
    config = fleet_config(
        {
            "fast": [endpoint(native, "claude-haiku", id="native", kind="anthropic", api_key_env="KEY")],
            "deep": [endpoint(deep, "d", id="deep-1")],
        },
        routing={"strategy": "tool", "router_tier": "fast", "default_tier": "deep"},
        capabilities={"claude-*": {"tools": True}},
    )
    gw = gateway(config, {"KEY": "secret"})
    # The fixture upstream answers a forced call with the enum's first value: fast.
    assert ask(sdk_clients, gw, UNMATCHED) == ("fast", "tool", "tool_classified", "native")
    routed = native.requests[0]
    assert routed.path == "/v1/messages"
    assert routed.body is not None
    assert routed.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    (tool,) = routed.body["tools"]
    assert (tool["name"], tool["input_schema"]["properties"]["tier"]["enum"]) == (
        "route_request",
        ["fast", "balanced", "deep"],
    )


# -- the real llama.cpp toolcaller model as the router ----------------------------


def llama_tool_gateway(gateway, upstreams, server, *, tools_known: bool, **routing: Any) -> Any:
    config = fleet_config(
        {
            "fast": [{"name": server.model, "base_url": server.base_url, "id": "llama-router"}],
            "balanced": [endpoint(upstreams("balanced"), "b", id="balanced-1")],
            "deep": [endpoint(upstreams("deep"), "d", id="deep-1")],
        },
        routing={"strategy": "tool", "router_tier": "fast", **routing},
    )
    if tools_known:  # the bundled table does not know "toolcaller", so it assumes no tools
        config["capabilities"] = {server.model: {"tools": True}}
    return gateway(config)


@pytest.mark.llama
def test_the_real_toolcaller_model_picks_the_tier_by_its_call(llama_toolcaller, upstreams, gateway, sdk_clients):
    gw = llama_tool_gateway(gateway, upstreams, llama_toolcaller, tools_known=True)
    # What the model really answers to the gateway's own body, asked directly: llama.cpp's
    # grammar for tool_choice "required" keeps `tier` inside the enum, and this model
    # (greedy, random weights steered to one call) writes {"tier" :"deep"}.
    text = CODE[0]["content"]
    features = extract_features(CODE, tools_present=False, importance=Importance.NORMAL, task_type=None)
    body = {**gw.gateway.router.tool_body(features, text), "model": llama_toolcaller.model}
    direct = HTTP.request(
        "POST",
        f"{llama_toolcaller.base_url}/chat/completions",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert direct.status == 200, direct.data
    message = orjson.loads(direct.data)["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "route_request"
    assert orjson.loads(call["function"]["arguments"]) == {"tier": "deep"}
    # Through the gateway: the call decides, over the rule that would say balanced.
    assert ask(sdk_clients, gw, CODE) == ("deep", "tool", "tool_classified", "deep-1")
    assert metric(gw, "octoroute_requests_total", tier="deep", strategy="tool") == 1
    assert metric(gw, "octoroute_model_invocations_total", tier="fast") == 1


@pytest.mark.llama
def test_the_real_server_refusing_the_router_request_falls_back(llama_toolcaller, upstreams, gateway, sdk_clients):
    # A prompt bound above the model's 2,048-token context: llama-server answers the
    # router request with a 400 (exceed_context_size_error), which is not retried.
    gw = llama_tool_gateway(gateway, upstreams, llama_toolcaller, tools_known=True, llm_max_prompt_chars=100_000)
    long_chat = [{"role": "user", "content": "hello world " * 3000}]
    assert ask(sdk_clients, gw, long_chat) == ("balanced", "tool", "tool_failed_fallback_default", "balanced-1")
    assert metric(gw, "octoroute_model_invocations_total", tier="fast") == 1
    assert gw.gateway.board.get("llama-router").healthy
    assert ask(sdk_clients, gw, CODE) == ("deep", "tool", "tool_classified", "deep-1")  # short prompts still fit


@pytest.mark.llama
def test_the_real_toolcaller_unknown_to_the_capability_table_is_not_asked(
    llama_toolcaller, upstreams, gateway, sdk_clients
):
    gw = llama_tool_gateway(gateway, upstreams, llama_toolcaller, tools_known=False)
    assert ask(sdk_clients, gw, CODE) == ("balanced", "tool", "tool_failed_fallback_rule", "balanced-1")
    assert metric(gw, "octoroute_model_invocations_total", tier="fast") == 0

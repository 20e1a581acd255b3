"""Context windows: discovered from llama.cpp / vLLM / Ollama fixture servers (or
configured, or from the capability table), requests that cannot fit skip small
endpoints, a context-overflow answer is escalated to an endpoint or group that
can hold it (streamed or not, both APIs), and a request nothing can hold gets a
400 in its API's shape that says the sizes."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
import urllib3
from tests.context_upstreams import ContextUpstream, Flavour, servers  # noqa: F401  (fixture)
from tests.support import fleet_config

from octoroute.demo.simulated import Mode

CHAT = "POST /v1/chat/completions"


def ep(up: ContextUpstream, **extra: Any) -> dict[str, Any]:
    return {"name": up.label, "base_url": up.base_url, "id": up.label, **extra}


def config(models: dict[str, list[dict[str, Any]]], **sections: Any) -> dict[str, Any]:
    data = fleet_config(models, **sections)
    data["health"]["discover"] = True
    return data


def get_json(url: str) -> Any:
    response = urllib3.request("GET", url)
    assert response.status == 200, response.data
    return response.json()


def context_of(gw, endpoint_id: str) -> dict[str, Any]:
    rows = {row["id"]: row for row in get_json(f"{gw.url}/models")["endpoints"]}
    return rows[endpoint_id]["context"]


def context_events(gw) -> dict[tuple[str, str], int]:
    snapshot = get_json(f"{gw.url}/metrics.json")
    return {(e["group"], e["event"]): e["count"] for e in snapshot["context_events"]}


def words(n_chars: int) -> str:
    return ("lorem ipsum " * (n_chars // 12 + 1))[:n_chars]


def ask_openai(client: openai.OpenAI, model: str, text: str, stream: bool, max_tokens: int = 100) -> tuple[str, str]:
    """(serving endpoint, answer text) over /v1/chat/completions."""
    messages = [{"role": "user", "content": text}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=max_tokens)
        return raw.headers["X-Octoroute-Endpoint"], raw.parse().choices[0].message.content or ""
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, max_tokens=max_tokens, stream=True
    ) as response:
        text_out = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        return response.headers["X-Octoroute-Endpoint"], text_out


def ask_anthropic(
    client: anthropic.Anthropic, model: str, text: str, stream: bool, max_tokens: int = 100
) -> tuple[str, str]:
    """(serving endpoint, answer text) over /v1/messages."""
    messages = [{"role": "user", "content": text}]
    if not stream:
        raw = client.messages.with_raw_response.create(model=model, messages=messages, max_tokens=max_tokens)
        message = raw.parse()
        return raw.headers["X-Octoroute-Endpoint"], "".join(b.text for b in message.content if b.type == "text")
    with client.messages.with_streaming_response.create(
        model=model, messages=messages, max_tokens=max_tokens, stream=True
    ) as response:
        out = "".join(
            e.delta.text for e in response.parse() if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
        return response.headers["X-Octoroute-Endpoint"], out


def ask(sdk_clients, gw, api: str, model: str, text: str, stream: bool, max_tokens: int = 100) -> tuple[str, str]:
    if api == "openai":
        return ask_openai(sdk_clients.openai(gw), model, text, stream, max_tokens)
    return ask_anthropic(sdk_clients.anthropic(gw), model, text, stream, max_tokens)


# -- discovery ---------------------------------------------------------------


def test_windows_and_slots_are_discovered_configured_or_looked_up(servers, gateway):  # noqa: F811
    llama = servers(Flavour.LLAMA, 2048, "llama", slots=4)
    vllm = servers(Flavour.VLLM, 8192, "vllm")
    ollama_set = servers(Flavour.OLLAMA, 8192, "qwen2.5-coder:7b", num_ctx=8192)
    ollama_default = servers(Flavour.OLLAMA, 4096, "qwen2.5:14b", trained=32768)
    silent = servers(Flavour.OPENAI, 8192, "qwen2.5-coder-32b-instruct")
    pinned = servers(Flavour.LLAMA, 2048, "pinned", slots=2)
    gw = gateway(
        config(
            {
                "fast": [ep(llama), ep(vllm), ep(ollama_set), ep(ollama_default)],
                "deep": [ep(silent), ep(pinned, context_window=1000)],
            }
        )
    )
    assert context_of(gw, "llama") == {
        "window": 2048,
        "source": "discovered",
        "told_by": "llama_props",
        "total_slots": 4,
    }
    assert context_of(gw, "vllm") == {
        "window": 8192,
        "source": "discovered",
        "told_by": "vllm_models",
        "total_slots": None,
    }
    # Ollama: a num_ctx parameter is trusted; without one, the runtime default (4096), not the trained 32768.
    assert context_of(gw, "qwen2.5-coder:7b")["window"] == 8192
    assert context_of(gw, "qwen2.5:14b") == {
        "window": 4096,
        "source": "discovered",
        "told_by": "ollama_show",
        "total_slots": None,
    }
    # A server that says nothing: the capability table (Qwen2.5-Coder: 32K).
    assert context_of(gw, "qwen2.5-coder-32b-instruct") == {
        "window": 32768,
        "source": "table",
        "told_by": None,
        "total_slots": None,
    }
    # Config wins over what the server says; the slots it said are still reported.
    assert context_of(gw, "pinned") == {"window": 1000, "source": "config", "told_by": None, "total_slots": 2}
    # The same facts in /metrics.json.
    rows = {e["id"]: e for e in get_json(f"{gw.url}/metrics.json")["endpoints"]}
    assert rows["llama"]["context"]["total_slots"] == 4
    assert rows["vllm"]["context"]["window"] == 8192
    # Each server was asked where it answers, and nothing else was sent.
    assert vllm.paths == ["GET /v1/models"]
    assert llama.paths == ["GET /v1/models", "GET /props"]
    assert ollama_set.paths == ["GET /v1/models", "GET /props", "POST /api/show"]
    assert all(CHAT not in up.paths for up in (llama, vllm, ollama_set, silent))


def test_discovery_is_off_when_configured_so(servers, gateway):  # noqa: F811
    llama = servers(Flavour.LLAMA, 2048, "llama", slots=4)
    gw = gateway(fleet_config({"fast": [ep(llama)]}))
    assert context_of(gw, "llama") == {"window": None, "source": "unknown", "told_by": None, "total_slots": None}
    assert llama.paths == []


def test_active_probes_rediscover_a_changed_window(servers, gateway, loop_thread):  # noqa: F811
    llama = servers(Flavour.LLAMA, 2048, "llama", slots=1)
    gw = gateway(config({"fast": [ep(llama)]}))
    assert context_of(gw, "llama")["window"] == 2048
    llama.window, llama.slots = 4096, 2  # restarted with -c 4096 -np 2
    loop_thread.run(gw.gateway.probe_all())
    assert context_of(gw, "llama") == {
        "window": 4096,
        "source": "discovered",
        "told_by": "llama_props",
        "total_slots": 2,
    }
    assert llama.paths[-2:] == ["GET /v1/models", "GET /props"]  # the probe, then only the source that answered


def test_a_server_down_at_startup_is_asked_when_a_probe_finds_it_up(servers, gateway, loop_thread):  # noqa: F811
    llama = servers(Flavour.LLAMA, 2048, "llama", slots=2)
    loop_thread.run(llama.stop())  # its port stays known: the same server comes back there
    gw = gateway(config({"fast": [ep(llama)]}))
    assert context_of(gw, "llama")["source"] == "unknown"
    loop_thread.run(llama.start())
    loop_thread.run(gw.gateway.probe_all())
    assert context_of(gw, "llama") == {
        "window": 2048,
        "source": "discovered",
        "told_by": "llama_props",
        "total_slots": 2,
    }


def test_a_server_that_says_nothing_is_not_asked_again(servers, gateway, loop_thread):  # noqa: F811
    silent = servers(Flavour.OPENAI, 8192, "silent")
    gw = gateway(config({"fast": [ep(silent)]}))
    assert silent.paths == ["GET /v1/models", "GET /props", "POST /api/show"]
    loop_thread.run(gw.gateway.probe_all())
    assert silent.paths[3:] == ["GET /v1/models"]  # the probe alone


# -- fit-skip ----------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_request_too_large_for_an_endpoint_skips_it(servers, gateway, sdk_clients, api, stream):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small", chars_per_token=4)
    big = servers(Flavour.VLLM, 16384, "big", chars_per_token=4)
    gw = gateway(config({"fast": [ep(small, priority=2), ep(big, priority=1)]}))
    served, text = ask(sdk_clients, gw, api, "fast", words(12_000), stream)  # ~3,000 tokens
    assert (served, text) == ("big", "served by big")
    assert CHAT not in small.paths
    # A short one still goes to the preferred small endpoint.
    assert ask(sdk_clients, gw, api, "fast", "hello", stream)[0] == "small"
    assert context_events(gw) == {("fast", "skipped"): 1, ("fast", "escalated"): 1}


def test_requested_output_counts_toward_the_fit(servers, gateway, sdk_clients):  # noqa: F811
    small = servers(Flavour.VLLM, 2048, "small", chars_per_token=4)
    big = servers(Flavour.VLLM, 16384, "big", chars_per_token=4)
    gw = gateway(config({"fast": [ep(small, priority=2), ep(big, priority=1)]}))
    assert ask(sdk_clients, gw, "openai", "fast", words(4000), False, max_tokens=100)[0] == "small"
    assert ask(sdk_clients, gw, "openai", "fast", words(4000), False, max_tokens=4000)[0] == "big"
    assert small.chats == 1


# -- escalation after an overflow answer -------------------------------------


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_overflow_answer_is_escalated_to_a_larger_endpoint(servers, gateway, sdk_clients, flavour, stream):  # noqa: F811
    # The server counts 2 characters a token, the gateway estimates 4: 6,000 characters
    # look like ~1,500 tokens to the gateway and are 3,000 to the server.
    small = servers(flavour, 2048, "small")
    big = servers(Flavour.LLAMA, 16384, "big")
    gw = gateway(config({"fast": [ep(small, priority=2, context_window=2048), ep(big, priority=1)]}))
    served, text = ask(sdk_clients, gw, "openai", "fast", words(6000), stream)
    assert (served, text) == ("big", "served by big")
    assert small.chats == 1
    assert big.chats == 1
    row = {r["id"]: r for r in get_json(f"{gw.url}/models")["endpoints"]}["small"]
    assert row["healthy"] is True
    assert row["consecutive_failures"] == 0
    events = context_events(gw)
    assert events[("fast", "overflowed")] == 1
    assert events[("fast", "escalated")] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_clients_are_escalated_too(servers, gateway, sdk_clients, stream):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    big = servers(Flavour.LLAMA, 16384, "big")
    gw = gateway(config({"fast": [ep(small, priority=2), ep(big, priority=1)]}))
    assert ask(sdk_clients, gw, "anthropic", "fast", words(6000), stream) == ("big", "served by big")
    assert small.chats == 1


def test_the_window_an_overflow_states_is_learned(servers, gateway, sdk_clients):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    big = servers(Flavour.LLAMA, 16384, "big")
    # The operator believes the small server has 8K; it says otherwise when asked too much.
    gw = gateway(fleet_config({"fast": [ep(small, priority=2, name="qwen2.5-7b"), ep(big, priority=1)]}))
    assert context_of(gw, "small")["window"] == 32768  # the table's guess, no discovery
    assert ask(sdk_clients, gw, "openai", "fast", words(6000), False)[0] == "big"
    assert context_of(gw, "small") == {
        "window": 2048,
        "source": "discovered",
        "told_by": "overflow_error",
        "total_slots": None,
    }
    # The next request of that size skips it without asking.
    assert ask(sdk_clients, gw, "openai", "fast", words(9000), False)[0] == "big"
    assert small.chats == 1


def test_escalation_goes_along_the_fallback_chain_then_to_any_larger_group(servers, gateway, sdk_clients):  # noqa: F811
    fast = servers(Flavour.LLAMA, 2048, "fast-1")
    balanced = servers(Flavour.LLAMA, 4096, "balanced-1")
    huge = servers(Flavour.VLLM, 65536, "huge-1")
    roomy = servers(Flavour.VLLM, 32768, "roomy-1")
    gw = gateway(
        config(
            {
                "fast": [ep(fast)],
                "balanced": [ep(balanced)],
                "huge": [ep(huge)],
                "roomy": [ep(roomy)],
            },
            fallback={"fast": "balanced", "balanced": "none"},
        )
    )
    # ~3,000 tokens estimated: too large for fast (skipped), fits balanced's window by the
    # estimate but the server counts 6,000 -> overflow; then the smallest larger group.
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": words(12_000)}], max_tokens=100
    )
    assert raw.headers["X-Octoroute-Endpoint"] == "roomy-1"
    assert "fallback from fast to roomy" in raw.headers["X-Octoroute-Reason"]
    assert fast.chats == 0
    assert balanced.chats == 1
    assert huge.chats == 0
    # Ordinary failures do not leave the fallback chain.
    assert ask(sdk_clients, gw, "openai", "fast", "hello", False)[0] == "fast-1"


# -- nothing can hold it -----------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_client_gets_400_with_the_sizes(servers, gateway, sdk_clients, stream):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    gw = gateway(config({"fast": [ep(small)]}))
    client = sdk_clients.openai(gw)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": words(40_000)}], max_tokens=500, stream=stream
        )
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "10005 prompt tokens, estimated" in error["message"]
    assert "500 requested output tokens" in error["message"]
    assert "largest context window available is 2048" in error["message"]
    assert small.chats == 0  # decided without sending it
    assert context_events(gw)[("fast", "rejected")] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_client_gets_400_with_the_sizes_after_every_endpoint_overflowed(
    servers,  # noqa: F811
    gateway,
    sdk_clients,
    stream,
):
    small = servers(Flavour.LLAMA, 2048, "small")
    other = servers(Flavour.LLAMA, 3072, "other")
    # Config claims more than the servers have: the overflow answers are the only truth.
    gw = gateway(config({"fast": [ep(small, context_window=8192), ep(other, context_window=8192)]}))
    client = sdk_clients.anthropic(gw)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="fast", messages=[{"role": "user", "content": words(14_000)}], max_tokens=200, stream=stream
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "7000 prompt tokens, counted by the upstream" in body["error"]["message"]
    assert "largest context window available is 3072" in body["error"]["message"]
    assert "(last refusal: upstream " in body["error"]["message"]  # the server's own words too
    assert "exceeds the available context size" in body["error"]["message"]
    assert small.chats == 1
    assert other.chats == 1


# -- a real llama.cpp server -------------------------------------------------


@pytest.mark.llama
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_real_llama_server_is_discovered_and_escalated_from(servers, gateway, sdk_clients, llama_tiny, api, stream):  # noqa: F811
    """The start script runs llama-server with -c 2048 -np 1. Its tiny model spends one
    token per digit, so 4,000 digits look like ~1,000 tokens to the gateway and are
    ~4,000 to the server: its exceed_context_size_error must send the request on."""
    big = servers(Flavour.VLLM, 16384, "big")
    llama = {"name": llama_tiny.model, "base_url": llama_tiny.base_url, "id": "llama", "priority": 2}
    gw = gateway(config({"fast": [llama, ep(big, priority=1)]}))
    assert context_of(gw, "llama") == {
        "window": 2048,
        "source": "discovered",
        "told_by": "llama_props",
        "total_slots": 1,
    }
    assert ask(sdk_clients, gw, api, "fast", "0123456789" * 400, stream) == ("big", "served by big")
    overflowed = get_json(f"{gw.url}/models")["endpoints"][0]
    assert overflowed["id"] == "llama"
    assert overflowed["healthy"] is True
    assert overflowed["consecutive_failures"] == 0
    assert overflowed["context"]["told_by"] == "overflow_error"
    # Too large by the estimate alone: skipped without asking llama-server.
    assert ask(sdk_clients, gw, api, "fast", words(12_000), stream)[0] == "big"
    # What fits is served by llama-server itself.
    served, _ = ask(sdk_clients, gw, api, "fast", "Say hello", stream, max_tokens=8)
    assert served == "llama"
    attempts = {e["id"]: e["outcomes"] for e in get_json(f"{gw.url}/metrics.json")["endpoints"]}
    assert attempts["llama"] == {"context_overflow": 1, "ok": 1}
    assert big.chats == 2


def test_a_group_can_refuse_escalated_requests(servers, gateway, sdk_clients):  # noqa: F811
    small = servers(Flavour.LLAMA, 2048, "small")
    cloud = servers(Flavour.OPENAI, 128_000, "cloud")
    gw = gateway(
        config(
            {"fast": [ep(small)], "paid": [ep(cloud)]},
            fallback={"fast": "none"},
            groups={"paid": {"context_escalation": False}},
        )
    )
    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk_clients, gw, "openai", "fast", words(12_000), False)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert cloud.chats == 0
    # Asked for by name, the group serves it.
    assert ask(sdk_clients, gw, "openai", "paid", words(12_000), False)[0] == "cloud"


def test_fail_open_never_sends_a_request_to_an_endpoint_too_small_for_it(upstreams, gateway, sdk_clients):
    sim = upstreams("down")
    sim.behaviour.mode = Mode.ERROR_500
    gw = gateway(
        fleet_config({"fast": [{"name": "m", "base_url": sim.base_url, "id": "down", "context_window": 1000}]})
    )
    client = sdk_clients.openai(gw)
    for _ in range(3):  # failure_threshold: now unhealthy
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert get_json(f"{gw.url}/models")["endpoints"][0]["healthy"] is False
    sent = sim.count
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": words(8000)}], max_tokens=10)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert sim.count == sent
    # A request that fits is still tried fail-open.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert sim.count == sent + 1

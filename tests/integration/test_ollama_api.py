"""Ollama's API on octoroute's port, driven by the official `ollama` Python client
against real fixture upstreams: an OpenAI-compatible one (SimulatedUpstream, and
the scripted upstream for tool calls) and an Anthropic-native one."""

from __future__ import annotations

import base64
from typing import Any

import ollama
import orjson
import pytest
import urllib3
from aiohttp import web
from tests.scripted import scripted  # noqa: F401  (fixture)
from tests.support import LoopbackApp, endpoint, fleet_config

from octoroute.demo.simulated import Mode
from octoroute.protocols.translate_stream import OpenAIToAnthropicStream

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = [
    {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
]


@pytest.fixture
def fleet(upstreams, gateway):
    """`fast`: an OpenAI-compatible upstream; `deep`: an Anthropic-native one; an exact alias."""
    openai_sim = upstreams("sim-fast")
    native_sim = upstreams("claude-like")
    config = fleet_config(
        {
            "fast": [endpoint(openai_sim, "qwen2.5-7b-instruct", id="fast-1")],
            "deep": [endpoint(native_sim, "claude-sonnet-4", id="native", kind="anthropic")],
        },
        aliases={"llama3:8b": "fast", "gpt-*": "deep"},
    )
    return gateway(config), openai_sim, native_sim


@pytest.fixture
def client():
    """Factory: `client(gw)` is an `ollama.Client` for the gateway; all are closed after the test."""
    made: list[ollama.Client] = []

    def make(gw) -> ollama.Client:
        made.append(ollama.Client(host=gw.url))
        return made[-1]

    yield make
    for c in made:
        c.close()


def post(gw, path: str, body: Any, raw: bytes | None = None) -> urllib3.BaseHTTPResponse:
    data = raw if raw is not None else orjson.dumps(body)
    return urllib3.request("POST", gw.url + path, body=data, headers={"Content-Type": "application/json"})


def test_lists_shows_and_reports_models(client, fleet):
    gw, _, _ = fleet
    listed = client(gw).list()
    names = [m.model for m in listed.models]
    assert names == ["auto:latest", "fast:latest", "deep:latest", "fast-1:latest", "native:latest", "llama3:8b"]
    assert all(m.details is not None and m.modified_at is not None for m in listed.models)
    shown = client(gw).show("fast")
    assert shown.capabilities is not None
    assert shown.capabilities[0] == "completion"
    assert "tools" in shown.capabilities  # qwen2.5 calls tools by the capability table
    assert shown.modelinfo is not None
    family = shown.modelinfo["general.architecture"]
    assert shown.modelinfo[f"{family}.context_length"] > 0
    assert shown.parameters == f"num_ctx {shown.modelinfo[f'{family}.context_length']}"
    assert client(gw).show("llama3:8b").details == shown.details  # an alias is its target
    loaded = client(gw).ps()
    assert {m.model for m in loaded.models} == set(names)
    assert all(m.context_length for m in loaded.models)
    version = urllib3.request("GET", gw.url + "/api/version")
    assert version.status == 200
    assert orjson.loads(version.data)["version"]
    root = urllib3.request("GET", gw.url + "/")
    assert root.status == 200
    assert root.data == b"Ollama is running"
    assert urllib3.request("HEAD", gw.url + "/").status == 200


def test_chat_without_streaming(client, fleet):
    gw, sim, _ = fleet
    answer = client(gw).chat(
        model="fast:latest",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        stream=False,
        format="json",
        options={"temperature": 0.2, "top_k": 20, "num_predict": 50, "stop": ["\n\n"], "seed": 7, "num_ctx": 8192},
        keep_alive="5m",
    )
    assert answer.done is True
    assert answer.done_reason == "stop"
    assert answer.model == "fast:latest"
    assert answer.message.role == "assistant"
    assert "sim-fast answering: hello there" in (answer.message.content or "")
    assert answer.prompt_eval_count
    assert answer.prompt_eval_count > 0
    assert answer.eval_count
    assert answer.eval_count > 0
    assert answer.total_duration
    assert answer.eval_duration
    assert answer.total_duration >= answer.eval_duration
    sent = sim.chat_requests[-1].body
    assert sent is not None
    assert sent["model"] == "qwen2.5-7b-instruct"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert (sent["temperature"], sent["top_k"], sent["max_tokens"], sent["stop"], sent["seed"]) == (
        0.2,
        20,
        50,
        ["\n\n"],
        7,
    )
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["stream"] is False
    assert "num_ctx" not in sent
    assert "keep_alive" not in sent
    raw = post(gw, "/api/chat", {"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": False})
    assert "X-Octoroute-Degraded" not in raw.headers  # nothing dropped, nothing named
    assert raw.headers["X-Octoroute-Tier"] == "fast"
    assert raw.headers["X-Octoroute-Endpoint"] == "fast-1"
    dropped = post(
        gw, "/api/chat", {"model": "fast", "messages": [{"role": "user", "content": "x"}], "options": {"num_ctx": 8192}}
    )
    assert dropped.headers["X-Octoroute-Degraded"] == "unsupported_field"
    metrics = urllib3.request("GET", f"{gw.url}/metrics").data.decode()
    assert 'octoroute_degradations_total{kind="unsupported_field"} 2.0' in metrics


def test_chat_streams_ndjson_by_default(client, fleet):
    gw, _, _ = fleet
    raw = post(gw, "/api/chat", {"model": "fast", "messages": [{"role": "user", "content": "one two three"}]})
    assert raw.status == 200
    assert raw.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in raw.data.splitlines()]
    assert all(not line["done"] for line in lines[:-1])
    assert lines[-1]["done"] is True
    parts = list(client(gw).chat(model="fast", messages=[{"role": "user", "content": "one two three"}], stream=True))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts) == "This is sim-fast answering: one two three"
    last = parts[-1]
    assert last.done_reason == "stop"
    assert last.prompt_eval_count
    assert last.eval_count == len(parts) - 1
    assert last.total_duration
    assert last.prompt_eval_duration is not None
    assert last.eval_duration is not None
    assert last.total_duration >= last.prompt_eval_duration + last.eval_duration


def test_images_become_data_uris(client, fleet):
    gw, sim, native = fleet
    message = {"role": "user", "content": "what is this?", "images": [PNG]}
    client(gw).chat(model="fast", messages=[message], stream=False)
    content = sim.chat_requests[-1].body["messages"][0]["content"]  # type: ignore[index]
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    client(gw).chat(model="deep", messages=[message], stream=False)
    blocks = native.requests[-1].body["messages"][0]["content"]  # type: ignore[index]
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}} in blocks


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_with_object_arguments(client, scripted, gateway, stream):  # noqa: F811
    upstream = scripted(lambda body: CALL if body["messages"][-1]["role"] == "user" else [{"content": "18 degrees"}])
    gw = gateway(fleet_config({"fast": [{"name": "qwen2.5-7b-instruct", "base_url": upstream.base_url}]}))
    ask = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        parts = list(client(gw).chat(model="fast", messages=ask, tools=[WEATHER], stream=True))
        calls = [c for p in parts for c in p.message.tool_calls or ()]
        assert parts[-1].done
        assert parts[-1].done_reason == "stop"
    else:
        calls = list(
            client(gw).chat(model="fast", messages=ask, tools=[WEATHER], stream=False).message.tool_calls or ()
        )
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}
    assert upstream.requests[-1].body["tools"] == [WEATHER]
    # the result goes back as a tool message naming the tool, as the ollama client sends it
    history = [
        *ask,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18", "tool_name": "get_weather"},
    ]
    final = client(gw).chat(model="fast", messages=history, tools=[WEATHER], stream=False)
    assert final.message.content == "18 degrees"
    sent = upstream.requests[-1].body["messages"]
    call = sent[1]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": call["id"], "content": "18"}


@pytest.mark.parametrize("stream", [False, True])
def test_generate(client, fleet, stream):
    gw, sim, _ = fleet
    kwargs: dict[str, Any] = {
        "model": "fast",
        "prompt": "tell me a story",
        "system": "You are terse.",
        "stream": stream,
    }
    if stream:
        parts = list(client(gw).generate(**kwargs))
        text = "".join(p.response or "" for p in parts)
        last = parts[-1]
        assert [p.done for p in parts[:-1]] == [False] * (len(parts) - 1)
    else:
        last = client(gw).generate(**kwargs)
        text = last.response or ""
    assert text == "This is sim-fast answering: tell me a story"
    assert last.done is True
    assert last.done_reason == "stop"
    assert last.eval_count
    assert sim.chat_requests[-1].body["messages"] == [  # type: ignore[index]
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "tell me a story"},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_native_upstream(client, fleet, stream):
    gw, _, native = fleet
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    if stream:
        parts = list(client(gw).chat(model="deep", messages=messages, tools=[WEATHER], stream=True))
        text = "".join(p.message.content or "" for p in parts)
        last = parts[-1]
    else:
        last = client(gw).chat(model="deep", messages=messages, tools=[WEATHER], stream=False)
        text = last.message.content or ""
    assert "claude-like answering: hi there" in text
    assert last.done
    assert last.done_reason == "stop"
    assert last.eval_count
    assert last.prompt_eval_count
    sent = native.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.body is not None
    assert sent.body["model"] == "claude-sonnet-4"
    assert sent.body["system"] == "Be brief."
    assert sent.body["tools"][0]["name"] == "get_weather"
    generated = list(client(gw).generate(model="gpt-4o", prompt="count to three", stream=True))
    assert "answering: count to three" in "".join(p.response or "" for p in generated)


def test_errors_in_ollama_shape(client, fleet):
    gw, sim, _ = fleet
    bad = post(gw, "/api/chat", None, raw=b"{not json")
    assert bad.status == 400
    assert set(orjson.loads(bad.data)) == {"error"}
    with pytest.raises(ollama.ResponseError) as unknown:
        client(gw).chat(model="mistral:7b", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert unknown.value.status_code == 404
    assert "mistral:7b" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as unknown_show:
        client(gw).show("nope")
    assert unknown_show.value.status_code == 404
    role = post(gw, "/api/chat", {"model": "fast", "messages": [{"role": "wizard", "content": "hi"}]})
    assert role.status == 400
    assert "messages[0]" in orjson.loads(role.data)["error"]
    fim = post(gw, "/api/generate", {"model": "fast", "prompt": "def f(", "suffix": "return x"})
    assert fim.status == 400
    assert "fill-in-the-middle" in orjson.loads(fim.data)["error"]  # no endpoint of `fast` does it
    sim.behaviour.mode = Mode.ERROR_500
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as failed:
            list(client(gw).generate(model="fast", prompt="hi", stream=True)) if stream else client(gw).generate(
                model="fast", prompt="hi", stream=False
            )
        assert failed.value.status_code == 502
        assert "sim-fast" in failed.value.error
    missing = urllib3.request("GET", gw.url + "/api/nothing")
    assert missing.status == 404
    assert set(orjson.loads(missing.data)) == {"error"}


def test_a_stream_cut_midway_ends_with_an_error_line(client, fleet):
    gw, sim, _ = fleet
    sim.behaviour.mode = Mode.DROP_MID_STREAM
    sim.behaviour.drop_after_chunks = 2
    with pytest.raises(ollama.ResponseError) as cut:
        list(client(gw).chat(model="fast", messages=[{"role": "user", "content": "a b c d e f"}], stream=True))
    assert "upstream stream failed" in cut.value.error


def test_empty_prompt_loads_the_model(client, fleet):
    gw, sim, _ = fleet
    before = len(sim.chat_requests)
    loaded = client(gw).generate(model="fast", prompt="", stream=False)
    assert loaded.done
    assert loaded.done_reason == "load"
    assert len(sim.chat_requests) == before


@pytest.mark.parametrize("stream", [False, True])
def test_think_reaches_the_server_and_reasoning_comes_back(client, scripted, gateway, stream):  # noqa: F811
    upstream = scripted(lambda body: [{"reasoning_content": "2 and 2"}, {"content": "4"}])
    gw = gateway(fleet_config({"fast": [{"name": "qwen3-8b", "base_url": upstream.base_url}]}))
    ask = [{"role": "user", "content": "2+2?"}]

    def answer(think):
        if not stream:
            reply = client(gw).chat(model="fast", messages=ask, think=think, stream=False)
            return reply.message.thinking, reply.message.content
        parts = list(client(gw).chat(model="fast", messages=ask, think=think, stream=True))
        thought = "".join(p.message.thinking or "" for p in parts) or None
        return thought, "".join(p.message.content or "" for p in parts)

    assert answer(True) == ("2 and 2", "4")
    assert upstream.requests[-1].body["reasoning_effort"] == "medium"
    assert answer("high") == ("2 and 2", "4")
    assert upstream.requests[-1].body["reasoning_effort"] == "high"
    assert answer(False) == (None, "4")  # asked not to think: the reasoning is not shown
    assert "reasoning_effort" not in upstream.requests[-1].body


class NativeToolCaller(LoopbackApp):
    """An Anthropic-native server that answers every request with one `tool_use` block
    (whole, or streamed as the Messages API streams it) and records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        return app

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        usage = {"input_tokens": 30, "output_tokens": 12}
        if not body.get("stream"):
            block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"]}
            message |= {"content": [block], "stop_reason": "tool_use", "stop_sequence": None, "usage": usage}
            return web.json_response(message)
        events = OpenAIToAnthropicStream(body["model"], "msg_1")
        chunks = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in CALL]
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        chunks.append({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            for event in events.feed(chunk):
                await response.write(event)
        for event in events.finish():
            await response.write(event)
        await response.write_eof()
        return response


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_from_an_anthropic_native_upstream(client, gateway, loop_thread, stream):
    native = NativeToolCaller()
    loop_thread.run(native.start())
    try:
        gw = gateway(fleet_config({"deep": [{"name": "claude-x", "base_url": native.base_url, "kind": "anthropic"}]}))
        ask = [{"role": "user", "content": "weather in Paris?"}]
        if stream:
            parts = list(client(gw).chat(model="deep", messages=ask, tools=[WEATHER], stream=True))
            calls = [c for p in parts for c in p.message.tool_calls or ()]
            last = parts[-1]
        else:
            last = client(gw).chat(model="deep", messages=ask, tools=[WEATHER], stream=False)
            calls = list(last.message.tool_calls or ())
        assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
        assert last.done_reason == "stop"
        assert (last.prompt_eval_count, last.eval_count) == (30, 12)
        sent = native.requests[-1]
        assert sent["tools"][0]["name"] == "get_weather"
        assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
        # the result goes back as a tool_result for the same tool_use id
        history = [
            *ask,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            },
            {"role": "tool", "content": "18", "tool_name": "get_weather"},
        ]
        client(gw).chat(model="deep", messages=history, tools=[WEATHER], stream=False)
        turns = native.requests[-1]["messages"]
        use = next(b for b in turns[1]["content"] if b["type"] == "tool_use")
        result = next(b for b in turns[2]["content"] if b["type"] == "tool_result")
        assert use["input"] == {"city": "Paris"}
        assert result["tool_use_id"] == use["id"]
    finally:
        loop_thread.run(native.stop())


def test_client_keys_apply_to_ollama_names(upstreams, gateway):
    sim = upstreams("fast")
    key = "ork-" + "4c" * 32
    auth = {"enabled": True, "keys": [{"name": "webui", "key_env": "WEBUI_KEY", "models": ["fast"]}]}
    gw = gateway(
        fleet_config({"fast": [endpoint(sim, "m")], "deep": [endpoint(sim, "n")]}, auth=auth), env={"WEBUI_KEY": key}
    )
    assert urllib3.request("GET", gw.url + "/").status == 200  # the probe stays open
    anonymous = post(gw, "/api/chat", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert anonymous.status == 401
    assert set(orjson.loads(anonymous.data)) == {"error"}
    keyed = ollama.Client(host=gw.url, headers={"Authorization": f"Bearer {key}"})
    try:
        assert [m.model for m in keyed.list().models] == ["fast:latest"]  # only what the key may use
        answer = keyed.chat(model="fast:latest", messages=[{"role": "user", "content": "hi"}], stream=False)
        assert answer.done
        with pytest.raises(ollama.ResponseError) as refused:
            keyed.chat(model="deep:latest", messages=[{"role": "user", "content": "hi"}], stream=False)
        assert refused.value.status_code == 403
    finally:
        keyed.close()


def test_rate_limits_apply_in_ollama_shape(upstreams, gateway):
    sim = upstreams("fast")
    limits = {"enabled": True, "requests_per_second": 0.001, "burst": 1}
    gw = gateway(fleet_config({"fast": [endpoint(sim, "m")]}, rate_limit=limits))
    body = {"model": "fast", "prompt": "hi", "stream": False}
    assert post(gw, "/api/generate", body).status == 200
    refused = post(gw, "/api/chat", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status == 429
    assert refused.headers["Retry-After"]
    assert "rate limit exceeded" in orjson.loads(refused.data)["error"]
    assert len(sim.chat_requests) == 1  # nothing forwarded


def test_embedding_groups_are_listed_and_described_as_such(client, upstreams, gateway):
    chat, emb = upstreams("chat"), upstreams("emb")
    data = fleet_config({"fast": [endpoint(chat, "qwen2.5-7b-instruct")], "embed": [endpoint(emb, "nomic-embed-text")]})
    data["groups"] = {"embed": {"serves": ["embeddings"]}}
    gw = gateway(data)
    assert "embed:latest" in [m.model for m in client(gw).list().models]
    assert client(gw).show("embed:latest").capabilities == ["embedding"]
    fast = client(gw).show("fast").capabilities
    assert fast is not None
    assert "completion" in fast
    assert "embedding" not in fast
    auto = client(gw).show("auto").capabilities
    assert auto is not None
    assert {"completion", "embedding"} <= set(auto)
    vectors = client(gw).embed(model="embed:latest", input=["one", "two"])
    assert len(vectors.embeddings) == 2
    with pytest.raises(ollama.ResponseError) as refused:
        client(gw).chat(model="embed:latest", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert refused.value.status_code == 400
    assert "chat" in refused.value.error


@pytest.mark.parametrize("stream", [False, True])
def test_generate_with_a_suffix_fills_in_the_middle(client, upstreams, gateway, stream):
    plain, olla, llama = upstreams("plain"), upstreams("olla"), upstreams("llama")
    data = fleet_config(
        {
            "fast": [endpoint(plain, "base-model")],
            "coder": [endpoint(olla, "qwen2.5-coder:1.5b", kind="ollama")],
            "infill": [endpoint(llama, "qwen-coder-gguf", fim="infill", max_tokens=64)],
        }
    )
    gw = gateway(data)
    prefix, suffix = "def add(a, b):\n    return", "\n\nprint(add(1, 2))"
    for group, label in (("coder", "olla"), ("infill", "llama")):
        kwargs: dict[str, Any] = {"model": f"{group}:latest", "prompt": prefix, "suffix": suffix, "stream": stream}
        if stream:
            parts = list(client(gw).generate(**kwargs))
            text, last = "".join(p.response or "" for p in parts), parts[-1]
        else:
            last = client(gw).generate(**kwargs)
            text = last.response or ""
        assert text == f" {label} continues return <fim suffix={len(suffix)}>"
        assert last.done
        assert last.done_reason == "stop"
        assert last.eval_count
    assert olla.requests[-1].body["suffix"] == suffix  # passed on to Ollama's own completions API
    assert llama.requests[-1].path == "/infill"
    with pytest.raises(ollama.ResponseError) as refused:
        list(client(gw).generate(model="fast", prompt=prefix, suffix=suffix, stream=True))
    assert refused.value.status_code == 400
    assert "fill-in-the-middle" in refused.value.error

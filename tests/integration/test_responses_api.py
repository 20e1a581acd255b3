"""The Responses API (`/v1/responses`) in front of chat-completions fixture upstreams,
driven by the official `openai` SDK with strict response validation; every answer and
stream event is also checked against the OpenAI OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import urllib3
from tests.integration.raw_upstream import CHUNK, SSE_HEAD_UNDELIMITED, RawUpstream, Script, sse_event
from tests.scripted import (
    ScriptedUpstream,
    scripted,  # noqa: F401  (fixture)
)
from tests.spec_validation import validate
from tests.support import eventually, fleet_config
from tests.unit.translate.test_translate_golden import parse_sse

HTTP = urllib3.PoolManager()
CODEX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "codex"
EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Start an agent",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
        }
    ],
}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch, as free text"}


def _call(name: str, arguments: dict[str, Any], call_id: str = "call_1", index: int = 0) -> dict[str, Any]:
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]}


def _answer_text(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"content": "Hel"}, {"content": "lo!"}]


def _config(up: ScriptedUpstream, **sections: Any) -> dict[str, Any]:
    return fleet_config({"fast": [{"name": "qwen2.5-coder-7b", "base_url": up.base_url, "id": "fast-1"}]}, **sections)


def _post(gw: Any, body: dict[str, Any], **headers: str) -> urllib3.BaseHTTPResponse:
    return HTTP.request(
        "POST",
        f"{gw.base_url}/responses",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        retries=False,
    )


def test_non_streamed_text_answer(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(_answer_text)
    gw = gateway(_config(up))
    client = sdk_clients.openai(gw)
    raw = client.responses.with_raw_response.create(
        model="auto", instructions="Be brief.", input="Say hello", max_output_tokens=50, temperature=0.2
    )
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "Hello!"
    assert response.model == "auto"
    assert response.usage is not None
    assert response.usage.input_tokens == 50
    assert response.usage.total_tokens == 60
    assert raw.headers["X-Octoroute-Tier"] == "fast"
    validate("Response", orjson.loads(raw.content))
    sent = up.requests[-1].body
    assert sent["model"] == "qwen2.5-coder-7b"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert sent["max_tokens"] == 50
    assert sent["temperature"] == 0.2


def test_streamed_text_answer_event_sequence(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(_answer_text)
    gw = gateway(_config(up))
    client = sdk_clients.openai(gw)
    with client.responses.stream(model="fast", input="Say hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "Hello!"
    assert final.usage is not None
    assert final.usage.output_tokens == 10
    raw = _post(gw, {"model": "fast", "input": "Say hello", "stream": True})
    events = parse_sse(raw.data)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    for name, data in events:
        assert name == data["type"]
        validate("ResponseStreamEvent", data)


def test_codex_shaped_tool_turn(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    """Developer messages with ids, namespace and web_search tools, include, store: false,
    client_metadata: Codex's first request; the answer is a call of a namespaced tool."""
    up = scripted(lambda body: [_call("multi_agent_v1__spawn_agent", {"task": "t"})])
    gw = gateway(_config(up))
    body = {
        "model": "auto",
        "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "Sys"}]},
            {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "Go"}]},
        ],
        "tools": [EXEC, AGENTS, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "s1",
        "client_metadata": {"session": "s1"},
    }
    raw = _post(gw, body)
    assert raw.status == 200, raw.data
    response = orjson.loads(raw.data)
    validate("Response", response)
    (call,) = response["output"]
    assert call["type"] == "function_call"
    assert (call["namespace"], call["name"], call["call_id"]) == ("multi_agent_v1", "spawn_agent", "call_1")
    assert raw.headers["X-Octoroute-Degraded"] == "unsupported_tool"
    sent = up.requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec_command", "multi_agent_v1__spawn_agent"]
    assert sent["messages"][0] == {"role": "system", "content": "Sys"}
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "reasoning"):
        assert key not in sent
    # the SDK parses it too
    known = {k: v for k, v in body.items() if k != "client_metadata"}
    parsed = sdk_clients.openai(gw).responses.create(**known, extra_body={"client_metadata": {"session": "s1"}})
    assert parsed.output[0].type == "function_call"


def _codex_request() -> dict[str, Any]:
    """The first request of Codex's captured tool turn: eight function tools, a namespace
    and `web_search`, `reasoning: {summary: auto}`, `store: false`, `client_metadata`."""
    first = (CODEX / "requests-tool-turn.jsonl").read_bytes().splitlines()[0]
    body: dict[str, Any] = orjson.loads(first)["body"]
    return body


def _request_events(path: Path, count: int) -> list[dict[str, Any]]:
    """The event file's `request` records once there are `count` (each is written
    just after its response has ended)."""

    def records() -> list[dict[str, Any]]:
        lines = path.read_bytes().splitlines() if path.exists() else []
        return [e for e in map(orjson.loads, lines) if e["event"] == "request"]

    eventually(lambda: len(records()) >= count, what=f"{count} request events")
    return records()


def test_dropped_tools_and_reasoning_are_named_on_a_codex_request(scripted, gateway, sdk_clients, tmp_path) -> None:  # noqa: F811
    """Codex's real request through a chat upstream: `X-Octoroute-Degraded` keeps the kind,
    `X-Octoroute-Dropped` says which tool it was (and `reasoning.effort` where the group
    cannot pass it on), whole and streamed, and the event record says the same."""
    up = scripted(lambda body: [{"content": "ok"}])
    events = tmp_path / "events.jsonl"
    gw = gateway(_config(up, groups={"fast": {"thinking_params": []}}, observability={"events_file": str(events)}))
    client = sdk_clients.openai(gw)
    body = _codex_request()
    extra = {"client_metadata": body.pop("client_metadata")}
    body |= {"model": "auto", "stream": False}
    raw = client.responses.with_raw_response.create(**body, extra_body=extra)
    assert raw.parse().output_text == "ok"
    assert raw.headers["X-Octoroute-Degraded"] == "unsupported_tool"
    assert raw.headers["X-Octoroute-Dropped"] == "tools.web_search"
    assert "web_search" not in orjson.dumps(up.requests[-1].body).decode()

    body |= {"stream": True, "reasoning": {"effort": "high", "summary": "auto"}}
    streamed = client.responses.with_raw_response.create(**body, extra_body=extra)
    assert streamed.headers["X-Octoroute-Degraded"] == "thinking,unsupported_tool"
    assert streamed.headers["X-Octoroute-Dropped"] == "reasoning.effort,tools.web_search"
    assert [event.type for event in streamed.parse()][-1] == "response.completed"

    plain = client.responses.with_raw_response.create(model="fast", input="hi", tools=[EXEC])
    assert "X-Octoroute-Degraded" not in plain.headers
    assert "X-Octoroute-Dropped" not in plain.headers
    records = _request_events(events, 3)
    assert [(e.get("degraded"), e.get("dropped")) for e in records] == [
        ("unsupported_tool", "tools.web_search"),
        ("thinking,unsupported_tool", "reasoning.effort,tools.web_search"),
        (None, None),
    ]


def test_dropped_names_are_header_safe_and_bounded(scripted, gateway) -> None:  # noqa: F811
    """A client's own tool types and field names end up in a header: one list item each,
    no separators or spaces, and at most 32 of them."""
    up = scripted(_answer_text)
    gw = gateway(_config(up))
    tools = [{"type": f"hosted tool,{i:02}"} for i in range(40)]
    raw = _post(gw, {"model": "fast", "input": "hi", "tools": tools, "text": {"verbosity": "low"}})
    assert raw.status == 200, raw.data
    names = raw.headers["X-Octoroute-Dropped"].split(",")
    assert names[0] == "text.verbosity"
    assert names[1:4] == ["tools.hosted_tool_00", "tools.hosted_tool_01", "tools.hosted_tool_02"]
    assert len(names) == 33
    assert names[-1] == "+9"
    assert raw.headers["X-Octoroute-Degraded"] == "unsupported_field,unsupported_tool"


def test_tool_call_then_output_round_trip(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    def answer(body: dict[str, Any]) -> list[dict[str, Any]]:
        if body["messages"][-1]["role"] == "tool":
            return [{"content": "Done."}]
        return [_call("exec_command", {"cmd": "echo hi > hello.txt"}, "call_9")]

    up = scripted(answer)
    gw = gateway(_config(up))
    client = sdk_clients.openai(gw)
    with client.responses.stream(model="auto", input="Create hello.txt", tools=[EXEC]) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = first.output
    assert call.type == "function_call"
    assert call.name == "exec_command"
    assert call.call_id == "call_9"
    assert orjson.loads(call.arguments) == {"cmd": "echo hi > hello.txt"}
    follow = [
        {"role": "user", "content": "Create hello.txt"},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": "call_9", "output": "exit 0"},
    ]
    second = client.responses.create(model="auto", input=follow, tools=[EXEC])
    assert second.output_text == "Done."
    sent = up.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "exec_command"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_9", "content": "exit 0"}


def test_custom_tool_call_maps_back(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(lambda body: [_call("apply_patch", {"input": "*** Begin Patch"})])
    gw = gateway(_config(up))
    client = sdk_clients.openai(gw)
    response = client.responses.create(model="auto", input="patch it", tools=[PATCH])
    (call,) = response.output
    assert call.type == "custom_tool_call"
    assert call.name == "apply_patch"
    assert call.input == "*** Begin Patch"
    with client.responses.stream(model="auto", input="patch it", tools=[PATCH]) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert "response.custom_tool_call_input.done" in kinds
    assert streamed.output[0].type == "custom_tool_call"
    assert streamed.output[0].input == "*** Begin Patch"
    assert up.requests[-1].body["tools"][0]["function"]["parameters"]["required"] == ["input"]


def test_json_schema_format_and_reasoning_effort(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(lambda body: [{"reasoning_content": "think"}, {"content": '{"a": 1}'}])
    gw = gateway(_config(up))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = {
        "model": "auto",
        "input": "json please",
        "text": {"format": {"type": "json_schema", "name": "obj", "schema": schema, "strict": True}},
        "reasoning": {"effort": "high"},
    }
    raw = _post(gw, body)
    response = orjson.loads(raw.data)
    validate("Response", response)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][0]["content"][0]["text"] == "think"
    sent = up.requests[-1].body
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "obj", "schema": schema, "strict": True},
    }
    assert sent["reasoning_effort"] == "high"
    assert "X-Octoroute-Degraded" not in raw.headers
    # a group that cannot take the effort drops it and says so
    gw2 = gateway(_config(up, groups={"fast": {"thinking_params": []}}))
    raw = _post(gw2, body)
    assert raw.headers["X-Octoroute-Degraded"] == "thinking"
    assert "reasoning_effort" not in up.requests[-1].body
    parsed = sdk_clients.openai(gw).responses.create(**body)
    assert parsed.output_text == '{"a": 1}'


def test_errors_in_openai_shape(scripted, gateway) -> None:  # noqa: F811
    up = scripted(_answer_text)
    gw = gateway(_config(up))
    bad = HTTP.request("POST", f"{gw.base_url}/responses", body=b"{nope", retries=False)
    assert bad.status == 400
    assert set(orjson.loads(bad.data)["error"]) == {"message", "type", "param", "code"}
    unknown = _post(gw, {"model": "no-such-model", "input": "hi"})
    assert unknown.status == 404
    assert orjson.loads(unknown.data)["error"]["type"] == "invalid_request_error"
    missing = _post(gw, {"model": "auto"})
    assert missing.status == 400
    assert orjson.loads(missing.data)["error"]["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0).responses.retrieve("resp_nope")


def test_failed_upstream_is_502_in_openai_shape(gateway) -> None:
    gw = gateway(fleet_config({"fast": [{"name": "m", "base_url": "http://127.0.0.1:9/v1"}]}))
    raw = _post(gw, {"model": "auto", "input": "hi"})
    assert raw.status in (502, 503)
    assert set(orjson.loads(raw.data)["error"]) == {"message", "type", "param", "code"}
    assert raw.headers["X-Octoroute-Tier"] == "fast"


def test_previous_response_id_continues_a_stored_conversation(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(lambda body: [{"content": f"answer {len(body['messages'])}"}])
    gw = gateway(_config(up))
    client = sdk_clients.openai(gw)
    first = client.responses.create(model="auto", instructions="Be brief.", input="Hi, I am Ann.")
    assert first.output_text == "answer 2"
    second = client.responses.create(model="auto", previous_response_id=first.id, input="What is my name?")
    assert second.previous_response_id == first.id
    assert up.requests[-1].body["messages"] == [  # instructions are not carried over, as in OpenAI's API
        {"role": "user", "content": "Hi, I am Ann."},
        {"role": "assistant", "content": "answer 2"},
        {"role": "user", "content": "What is my name?"},
    ]
    with client.responses.stream(model="auto", previous_response_id=second.id, input="And again?") as stream:
        third = stream.get_final_response()
    assert len(up.requests[-1].body["messages"]) == 5
    assert client.responses.retrieve(third.id).output_text == third.output_text  # a streamed one is stored too
    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as gone:
        client.responses.create(model="auto", previous_response_id=first.id, input="hello?")
    assert gone.value.status_code == 400
    assert "unknown or expired" in gone.value.message
    assert gone.value.body["param"] == "previous_response_id"
    unstored = client.responses.create(model="auto", input="private", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_store_size_is_configured(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    up = scripted(_answer_text)
    gw = gateway(_config(up, responses={"store_max_entries": 1}))
    client = sdk_clients.openai(gw)
    first = client.responses.create(model="auto", input="one")
    client.responses.create(model="auto", input="two")  # evicts the first
    raw = _post(gw, {"model": "auto", "previous_response_id": first.id, "input": "three"})
    assert raw.status == 400
    assert "store_max_entries" in orjson.loads(raw.data)["error"]["message"]


def test_client_keys_and_model_patterns_apply(upstreams, gateway) -> None:
    """[auth] on /v1/responses: no key is a 401, a key limited to `fast` gets a 403 for `deep`,
    both in OpenAI's error shape."""
    fast = upstreams("fast")
    key = "ork-" + "4c" * 32
    config = fleet_config(
        {
            "fast": [{"name": "fast-model", "base_url": fast.base_url}],
            "deep": [{"name": "d", "base_url": fast.base_url}],
        },
        auth={"enabled": True, "keys": [{"name": "bot", "key_env": "BOT_KEY", "models": ["fast"]}]},
    )
    gw = gateway(config, env={"BOT_KEY": key})
    assert _post(gw, {"model": "fast", "input": "hi"}).status == 401
    refused = _post(gw, {"model": "deep", "input": "hi"}, Authorization=f"Bearer {key}")
    assert refused.status == 403
    assert set(orjson.loads(refused.data)["error"]) == {"message", "type", "param", "code"}
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, _strict_response_validation=True) as oa:
        assert oa.responses.create(model="fast", input="hi there").output_text


TEXT_CALL = '<tool_call>\n{"name": "exec_command", "arguments": {"cmd": "ls"}}\n</tool_call>'


def test_tool_call_repair_and_output_filters_apply(scripted, gateway, sdk_clients) -> None:  # noqa: F811
    """A model that writes its call as text, after a <think> block: repair turns the text
    into a function_call item, the group's strip_think filter takes the block out."""
    up = scripted(lambda body: [{"content": "<think>plan</think>"}, {"content": TEXT_CALL}])
    gw = gateway(_config(up, groups={"fast": {"strip_think": True}}))
    client = sdk_clients.openai(gw)
    whole = client.responses.create(model="auto", input="list files", tools=[EXEC])
    with client.responses.stream(model="auto", input="list files", tools=[EXEC]) as stream:
        streamed = stream.get_final_response()
    for response in (whole, streamed):
        assert [item.type for item in response.output] == ["function_call"], response.output
        call = response.output[0]
        assert call.type == "function_call"
        assert call.name == "exec_command"
        assert orjson.loads(call.arguments) == {"cmd": "ls"}
        assert "think" not in response.output_text


def test_rate_limits_apply(scripted, gateway) -> None:  # noqa: F811
    up = scripted(_answer_text)
    gw = gateway(_config(up, rate_limit={"enabled": True, "requests_per_second": 0.001, "burst": 1}))
    assert _post(gw, {"model": "auto", "input": "one"}).status == 200
    refused = _post(gw, {"model": "auto", "input": "two"})
    assert refused.status == 429
    assert "Retry-After" in refused.headers
    assert set(orjson.loads(refused.data)["error"]) == {"message", "type", "param", "code"}


def test_a_stream_cut_after_the_commit_point_ends_with_response_failed(loop_thread, gateway) -> None:
    """The upstream sends one chunk and closes: the client has had response.created and the
    text so far, and gets one response.failed (never a response.completed, never a hang)."""
    upstream = RawUpstream([Script(head=SSE_HEAD_UNDELIMITED, parts=[sse_event(CHUNK)], close=True)])
    loop_thread.run(upstream.start())
    try:
        gw = gateway(fleet_config({"fast": [{"name": "m", "base_url": upstream.base_url}]}))
        raw = _post(gw, {"model": "fast", "input": "hi", "stream": True})
        events = parse_sse(raw.data)
    finally:
        loop_thread.run(upstream.stop())
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    failed = events[-1][1]
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    for _, data in events:
        validate("ResponseStreamEvent", data)

"""The simulated upstream and the demo fleet, driven over real loopback HTTP by
the official openai SDK, every success payload checked against the OpenAI spec."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk
from tests.spec_validation import validate

from octoroute.config import parse_config
from octoroute.demo import DemoFleet as LazyDemoFleet
from octoroute.demo.fleet import DemoFleet
from octoroute.demo.simulated import Behaviour, Mode, SimulatedUpstream

HELLO = [{"role": "user", "content": "Say hello to the whole wide world please, all of it"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def run(scenario: Callable[[SimulatedUpstream, openai.AsyncOpenAI], Awaitable[None]], **kwargs: Any) -> None:
    """Start an upstream and an SDK client aimed at it, run `scenario`, close both."""

    async def main() -> None:
        async with SimulatedUpstream(**kwargs) as upstream, sdk(upstream) as client:
            await scenario(upstream, client)

    asyncio.run(main())


def sdk(upstream: SimulatedUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.base_url, api_key="x", max_retries=0, _strict_response_validation=True)


@asynccontextmanager
async def raw_post(upstream: SimulatedUpstream, body: bytes | dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{upstream.base_url}/chat/completions", data=data) as response,
    ):
        yield response


async def drain(stream: openai.AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


def sse_payloads(text: str) -> list[str]:
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    return [e.removeprefix("data: ") for e in events]


async def stream_chunks(upstream: SimulatedUpstream, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every streamed chunk, each checked against the spec, and the [DONE] terminator."""
    async with raw_post(upstream, {**body, "stream": True}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        payloads = sse_payloads(await response.text())
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert len({c["id"] for c in chunks}) == 1
    return chunks


# -- success paths ---------------------------------------------------------


def test_non_stream_completion_is_spec_valid_and_echoes_the_prompt() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        raw = await client.chat.completions.with_raw_response.create(
            model="tiny", messages=HELLO, extra_body={"x_unknown": {"kept": True}}
        )
        validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))
        completion = raw.parse()
        assert completion.model == "tiny"
        choice = completion.choices[0]
        assert choice.message.content == "This is sim-a answering: Say hello to the whole wide world please,"
        assert choice.finish_reason == "stop"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == len(choice.message.content.split())
        assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
        recorded = up.requests[-1]
        assert recorded.path == "/v1/chat/completions"
        assert recorded.headers["authorization"] == "Bearer x"
        assert recorded.body is not None
        assert recorded.body["model"] == "tiny"
        assert recorded.body["x_unknown"] == {"kept": True}
        assert up.count == 1

    run(scenario, label="sim-a")


def test_small_max_tokens_cuts_the_text_with_finish_reason_length() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        completion = await client.chat.completions.create(model="m", messages=HELLO, max_tokens=3)
        assert completion.choices[0].message.content == "This is sim"
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 3
        chunks = await stream_chunks(up, {"model": "m", "messages": HELLO, "max_completion_tokens": 2})
        assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"

    run(scenario, label="sim")


def test_reply_text_override() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        completion = await client.chat.completions.create(model="m", messages=HELLO)
        assert completion.choices[0].message.content == "fixed answer here"

    run(scenario, behaviour=Behaviour(reply_text="fixed answer here"))


def test_stream_with_usage_matches_the_non_stream_text() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        full = await client.chat.completions.create(model="m", messages=HELLO)
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        sdk_chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in sdk_chunks if c.choices)
        assert text == full.choices[0].message.content
        assert sdk_chunks[-1].choices == []
        assert sdk_chunks[-1].usage == full.usage

        chunks = await stream_chunks(up, {"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}})
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        assert chunks[-1]["choices"] == []
        validate("CompletionUsage", chunks[-1]["usage"])
        assert all("usage" not in c for c in chunks[:-1])

    run(scenario, behaviour=Behaviour(label="streamer", token_delay=0.001))


def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        chunks = await stream_chunks(up, {"model": "m", "messages": HELLO})
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert all("usage" not in c for c in chunks)

    run(scenario)


def test_forced_tool_call_takes_the_first_value_of_an_enum() -> None:
    unit = {"type": "string", "enum": ["celsius", "kelvin"]}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": unit},
                "required": ["city", "unit"],
            },
        },
    }
    body = {"model": "m", "messages": HELLO, "tools": [tool], "tool_choice": "required"}

    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        completion = await client.chat.completions.create(**body)
        (call,) = completion.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == {"city": "example", "unit": "celsius"}

    run(scenario)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}], ids=["required", "named"]
)
def test_forced_tool_call_non_stream_and_stream(tool_choice: object) -> None:
    other_tool = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
    tools = [WEATHER_TOOL, other_tool] if tool_choice == "required" else [other_tool, WEATHER_TOOL]
    body = {"model": "m", "messages": HELLO, "tools": tools, "tool_choice": tool_choice}

    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        raw = await client.chat.completions.with_raw_response.create(**body)
        validate("CreateChatCompletionResponse", orjson.loads(raw.http_response.content))
        choice = raw.parse().choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        assert choice.message.tool_calls is not None
        (call,) = choice.message.tool_calls
        assert call.id.startswith("call_")
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "example", "days": 1}

        stream = await client.chat.completions.create(**body, stream=True)
        pieces = [c.choices[0].delta.tool_calls async for c in stream if c.choices and c.choices[0].delta.tool_calls]
        assert len(pieces) > 2, "arguments should arrive in several pieces"
        assert pieces[0][0].id is not None
        assert pieces[0][0].id.startswith("call_")
        assert pieces[0][0].function is not None
        assert pieces[0][0].function.name == "get_weather"
        arguments = "".join((p[0].function.arguments or "") for p in pieces if p[0].function)
        assert json.loads(arguments) == {"city": "example", "days": 1}

        chunks = await stream_chunks(up, {**body, "stream_options": {"include_usage": True}})
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"

    run(scenario)


def test_tools_without_a_forced_choice_answer_with_text() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        completion = await client.chat.completions.create(
            model="m", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="auto"
        )
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.tool_calls is None

    run(scenario)


def test_models_and_health() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        models = await client.models.with_raw_response.list()
        validate("ListModelsResponse", orjson.loads(models.http_response.content))
        assert [m.id async for m in models.parse()] == ["sim-models"]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{up.port}/health") as response:
                assert (response.status, await response.json()) == (200, {"status": "ok"})
            up.behaviour.mode = Mode.ERROR_500
            async with session.get(f"http://127.0.0.1:{up.port}/health") as response:
                assert response.status == 500
                validate("ErrorResponse", await response.json())
            async with session.get(f"http://127.0.0.1:{up.port}/v2/nothing") as response:
                assert response.status == 404
                validate("ErrorResponse", await response.json())
        assert up.count == 0, "only chat completions are counted"
        assert [r.path for r in up.requests] == ["/v1/models", "/health", "/health"]

    run(scenario, label="sim-models")


# -- failure modes ---------------------------------------------------------


def test_error_500() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.ERROR_500
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="m", messages=HELLO)
        validate("ErrorResponse", info.value.response.json())
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        assert up.count == 2

    run(scenario)


def test_error_429_carries_retry_after() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.ERROR_429
        up.behaviour.retry_after_seconds = 7
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=HELLO)
        assert info.value.response.headers["retry-after"] == "7"
        assert info.value.code == "rate_limit_exceeded"
        validate("ErrorResponse", info.value.response.json())

    run(scenario)


def test_error_400_is_a_context_length_error() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.ERROR_400
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        assert info.value.code == "context_length_exceeded"
        assert info.value.param == "messages"
        validate("ErrorResponse", info.value.response.json())

    run(scenario)


def test_garbage_body_cannot_be_parsed() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.GARBAGE
        with pytest.raises(ValueError, match="Expecting value"):
            await client.chat.completions.create(model="m", messages=HELLO)
        with pytest.raises(ValueError, match="Expecting value"):
            await drain(await client.chat.completions.create(model="m", messages=HELLO, stream=True), [])

    run(scenario)


def test_drop_mid_stream_cuts_the_connection() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.DROP_MID_STREAM
        up.behaviour.drop_after_chunks = 3
        received: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIConnectionError):
            await drain(await client.chat.completions.create(model="m", messages=HELLO, stream=True), received)
        assert len(received) == 3
        assert all(c.choices[0].finish_reason is None for c in received)
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=HELLO)

    run(scenario)


def test_fail_next_fails_that_many_requests_then_recovers() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.fail_next = 2
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=HELLO)
        completion = await client.chat.completions.create(model="m", messages=HELLO)
        assert completion.choices[0].message.content
        assert up.count == 3
        assert up.behaviour.fail_next == 0

    run(scenario)


def test_flaky_failures_follow_the_seeded_random_source() -> None:
    outcomes: list[bool] = []

    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        for _ in range(20):
            try:
                await client.chat.completions.create(model="m", messages=HELLO)
                outcomes.append(False)
            except openai.InternalServerError:
                outcomes.append(True)

    run(scenario, behaviour=Behaviour(mode=Mode.FLAKY, failure_rate=0.5, rng=random.Random(42)))
    twin = random.Random(42)
    assert outcomes == [twin.random() < 0.5 for _ in range(20)]
    assert True in outcomes
    assert False in outcomes


def test_slow_sends_no_headers_and_hang_sends_headers_only() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.mode = Mode.SLOW
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), raw_post(up, {"model": "m", "messages": HELLO}):
                pass
        up.behaviour.mode = Mode.HANG_BODY
        for stream in (False, True):
            async with raw_post(up, {"model": "m", "messages": HELLO, "stream": stream}) as response:
                assert response.status == 200
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await response.read()
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=HELLO, timeout=0.2)
        # stop() (on leaving `run`) must not wait for the hanging handlers.

    run(scenario)


def test_stop_cancels_hanging_requests() -> None:
    async def main() -> None:
        upstream = SimulatedUpstream(Behaviour(mode=Mode.HANG_BODY))
        await upstream.start()
        async with raw_post(upstream, {"model": "m", "messages": HELLO, "stream": True}) as response:
            assert response.status == 200
            await upstream.stop()
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "m", "messages": [', None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
    ],
    ids=["malformed", "not-an-object", "no-model", "no-messages", "empty-messages", "bad-role", "bad-stream"],
)
def test_invalid_requests_get_openai_400s(body: bytes, param: str | None) -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        up.behaviour.fail_next = 1  # a 400 must not use up a planned failure
        async with raw_post(up, body) as response:
            assert response.status == 400
            error = await response.json()
        validate("ErrorResponse", error)
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == param
        assert up.behaviour.fail_next == 1
        assert up.requests[-1].raw == body

    run(scenario)


def test_recording_can_be_switched_off() -> None:
    async def scenario(up: SimulatedUpstream, client: openai.AsyncOpenAI) -> None:
        await client.chat.completions.create(model="m", messages=HELLO)
        await client.chat.completions.create(model="m", messages=HELLO)
        assert (up.count, up.requests) == (2, [])

    run(scenario, record=False)


def test_base_url_survives_stop_so_tests_can_aim_at_a_dead_port() -> None:
    async def main() -> None:
        upstream = SimulatedUpstream()
        with pytest.raises(RuntimeError):
            _ = upstream.base_url
        await upstream.start()
        url = upstream.base_url
        assert url.endswith("/v1")
        await upstream.stop()
        assert upstream.base_url == url
        async with sdk(upstream) as client:
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(model="m", messages=HELLO)

    asyncio.run(main())


# -- the CLI -----------------------------------------------------------------


def test_cli_serves_until_terminated() -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "octoroute.demo.simulated", "--port", "0", "--label", "cli-sim",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            base_url = line.split()[-1]
            assert base_url.startswith("http://127.0.0.1:")
            async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
                completion = await client.chat.completions.create(model="m", messages=HELLO)
            assert completion.choices[0].message.content.startswith("This is cli-sim answering")
        finally:
            proc.terminate()
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        assert stderr == b"", stderr.decode()

    asyncio.run(main())


# -- the demo fleet ------------------------------------------------------------


def test_demo_fleet_config_parses_and_points_at_live_servers() -> None:
    async def main() -> None:
        async with DemoFleet() as fleet:
            config = parse_config(fleet.config_dict(server_port=0), env={})
            assert set(config.models) == {"fast", "balanced", "deep"}
            fast = {ep.id: ep for ep in config.models["fast"]}
            assert (fast["sim-flaky"].priority, fast["sim-fast"].priority) == (2, 1)
            assert config.health.failure_threshold >= 3
            assert config.routing.strategy == "learned"  # the demo shows the default routing
            assert fleet.upstreams["sim-flaky"].behaviour.mode is Mode.FLAKY
            async with aiohttp.ClientSession() as session:
                for group, endpoints in config.models.items():
                    for ep in endpoints:
                        async with session.get(f"{ep.base_url}/models") as response:
                            assert response.status == 200, (group, ep.id)
                            listed = await response.json()
                        validate("ListModelsResponse", listed)
                        assert listed["data"][0]["id"] == ep.name
        for upstream in fleet.upstreams.values():
            async with sdk(upstream) as client:
                with pytest.raises(openai.APIConnectionError):
                    await client.models.list()

    asyncio.run(main())
    assert LazyDemoFleet is DemoFleet


def test_demo_fleet_config_needs_a_started_fleet() -> None:
    with pytest.raises(RuntimeError, match="start"):
        DemoFleet().config_dict()

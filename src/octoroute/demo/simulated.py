"""A real HTTP server that behaves like an OpenAI-compatible LLM server.

Used as the upstream fleet of `octoroute serve --demo` and as fixture upstreams
in tests (real HTTP on loopback, not mocks). Its behaviour is a mutable
`Behaviour` that tests switch between requests::

    async with SimulatedUpstream(label="sim-a") as up:
        up.behaviour.fail_next = 2          # the next two chat requests get a 500
        ...                                 # point a client (or the gateway) at up.base_url
        assert up.requests[-1].body["model"] == "the-name-the-gateway-sent"

Framing follows llama.cpp's llama-server (see shared/llm/transcripts); bodies
follow the OpenAI spec (`CreateChatCompletionResponse`, `...StreamResponse`).

Benchmarks run it as a process: `python -m octoroute.demo.simulated --port 8081`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from octoroute.demo import text_replies
from octoroute.demo.replies import (
    CONTEXT_WINDOW,
    DONE_EVENT,
    GARBAGE_BODY,
    JSON_CONTENT_TYPE,
    MAX_BODY_BYTES,
    SSE_HEADERS,
    BadRequest,
    Behaviour,
    Mode,
    RecordedRequest,
    check_request,
    completion_body,
    error_body,
    plan_reply,
    stream_events,
    text_of,
)
from octoroute.protocols import anthropic
from octoroute.protocols.translate_request import anthropic_to_openai_request
from octoroute.protocols.translate_response import openai_to_anthropic_response
from octoroute.protocols.translate_stream import OpenAIToAnthropicStream

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["Behaviour", "Mode", "RecordedRequest", "SimulatedUpstream", "main"]


def _json_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON_CONTENT_TYPE, headers=headers)


def _abort(request: web.BaseRequest) -> None:
    """Drop the TCP connection without finishing the response, as a crashed server would."""
    transport = request.transport
    if transport is not None:
        transport.abort()


class SimulatedUpstream:
    """An OpenAI-compatible server on loopback; `start()` then point a client at `base_url`.

    `requests` records every request (when `record=True`); `count` counts chat
    completion requests, recorded or not.
    """

    def __init__(self, behaviour: Behaviour | None = None, *, label: str | None = None, record: bool = True) -> None:
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        if label is not None:
            self.behaviour.label = label
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.count = 0
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self.cancelled = 0  # chat requests whose client went away before the answer was done
        self._started_events: list[asyncio.Event] = []
        self._cancelled_events: list[asyncio.Event] = []
        self._path_waiters: list[tuple[str, int, asyncio.Event]] = []
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    @property
    def port(self) -> int:
        """The bound port; still answers after `stop()`, so tests can aim at a dead endpoint."""
        if self._port is None:
            raise RuntimeError("SimulatedUpstream has never been started")
        return self._port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/v1`, the form octoroute's config and the openai SDK expect."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def reset(self) -> None:
        """Forget recorded requests and the count; the behaviour stays."""
        self.requests.clear()
        self.count = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("SimulatedUpstream is already started")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/messages", self._messages)
        # The other APIs local servers speak (demo/text_replies.py): embeddings and completions as
        # vLLM / llama.cpp / Ollama's OpenAI layer, Ollama's native embed, llama.cpp's /infill.
        app.router.add_post("/v1/embeddings", self._text_api(text_replies.openai_embeddings))
        app.router.add_post("/api/embed", self._text_api(text_replies.ollama_embed))
        app.router.add_post("/v1/completions", self._text_api(self._completions))
        app.router.add_post("/infill", self._text_api(text_replies.infill))
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # No access log: the bench drives this hard. handler_cancellation: a client
        # that hangs up stops the "generation", as a real server would.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving; requests still sleeping or hanging are cancelled, not waited for."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._inflight):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> SimulatedUpstream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _next_ids(self) -> tuple[str, str]:
        n = next(self._ids)
        return f"chatcmpl-{self._id_prefix}{n:010d}", f"call_{self._id_prefix}{n:010d}"

    def _record(self, request: web.Request, raw: bytes, body: object) -> None:
        parsed = body if isinstance(body, dict) else None
        self.requests.append(RecordedRequest(request.method, request.path, request.headers, parsed, raw))
        for path, count, event in self._path_waiters:
            if path == request.path and sum(r.path == path for r in self.requests) >= count:
                event.set()

    async def wait_requests(self, path: str, count: int) -> None:
        """Return once `count` recorded requests have hit `path` (needs `record=True`)."""
        if sum(r.path == path for r in self.requests) >= count:
            return
        event = asyncio.Event()
        self._path_waiters.append((path, count, event))
        await event.wait()

    async def wait_started(self) -> None:
        """Return once a chat request has arrived (now or already)."""
        if self.count == 0:
            event = asyncio.Event()
            self._started_events.append(event)
            await event.wait()

    async def wait_cancelled(self) -> None:
        """Return once a chat request has been cancelled by its client going away."""
        if self.cancelled == 0:
            event = asyncio.Event()
            self._cancelled_events.append(event)
            await event.wait()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.count += 1
        for event in self._started_events:
            event.set()
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await self._answer_chat(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            for event in self._cancelled_events:
                event.set()
            raise
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """An Anthropic-native server (as llama.cpp and vLLM also are): the same
        behaviours and replies, in the Messages API's shapes."""
        self.count += 1
        raw = await request.read()
        try:
            parsed: object = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if self.record:
            self._record(request, raw, parsed)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("model"), str):
            return _json_response(400, anthropic.error_body("send a JSON object with 'model'", 400))
        try:
            chat, _ = anthropic_to_openai_request(parsed)
            body, messages = check_request(chat)
        except (BadRequest, ValueError) as exc:
            return _json_response(400, anthropic.error_body(str(exc), 400))
        b = self.behaviour
        failure = self._failure(b, body, messages, failing=b.mode is Mode.ERROR_500)
        if failure is not None:  # the same failure, in the Messages API's error shape
            error = anthropic.error_body(f"simulated failure ({b.mode.value})", failure.status)
            return _json_response(
                failure.status, error, {k: v for k, v in failure.headers.items() if k == "Retry-After"}
            )
        reply = plan_reply(body, messages, b)
        completion_id, call_id = self._next_ids()
        if parsed.get("stream") is True:
            translator = OpenAIToAnthropicStream(parsed["model"], "msg_" + completion_id)
            events: list[bytes] = []
            for event in stream_events(reply, completion_id, int(time.time()), call_id, include_usage=True):
                data = event[6:].strip()
                if data != b"[DONE]":
                    events += translator.feed(orjson.loads(data))
            events += translator.finish()
            return await self._send_stream(request, events, b, timed_events=len(events) - 1)
        completion = orjson.loads(completion_body(reply, completion_id, int(time.time()), call_id))
        message, _ = openai_to_anthropic_response(completion, model=parsed["model"])
        return _json_response(200, orjson.dumps(message))

    def _completions(self, body: Mapping[str, Any], label: str) -> list[bytes] | None:
        completion_id, _ = self._next_ids()
        return text_replies.completions(body, label, completion_id.replace("chatcmpl", "cmpl"), int(time.time()))

    def _text_api(self, answer: Callable[[Mapping[str, Any], str], bytes | list[bytes] | None]) -> Handler:
        """A handler for one of the non-chat APIs: the same failure modes as chat (but for
        hangs mid-body), then `answer(body, label)`: one JSON body, a list of SSE events
        when the request streams, or None for a 400."""

        async def handler(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                parsed: object = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if self.record:
                self._record(request, raw, parsed)
            b = self.behaviour
            if b.gate is not None:
                await b.gate.wait()
            failing = b.fail_next > 0
            if failing:
                b.fail_next -= 1
            elif b.mode is Mode.FLAKY:
                failing = b.rng.random() < b.failure_rate
            if b.first_byte_delay > 0:
                await asyncio.sleep(b.first_byte_delay)
            if b.mode is Mode.SLOW:
                await asyncio.sleep(b.slow_seconds)
            body = parsed if isinstance(parsed, dict) else {}
            failure = self._failure(b, body, [], failing=failing)
            if failure is not None:
                return failure
            out = answer(body, b.label) if isinstance(parsed, dict) else None
            if out is None:
                msg = f"{request.path} cannot read this request (simulated 400)"
                return _json_response(400, error_body(msg, "invalid_request_error"))
            if isinstance(out, bytes):
                return _json_response(200, out)
            if body.get("stream") is True:
                return await self._send_stream(request, out, b, timed_events=len(out))
            return _json_response(200, out[0])

        return handler

    async def _answer_chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed: object = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
            msg = "We could not parse the JSON body of your request. Send a JSON object as the body."
            return _json_response(400, error_body(msg, "invalid_request_error"))
        finally:
            if self.record:
                self._record(request, raw, parsed)
        try:
            body, messages = check_request(parsed)
        except BadRequest as exc:
            return _json_response(400, error_body(exc.message, "invalid_request_error", param=exc.param))
        b = self.behaviour
        if b.gate is not None:  # held until the test releases it
            await b.gate.wait()
        failing = b.fail_next > 0
        if failing:
            b.fail_next -= 1
        elif b.mode is Mode.FLAKY:
            failing = b.rng.random() < b.failure_rate
        if b.first_byte_delay > 0:
            await asyncio.sleep(b.first_byte_delay)
        if b.mode is Mode.SLOW:
            await asyncio.sleep(b.slow_seconds)
        failure = self._failure(b, body, messages, failing=failing)
        if failure is not None:
            return failure
        return await self._answer(request, b, body, messages)

    def _failure(
        self, b: Behaviour, body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], *, failing: bool
    ) -> web.Response | None:
        """The error (or garbage) this request gets instead of an answer, if any."""
        if failing or b.mode is Mode.ERROR_500:
            return self._server_error()
        if b.mode is Mode.ERROR_429:
            msg = f"Rate limit reached for {body['model']} on {b.label}. Please try again in {b.retry_after_seconds}s."
            headers = {"Retry-After": str(b.retry_after_seconds)}
            return _json_response(429, error_body(msg, "requests", code="rate_limit_exceeded"), headers)
        if b.mode is Mode.ERROR_400:
            return self._context_length_error(messages)
        if b.mode is Mode.REJECT_400:
            msg = f"{b.label} does not accept one of the request's parameters (simulated 400)."
            return _json_response(400, error_body(msg, "invalid_request_error", param="temperature"))
        if b.mode is Mode.GARBAGE:
            if body.get("stream") is True:
                return web.Response(body=b"data: " + GARBAGE_BODY + b"\n\n" + DONE_EVENT, headers=SSE_HEADERS)
            return _json_response(200, GARBAGE_BODY)
        return None

    async def _answer(
        self, request: web.Request, b: Behaviour, body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]
    ) -> web.StreamResponse:
        reply = plan_reply(body, messages, b)
        completion_id, call_id = self._next_ids()
        created = int(time.time())
        if body.get("stream") is True and not b.ignore_stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = stream_events(reply, completion_id, created, call_id, include_usage=include_usage)
            return await self._send_stream(request, events, b, timed_events=len(events) - 1 - include_usage)
        payload = completion_body(reply, completion_id, created, call_id)
        if b.token_delay > 0:
            await asyncio.sleep(b.token_delay * reply.completion_tokens)
        if b.mode is Mode.HANG_BODY or b.mode is Mode.DROP_MID_STREAM:
            return await self._send_broken_body(request, payload, b.mode)
        return _json_response(200, payload)

    def _server_error(self) -> web.Response:
        msg = f"The simulated upstream {self.behaviour.label} failed (simulated 500)."
        return _json_response(500, error_body(msg, "server_error"))

    @staticmethod
    def _context_length_error(messages: Sequence[Mapping[str, Any]]) -> web.Response:
        asked = max(CONTEXT_WINDOW + 1, sum(len(text_of(m.get("content"))) for m in messages) // 4)
        msg = (
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages "
            f"resulted in {asked} tokens. Please reduce the length of the messages."
        )
        body = error_body(msg, "invalid_request_error", param="messages", code="context_length_exceeded")
        return _json_response(400, body)

    async def _send_stream(
        self, request: web.Request, events: list[bytes], b: Behaviour, *, timed_events: int
    ) -> web.StreamResponse:
        """`token_delay` passes before each of events[1:timed_events] (content deltas and the finish chunk)."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        if b.mode is Mode.HANG_BODY:
            await asyncio.Event().wait()  # until the client hangs up or stop() cancels us
        drop = b.mode is Mode.DROP_MID_STREAM
        if drop:
            events = events[: max(0, b.drop_after_chunks)]
        if b.token_delay <= 0:
            await response.write(b"".join(events))
        else:
            for i, event in enumerate(events):
                if 0 < i < timed_events:
                    await asyncio.sleep(b.token_delay)
                await response.write(event)
        if drop:
            _abort(request)
            return response
        await response.write_eof()
        return response

    @staticmethod
    async def _send_broken_body(request: web.Request, payload: bytes, mode: Mode) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": JSON_CONTENT_TYPE})
        response.content_length = len(payload)
        await response.prepare(request)
        if mode is Mode.HANG_BODY:
            await asyncio.Event().wait()
        await response.write(payload[: len(payload) // 2])
        _abort(request)
        return response

    async def _models(self, request: web.Request) -> web.Response:
        if self.record:
            self._record(request, b"", None)
        if self.behaviour.mode is Mode.ERROR_500:
            return self._server_error()
        model = {"id": self.behaviour.label, "object": "model", "created": 1700000000, "owned_by": "octoroute-demo"}
        return _json_response(200, orjson.dumps({"object": "list", "data": [model]}))

    async def _health(self, request: web.Request) -> web.Response:
        if self.record:
            self._record(request, b"", None)
        if self.behaviour.mode is Mode.ERROR_500:
            return self._server_error()
        return _json_response(200, b'{"status":"ok"}')

    async def _not_found(self, request: web.Request) -> web.Response:
        msg = f"Unknown request URL: {request.method} {request.path}."
        return _json_response(404, error_body(msg, "invalid_request_error", code="unknown_url"))


async def _serve(host: str, port: int, behaviour: Behaviour) -> None:
    upstream = SimulatedUpstream(behaviour, record=False)
    await upstream.start(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    print(f"simulated upstream {behaviour.label} listening on {upstream.base_url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await upstream.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m octoroute.demo.simulated", description="Serve a simulated OpenAI-compatible LLM server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--label", default="simulated")
    parser.add_argument("--first-byte-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--mode", type=Mode, choices=list(Mode), default=Mode.NORMAL)
    parser.add_argument("--failure-rate", type=float, default=0.5, help="for --mode flaky")
    parser.add_argument("--seed", type=int, default=0, help="for --mode flaky")
    args = parser.parse_args(argv)
    behaviour = Behaviour(
        mode=args.mode,
        label=args.label,
        first_byte_delay=args.first_byte_delay,
        token_delay=args.token_delay,
        failure_rate=args.failure_rate,
        rng=random.Random(args.seed),
    )
    asyncio.run(_serve(args.host, args.port, behaviour))


if __name__ == "__main__":
    main()

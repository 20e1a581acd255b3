"""A scripted OpenAI-compatible upstream: a real aiohttp server on loopback whose
answers a test writes as a list of deltas, for answers SimulatedUpstream cannot
give (reasoning fields, tool calls, an answer that depends on the request).

    upstream = ScriptedUpstream(lambda body: [{"reasoning_content": "hmm"}, {"content": "4"}])
    await upstream.start()   # upstream.base_url, upstream.requests (headers and bodies)

A streamed request gets llama.cpp's framing (a role chunk with `content: null`,
one chunk per delta, a finish chunk, the usage chunk when asked, `[DONE]`); a
non-streamed one gets the deltas merged into one `chat.completion`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from tests.conftest import LoopThread
from tests.support import LoopbackApp

Delta = dict[str, Any]
STALL: Delta = {"stall": True}  # in a streamed answer: send nothing more until the upstream stops
PAUSE: Delta = {"pause": True}  # in a streamed answer: set `paused`, wait for `resume`, then go on
Answer = Callable[[dict[str, Any]], list[Delta]]
USAGE = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}


@dataclass(frozen=True)
class Seen:
    headers: Mapping[str, str]
    body: dict[str, Any]


def _merge(deltas: list[Delta]) -> dict[str, Any]:
    """The message a client assembles from the deltas (strings joined, tool calls by index)."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        for key, value in delta.items():
            if key == "tool_calls":
                for call in value:
                    slot = calls.setdefault(call["index"], {"id": "", "type": "function", "function": {}})
                    slot["id"] = call.get("id") or slot["id"]
                    for name, part in call.get("function", {}).items():
                        slot["function"][name] = slot["function"].get(name, "") + part
            elif isinstance(value, str):
                message[key] = (message.get(key) or "") + value
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def _exceed_context_size(prompt: int, n_ctx: int) -> dict[str, Any]:
    """llama-server's answer to a prompt its context cannot hold (../shared/llm/transcripts)."""
    return {
        "error": {
            "code": 400,
            "message": f"request ({prompt} tokens) exceeds the available context size ({n_ctx} tokens), "
            "try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": prompt,
            "n_ctx": n_ctx,
        }
    }


class ScriptedUpstream(LoopbackApp):
    def __init__(
        self, answer: Answer, *, model: str = "scripted", n_ctx: int | None = None, usage: dict[str, int] | None = USAGE
    ) -> None:
        self.answer = answer
        self.usage = usage  # None: no usage in any answer, and no usage chunk even when asked
        self.model = model
        self.n_ctx = n_ctx  # a context window: a longer prompt gets llama.cpp's exceed_context_size_error
        self.requests: list[Seen] = []
        self._release = asyncio.Event()
        self.paused = asyncio.Event()  # a stream reached a PAUSE (everything before it is sent)
        self.resume = asyncio.Event()  # lets paused streams go on

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def stop(self) -> None:
        self._release.set()
        await super().stop()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    def _chunk(self, delta: Delta, finish: str | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.requests.append(Seen(dict(request.headers), body))
        prompt = len(raw) // 4  # about what a tokenizer makes of a JSON-heavy agent prompt
        if self.n_ctx is not None and prompt > self.n_ctx:
            return web.json_response(_exceed_context_size(prompt, self.n_ctx), status=400)
        deltas = self.answer(body)
        finish = "tool_calls" if any("tool_calls" in d for d in deltas) else "stop"
        usage = self.usage
        if not body.get("stream"):
            completion = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 1700000000,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": _merge([d for d in deltas if d is not STALL and d is not PAUSE]),
                        "finish_reason": finish,
                    }
                ],
            }
            if usage is not None:
                completion["usage"] = usage
            return web.json_response(completion)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self._chunk({"role": "assistant", "content": None}))
        for delta in deltas:
            if delta is STALL:
                await self._release.wait()
                return response
            if delta is PAUSE:
                self.paused.set()
                await self.resume.wait()
                continue
            await response.write(self._chunk(delta))
        await response.write(self._chunk({}, finish))
        if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
            tail = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1700000000}
            tail |= {"model": self.model, "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(tail) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[Callable[..., ScriptedUpstream]]:
    """Factory: `scripted(answer)` starts a ScriptedUpstream; all stop after the test."""
    yield from loop_thread.serving(ScriptedUpstream)

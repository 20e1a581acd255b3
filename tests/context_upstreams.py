"""Fixture upstreams that answer like llama.cpp, vLLM, Ollama and OpenAI about
context windows: the discovery endpoints each server has (`/props`,
`/api/show`, `/v1/models` with `max_model_len`) and each one's own
context-overflow error body when a request does not fit.

The server counts a prompt as characters / `chars_per_token` (2 by default:
denser than the gateway's /4 estimate, the way code is), so a request the
gateway thinks fits can still overflow and must be escalated.

    up = ContextUpstream(Flavour.LLAMA, window=2048, slots=4, label="small")
    await up.start()            # up.base_url == "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import LoopThread
from tests.support import LoopbackApp


class Flavour(enum.StrEnum):
    LLAMA = "llama"
    VLLM = "vllm"
    OLLAMA = "ollama"
    OPENAI = "openai"


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def overflow_body(flavour: Flavour, prompt: int, window: int, completion: int) -> dict[str, Any]:
    """The error each server sends for a request its window cannot hold (wordings from
    ../shared/llm/transcripts for llama.cpp and vLLM; OpenAI's documented code)."""
    if flavour is Flavour.LLAMA:
        return {
            "error": {
                "code": 400,
                "message": f"request ({prompt} tokens) exceeds the available context size ({window} tokens), "
                "try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": prompt,
                "n_ctx": window,
            }
        }
    if flavour is Flavour.VLLM:
        message = (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
        return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    if flavour is Flavour.OLLAMA:
        message = "the input length exceeds the context length"
        return {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages resulted in "
        f"{prompt} tokens. Please reduce the length of the messages."
    )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


@dataclass
class ContextUpstream(LoopbackApp):
    flavour: Flavour
    window: int
    label: str
    slots: int = 1
    chars_per_token: int = 2
    num_ctx: int | None = None  # Ollama: `num_ctx` in the model's parameters
    trained: int = 131072  # Ollama: model_info context_length
    paths: list[str] = field(default_factory=list)  # every request's "METHOD path", in order
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0  # 0 the first time: any free port; a restart comes back on the same one

    @property
    def chats(self) -> int:
        return len(self.chat_bodies)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/props", self._props)
        app.router.add_post("/api/show", self._show)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        chars = sum(len(m["content"]) for m in body["messages"] if isinstance(m.get("content"), str))
        return math.ceil(chars / self.chars_per_token)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(f"POST {request.path}")
        body = await request.json()
        self.chat_bodies.append(body)
        prompt = self._prompt_tokens(body)
        completion = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        # llama.cpp checks the prompt alone; vLLM and OpenAI prompt + completion.
        needed = prompt if self.flavour in (Flavour.LLAMA, Flavour.OLLAMA) else prompt + completion
        if needed > self.window:
            return _json(400, overflow_body(self.flavour, prompt, self.window, completion))
        text = f"served by {self.label}"
        usage = {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            return _json(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": body["model"],
                    "choices": [choice],
                    "usage": usage,
                },
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": body["model"]}
        for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": text}, None), ({}, "stop")):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        self.paths.append(f"GET {request.path}")
        entry: dict[str, Any] = {"id": self.label, "object": "model", "created": 1700000000, "owned_by": "fixture"}
        if self.flavour is Flavour.VLLM:
            entry["max_model_len"] = self.window
        return _json(200, {"object": "list", "data": [entry]})

    async def _props(self, request: web.Request) -> web.Response:
        self.paths.append(f"GET {request.path}")
        if self.flavour is not Flavour.LLAMA:
            return await self._not_found(request, record=False)
        settings = {"n_ctx": self.window, "params": {"temperature": 0.8, "n_predict": -1}}
        return _json(
            200, {"default_generation_settings": settings, "total_slots": self.slots, "model_alias": self.label}
        )

    async def _show(self, request: web.Request) -> web.Response:
        self.paths.append(f"POST {request.path}")
        if self.flavour is not Flavour.OLLAMA:
            return await self._not_found(request, record=False)
        parameters = f"num_ctx                        {self.num_ctx}" if self.num_ctx else 'stop "<|im_end|>"'
        return _json(
            200,
            {
                "parameters": parameters,
                "details": {"format": "gguf", "family": "qwen2"},
                "model_info": {"general.architecture": "qwen2", "qwen2.context_length": self.trained},
            },
        )

    async def _not_found(self, request: web.Request, record: bool = True) -> web.Response:
        if record:
            self.paths.append(f"{request.method} {request.path}")
        if self.flavour is Flavour.OLLAMA:
            return web.Response(status=404, text="404 page not found", content_type="text/plain")
        return _json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})


@pytest.fixture
def servers(loop_thread: LoopThread) -> Iterator[Callable[..., ContextUpstream]]:
    """Factory: `servers(label, ...)` starts a ContextUpstream; all stop after the test."""
    yield from loop_thread.serving(ContextUpstream)

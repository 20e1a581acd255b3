"""Fixture servers that answer like the LLM servers people run at home: Ollama,
llama.cpp's llama-server, vLLM and LM Studio, each on an ephemeral loopback
port, with the listing, discovery, chat and embeddings endpoints `octoroute
doctor` and `octoroute init` ask, in each server's own shapes (from
../shared/llm/transcripts for llama.cpp and vLLM, Ollama's and LM Studio's API
documentation for those).

An embedding model (`Model(..., embedding=True)`) answers `/v1/embeddings` and
refuses chat; each kind says so its own way: Ollama's `/api/show`
capabilities `["embedding"]` and a BERT family, LM Studio's `/api/v0/models`
type `embeddings`, llama.cpp and vLLM nothing but the name.

    server = LocalServer(Kind.OLLAMA, [Model("qwen2.5:3b", 3.1e9, 1_929_912_432)])
    await server.start()     # server.base_url == "http://127.0.0.1:PORT/v1"

Knobs for what goes wrong on real machines: `tools=False` (Ollama: 400 "does not
support tools"; llama.cpp without --jinja: an answer without a tool call; vLLM:
400 without --enable-auto-tool-choice), `api_key` (401 without it), `streams=False`
(a stream request answered with one JSON body), `hold_listing` (GET /v1/models
waits for the event: a probe round that has not finished), `capabilities=False`
(an Ollama older than `/api/show` capabilities).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tests.support import LoopbackApp


class Kind(enum.StrEnum):
    OLLAMA = "ollama"
    LLAMA = "llama.cpp"
    VLLM = "vllm"
    LMSTUDIO = "lmstudio"


@dataclass(frozen=True)
class Model:
    name: str
    parameters: float | None = None
    size_bytes: int | None = None
    embedding: bool = False
    family: str | None = None  # Ollama's details.family, LM Studio's arch; by default "nomic-bert" or "qwen2"

    @property
    def architecture(self) -> str:
        return self.family or ("nomic-bert" if self.embedding else "qwen2")


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _parameter_size(count: float | None) -> str:
    if count is None:
        return ""
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


@dataclass
class LocalServer(LoopbackApp):
    kind: Kind
    models: list[Model]
    tools: bool = True
    api_key: str | None = None
    streams: bool = True
    context: int = 4096
    slots: int = 2
    hold_listing: asyncio.Event | None = None
    capabilities: bool = True
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request
    port: int = 0

    def release_listing(self) -> None:
        """Let a held GET /v1/models answer (on the server's loop)."""
        if self.hold_listing is not None:
            self.hold_listing.set()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/models", self._listing)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        if self.kind is Kind.LLAMA:  # llama-server answers these without /v1 too
            app.router.add_get("/models", self._listing)
            app.router.add_post("/chat/completions", self._chat)
            app.router.add_post("/embeddings", self._embeddings)
            app.router.add_get("/props", self._props)
        if self.kind is Kind.OLLAMA:
            app.router.add_get("/api/tags", self._tags)
            app.router.add_post("/api/show", self._show)
        if self.kind is Kind.LMSTUDIO:
            app.router.add_get("/api/v0/models", self._lmstudio_models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json(401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}})
        response: web.StreamResponse = await handler(request)
        return response

    # -- listings and discovery ---------------------------------------------------------

    async def _listing(self, request: web.Request) -> web.Response:
        if self.hold_listing is not None:
            await self.hold_listing.wait()
        data = []
        for m in self.models:
            entry: dict[str, Any] = {"id": m.name, "object": "model", "created": 1700000000}
            if self.kind is Kind.LLAMA:
                entry["owned_by"] = "llamacpp"
                entry["meta"] = {"n_ctx": self.context, "n_ctx_train": self.context, "n_vocab": 32000}
                if m.parameters is not None:
                    entry["meta"]["n_params"] = int(m.parameters)
                if m.size_bytes is not None:
                    entry["meta"]["size"] = m.size_bytes
            elif self.kind is Kind.VLLM:
                entry.update(owned_by="vllm", root=m.name, parent=None, max_model_len=self.context)
            elif self.kind is Kind.LMSTUDIO:
                entry["owned_by"] = "organization_owner"
            else:
                entry["owned_by"] = "library"
            data.append(entry)
        body: dict[str, Any] = {"object": "list", "data": data}
        if self.kind is Kind.LLAMA:  # llama-server's Ollama-like array beside "data"
            body["models"] = [{"name": m.name, "model": m.name, "size": "", "details": {}} for m in self.models]
        return _json(200, body)

    async def _tags(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": "2026-11-02T10:00:00Z",
                "size": m.size_bytes or 0,
                "digest": "0" * 64,
                "details": {
                    "format": "gguf",
                    "family": m.architecture,
                    "parameter_size": _parameter_size(m.parameters),
                    "quantization_level": "Q4_K_M",
                },
            }
            for m in self.models
        ]
        return _json(200, {"models": models})

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = self._model(body.get("model"))
        if model is None:
            return _json(404, {"error": f"model '{body.get('model')}' not found"})
        arch = model.architecture
        shown: dict[str, Any] = {
            "parameters": f"num_ctx                        {self.context}",
            "details": {"format": "gguf", "family": arch},
            "model_info": {"general.architecture": arch, f"{arch}.context_length": 32768},
        }
        if self.capabilities:
            shown["capabilities"] = ["embedding"] if model.embedding else ["completion", "tools"]
        return _json(200, shown)

    async def _lmstudio_models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": m.name,
                "object": "model",
                "type": "embeddings" if m.embedding else "llm",
                "publisher": "lmstudio-community",
                "arch": m.architecture,
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded",
                "max_context_length": self.context,
            }
            for m in self.models
        ]
        return _json(200, {"object": "list", "data": data})

    def _model(self, name: object) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    async def _props(self, request: web.Request) -> web.Response:
        settings = {"n_ctx": self.context, "params": {"temperature": 0.8}}
        alias = self.models[0].name if self.models else ""
        return _json(200, {"default_generation_settings": settings, "total_slots": self.slots, "model_alias": alias})

    async def _not_found(self, request: web.Request) -> web.Response:
        if self.kind is Kind.OLLAMA:
            return web.Response(status=404, text="404 page not found", content_type="text/plain")
        if self.kind is Kind.VLLM:
            return _json(404, {"detail": "Not Found"})
        if self.kind is Kind.LMSTUDIO:
            return _json(404, {"error": f"Unexpected endpoint or method. ({request.method} {request.path})"})
        return _json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    # -- chat ------------------------------------------------------------------------------

    def _unknown_model(self, name: str) -> web.Response | None:
        if self.kind is Kind.LLAMA or name in {m.name for m in self.models}:
            return None  # llama-server answers any name with its loaded model
        if self.kind is Kind.OLLAMA:
            message = f'model "{name}" not found, try pulling it first'
            return _json(404, {"error": {"message": message, "type": "api_error", "param": None, "code": None}})
        message = f"The model `{name}` does not exist."
        return _json(404, {"object": "error", "message": message, "type": "NotFoundError", "param": None, "code": 404})

    def _no_tools(self, name: str) -> web.Response | None:
        if self.kind is Kind.OLLAMA:
            message = f"registry.ollama.ai/library/{name} does not support tools"
            return _json(400, {"error": {"message": message, "type": "api_error", "param": None, "code": None}})
        if self.kind is Kind.VLLM:
            message = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
            return _json(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
        return None  # llama-server without --jinja: answers as if there were no tools

    def _cannot_chat(self, name: str) -> web.Response | None:
        """An embedding model's answer to a chat request, as each server words it."""
        model = self.models[0] if self.kind is Kind.LLAMA and self.models else self._model(name)
        if model is None or not model.embedding:
            return None
        if self.kind is Kind.OLLAMA:
            message = f'"{name}" does not support chat'
            return _json(400, {"error": {"message": message, "type": "api_error", "param": None, "code": None}})
        if self.kind is Kind.LLAMA:
            message = "This server does not support completions. Start it without `--embeddings`"
            return _json(501, {"error": {"code": 501, "message": message, "type": "not_supported_error"}})
        if self.kind is Kind.VLLM:
            message = "The model does not support Chat Completions API"
            return _json(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
        return _json(400, {"error": f"Model '{name}' is an embedding model and cannot be used for chat"})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body.get("model"))
        refused = self._unknown_model(name)
        if refused is not None:
            return refused
        model = self.models[0] if self.kind is Kind.LLAMA and self.models else self._model(name)
        if self.kind is Kind.LLAMA and (model is None or not model.embedding):
            message = "This server does not support embeddings. Start it with `--embeddings`"
            return _json(501, {"error": {"code": 501, "message": message, "type": "not_supported_error"}})
        texts = body.get("input")
        texts = texts if isinstance(texts, list) else [texts]
        data = []
        for i, text in enumerate(texts):
            vector = [float(len(str(text))), 0.5, -0.25]
            packed = base64.b64encode(struct.pack("<3f", *vector)).decode()
            embedding: object = packed if body.get("encoding_format") == "base64" else vector
            data.append({"object": "embedding", "embedding": embedding, "index": i})
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return _json(200, {"object": "list", "data": data, "model": name, "usage": usage})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body.get("model"))
        refused = self._unknown_model(name) or self._cannot_chat(name)
        if refused is not None:
            return refused
        calls_tool = bool(body.get("tools"))
        if calls_tool and not self.tools:
            refused = self._no_tools(name)
            if refused is not None:
                return refused
            calls_tool = False
        message: dict[str, Any] = {"role": "assistant", "content": "OK"}
        finish = "stop"
        if calls_tool:
            function = body["tools"][0]["function"]["name"]
            call = {"id": "call_1", "type": "function", "function": {"name": function, "arguments": '{"word": "OK"}'}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        base = {"id": "chatcmpl-1", "created": 1700000000, "model": name}
        if not body.get("stream") or not self.streams:
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
            return _json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for delta, end in (({"role": "assistant", "content": ""}, None), ({"content": "OK"}, None), ({}, finish)):
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": end}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

"""A fixture upstream that sends exactly the error bodies and headers real servers send.

`ScriptedUpstream` is a `SimulatedUpstream` (a real HTTP server on loopback)
with a queue of canned answers in front: each chat request (`/v1/chat/completions`
or `/v1/messages`) takes the next one, and when the queue is empty it answers
normally. `models_script` does the same for `GET /v1/models`, the health probe.

The bodies below are what the servers themselves send (llama.cpp's from
`../shared/llm/transcripts/` and its source; Ollama's `{"error": "..."}` shape;
vLLM's older `{"object": "error", ...}`; OpenAI's and Anthropic's documented
error objects). A body may contain `{key}`: it is replaced by the bearer key the
request carried, as OpenAI does when it names the wrong key it was given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web
from tests.conftest import LoopThread

from octoroute.demo.simulated import SimulatedUpstream


@dataclass(frozen=True)
class Canned:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(status: int, value: object, headers: Mapping[str, str] | None = None) -> Canned:
    return Canned(status, orjson.dumps(value), dict(headers or {}))


def llama_loading() -> Canned:
    """llama-server before its model is loaded (`Loading model`, `unavailable_error`)."""
    return _json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})


def llama_invalid_key() -> Canned:
    """llama-server started with `--api-key`, given another key."""
    return _json(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})


def openai_rate_limited(retry_after: str | None) -> Canned:
    error = {
        "message": "Rate limit reached for requests. Please try again later.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    return _json(429, {"error": error}, {"Retry-After": retry_after} if retry_after is not None else None)


def openai_invalid_key() -> Canned:
    error = {
        "message": "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    return _json(401, {"error": error})


def openai_forbidden() -> Canned:
    error = {"message": "Project does not have access to this model.", "type": "invalid_request_error"}
    return _json(403, {"error": {**error, "param": None, "code": "model_not_found"}})


def ollama_busy() -> Canned:
    """Ollama when its queue is full (OLLAMA_MAX_QUEUE)."""
    return _json(503, {"error": "server busy, please try again.  maximum pending requests exceeded"})


def ollama_not_found(model: str) -> Canned:
    return _json(404, {"error": f'model "{model}" not found, try pulling it first'})


def vllm_object_error(message: str) -> Canned:
    """Older vLLM releases: the error object is the whole body."""
    return _json(400, {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400})


def anthropic_rate_limited(retry_after: str) -> Canned:
    error = {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your rate limit."}
    return _json(429, {"type": "error", "error": error}, {"retry-after": retry_after})


def ok() -> None:
    """In a script: answer this request normally."""
    return None


class ScriptedUpstream(SimulatedUpstream):
    """See the module docstring. `script(...)` appends canned answers; `None` means "answer normally"."""

    def __init__(self, label: str) -> None:
        super().__init__(label=label, record=True)
        self.queue: deque[Canned | None] = deque()
        self.models_queue: deque[Canned | None] = deque()
        self.sent: list[int] = []  # status of every chat answer, in order

    def script(self, answers: Iterable[Canned | None]) -> ScriptedUpstream:
        self.queue.extend(answers)
        return self

    def script_models(self, answers: Iterable[Canned | None]) -> ScriptedUpstream:
        self.models_queue.extend(answers)
        return self

    @staticmethod
    def _render(canned: Canned, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ") or request.headers.get("x-api-key", "")
        body = canned.body.replace(b"{key}", key.encode())
        return web.Response(status=canned.status, body=body, content_type="application/json", headers=canned.headers)

    async def _next(self, request: web.Request) -> web.Response | None:
        canned = self.queue.popleft() if self.queue else None
        if canned is None:
            return None
        raw = await request.read()
        self._record(request, raw, orjson.loads(raw) if raw else None)
        self.sent.append(canned.status)
        return self._render(canned, request)

    async def _answer_chat(self, request: web.Request) -> web.StreamResponse:
        canned = await self._next(request)
        if canned is not None:
            return canned
        self.sent.append(200)
        return await super()._answer_chat(request)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        canned = await self._next(request)
        if canned is not None:
            self.count += 1
            return canned
        self.sent.append(200)
        return await super()._messages(request)

    async def _models(self, request: web.Request) -> web.Response:
        canned = self.models_queue.popleft() if self.models_queue else None
        if canned is None:
            return await super()._models(request)
        self._record(request, b"", None)
        return self._render(canned, request)


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[Callable[[str], ScriptedUpstream]]:
    """Factory: `scripted(label)` starts an error-scripted upstream; all stop after the test."""
    yield from loop_thread.serving(ScriptedUpstream)

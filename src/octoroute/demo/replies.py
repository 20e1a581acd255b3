"""What a simulated upstream answers: behaviours, reply planning, and the exact
chat.completion bodies and SSE events it sends (pure functions, no server).

Bodies follow the OpenAI spec (`CreateChatCompletionResponse`,
`CreateChatCompletionStreamResponse`); framing follows llama.cpp's llama-server.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

JSON_CONTENT_TYPE: Final = "application/json"
SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE_EVENT: Final = b"data: [DONE]\n\n"
VALID_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
ECHO_WORDS: Final = 8
CONTEXT_WINDOW: Final = 2048
MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # above any gateway limit, so the gateway's limit is what tests see
TOOL_ARGUMENT_PIECE: Final = 8  # characters of tool-call arguments per streamed chunk
GARBAGE_BODY: Final = b'{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": [{"index": 0, "message": <'


class Mode(enum.StrEnum):
    """How the next chat completion requests are answered."""

    NORMAL = "normal"
    ERROR_500 = "error_500"
    ERROR_429 = "error_429"  # with Retry-After
    ERROR_400 = "error_400"  # context length exceeded, OpenAI-shaped
    REJECT_400 = "reject_400"  # a 400 about a parameter, not the context: passed through, never retried
    SLOW = "slow"  # sleeps `slow_seconds` before sending headers
    HANG_BODY = "hang_body"  # headers, then nothing until the client or stop() gives up
    DROP_MID_STREAM = "drop_mid_stream"  # `drop_after_chunks` events, then the TCP connection is aborted
    GARBAGE = "garbage"  # 200 with a body that is not JSON
    FLAKY = "flaky"  # 500 with probability `failure_rate`, drawn from `rng`


@dataclass
class Behaviour:
    """Mutable on purpose: tests change it between requests. Delays are in seconds."""

    mode: Mode = Mode.NORMAL
    label: str = "simulated"  # the model id in /v1/models and the name in the default reply
    reply_text: str | None = None  # None: "This is <label> answering: <first words of the last user message>"
    first_byte_delay: float = 0.0  # before the status line, in every mode
    token_delay: float = 0.0  # between streamed chunks; non-stream waits this times the token count
    slow_seconds: float = 30.0  # Mode.SLOW
    drop_after_chunks: int = 2  # Mode.DROP_MID_STREAM: SSE events sent before the connection is cut
    failure_rate: float = 0.5  # Mode.FLAKY
    retry_after_seconds: int = 1  # Mode.ERROR_429
    ignore_stream: bool = False  # answer `stream: true` with one JSON body, as some servers do
    fail_next: int = 0  # the next N valid chat requests get a 500, whatever the mode; counts down
    gate: asyncio.Event | None = None  # when set to an Event, chat requests wait for it before answering
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the upstream received it. `headers` look up case-insensitively."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any] | None  # the JSON object sent, None when absent or not an object
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer, decided from the request alone."""

    model: str
    pieces: tuple[str, ...]  # content deltas; their concatenation is the message
    finish_reason: str
    prompt_tokens: int
    tool_name: str | None = None
    tool_arguments: str = "{}"

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) if self.tool_name is None else max(1, len(self.tool_arguments) // 4)

    def usage(self) -> dict[str, int]:
        done = self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": done,
            "total_tokens": self.prompt_tokens + done,
        }


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_body(message: str, error_type: str, *, param: str | None = None, code: str | None = None) -> bytes:
    """An OpenAI error object (`ErrorResponse` in the spec)."""
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts)
    return ""


def check_request(body: object) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in VALID_ROLES:
            raise BadRequest(
                f"messages[{i}] must be an object with a role among {', '.join(sorted(VALID_ROLES))}",
                f"messages[{i}].role",
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean", "stream")
    return body, messages


def _forced_tool(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The tool definition the request forces a call to, if it forces one."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "required":
        function: dict[str, Any] = tools[0]["function"]
        return function
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        return next((t["function"] for t in tools if t["function"].get("name") == wanted), None)
    return None


def _tool_arguments(function: Mapping[str, Any]) -> str:
    """`{}`, or a placeholder for every required parameter of a simple type (the first
    value of its `enum`, when it has one, as a grammar-constrained server would pick)."""
    params = function.get("parameters")
    if not isinstance(params, dict) or not isinstance(params.get("properties"), dict):
        return "{}"
    samples = {"string": "example", "integer": 1, "number": 1.5, "boolean": True}
    args: dict[str, object] = {}
    for name in params.get("required") or ():
        prop = params["properties"].get(name)
        if not isinstance(prop, dict):
            continue
        enum = prop.get("enum")
        if isinstance(enum, list) and enum:
            args[name] = enum[0]
        elif prop.get("type") in samples:
            args[name] = samples[prop["type"]]
    return orjson.dumps(args).decode()


def plan_reply(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], behaviour: Behaviour) -> Reply:
    """Decide the answer: a tool call when one is forced, else (possibly truncated) text."""
    model = str(body["model"])
    prompt_tokens = max(1, sum(len(text_of(m.get("content"))) for m in messages) // 4)
    function = _forced_tool(body)
    if function is not None:
        name = str(function.get("name") or "tool")
        return Reply(model, (), "tool_calls", prompt_tokens, name, _tool_arguments(function))
    text = behaviour.reply_text
    if text is None:
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        echo = " ".join(text_of(last_user.get("content") if last_user else None).split()[:ECHO_WORDS])
        text = f"This is {behaviour.label} answering: {echo}" if echo else f"This is {behaviour.label} answering."
    words = text.split(" ")
    pieces = (words[0], *(" " + w for w in words[1:]))
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(pieces):
        return Reply(model, pieces[:limit], "length", prompt_tokens)
    return Reply(model, pieces, "stop", prompt_tokens)


def completion_body(reply: Reply, completion_id: str, created: int, tool_call_id: str) -> bytes:
    """A non-streamed `chat.completion`."""
    message: dict[str, object] = {"role": "assistant", "content": "".join(reply.pieces), "refusal": None}
    if reply.tool_name is not None:
        message["content"] = None
        function = {"name": reply.tool_name, "arguments": reply.tool_arguments}
        message["tool_calls"] = [{"id": tool_call_id, "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": reply.model,
            "choices": [choice],
            "usage": reply.usage(),
        }
    )


def stream_events(
    reply: Reply, completion_id: str, created: int, tool_call_id: str, *, include_usage: bool
) -> list[bytes]:
    """Every SSE event of a streamed answer, `data: [DONE]` included."""
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": reply.model}

    def event(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    if reply.tool_name is None:
        deltas: list[dict[str, object]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in reply.pieces]
    else:
        call = {
            "index": 0,
            "id": tool_call_id,
            "type": "function",
            "function": {"name": reply.tool_name, "arguments": ""},
        }
        deltas = [{"role": "assistant", "content": None}, {"tool_calls": [call]}]
        args = reply.tool_arguments
        for start in range(0, len(args), TOOL_ARGUMENT_PIECE):
            piece = args[start : start + TOOL_ARGUMENT_PIECE]
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    events = [event(d) for d in deltas]
    events.append(event({}, reply.finish_reason))
    if include_usage:
        events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": reply.usage()}) + b"\n\n")
    events.append(DONE_EVENT)
    return events

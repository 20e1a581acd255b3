"""Ollama's native API (`/api/chat`, `/api/generate`) ↔ the internal OpenAI chat form.

Pure translators: no I/O, no clock (timestamps and measured durations are passed in).

    body, thinking, lost = chat_request(ollama_body)            # → OpenAI chat body
    answer = chat_response(completion, "llama3:latest", now, timings)
    stream = OllamaStream("llama3:latest", GENERATE, show_thinking=True)
    lines = stream.feed(chunk) ... + stream.finish(created_at, timings)

What differs from OpenAI (https://github.com/ollama/ollama/blob/main/docs/api.md):
images are bare base64 strings on a message (→ `image_url` data URIs); tool-call
arguments are JSON objects, not strings; tool results name the tool
(`tool_name`) instead of a call id; sampling settings live in `options`
(`num_predict` is `max_tokens`); `format` is "json" or a JSON schema; streaming
is the default and is newline-delimited JSON, one object per piece with
`done: false`, then one `done: true` object with the stop reason, token counts
and durations in nanoseconds. Fields with no counterpart are dropped and
reported as `Degradation`s, never silently.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from octoroute.core.errors import TranslationError
from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.thinking import ThinkingRequest, reasoning_text

LATEST: Final = ":latest"
ROLES: Final = frozenset({"system", "user", "assistant", "tool"})

# options → OpenAI body fields with the same meaning (name on the wire: name in the body).
_SAMPLING: Final = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "stop": "stop",
}
# Not in OpenAI's spec, but llama.cpp, vLLM and Ollama's own /v1 read them under these names.
_EXTENSIONS: Final = ("top_k", "min_p")
# Ollama's other options: model-loading and server settings (the upstream's own configuration
# decides them) and samplers with no common OpenAI-side name. Named as dropped.
_DROPPED: Final = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "embedding_only",
        "num_thread",
        "numa",
        "num_keep",
        "tfs_z",
        "typical_p",
        "repeat_last_n",
        "repeat_penalty",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "penalize_newline",
    }
)
_DROPPED_FIELDS: Final = frozenset({"logprobs", "top_logprobs"})  # Ollama's logprob shape is its own
# Top-level fields read elsewhere or deliberately ignored (keep_alive: the upstream keeps its own models loaded).
_CHAT_FIELDS: Final = frozenset(
    {"model", "messages", "tools", "format", "options", "stream", "think", "keep_alive", "importance", "task_type"}
)
_GENERATE_FIELDS: Final = frozenset(
    {"model", "prompt", "suffix", "system", "template", "context", "raw", "images", "format", "options"}
    | {"stream", "think", "keep_alive", "importance", "task_type"}
)
# Image formats Ollama accepts, by their first bytes.
_MAGIC: Final = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)
_DONE_REASONS: Final = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


class Endpoint(enum.StrEnum):
    """Which Ollama endpoint an answer is for: the text goes in `message` or in `response`."""

    CHAT = "chat"
    GENERATE = "generate"


CHAT: Final = Endpoint.CHAT
GENERATE: Final = Endpoint.GENERATE


@dataclass(frozen=True, slots=True)
class Timings:
    """Measured durations of one request in nanoseconds, for the final `done: true` object.
    `prompt_eval` is the time to the first byte of the answer, `eval` the rest."""

    total: int
    prompt_eval: int
    eval: int
    load: int = 0  # octoroute loads no model; the upstream's load time is part of prompt_eval


# -- model names ------------------------------------------------------------


def tagged(name: str) -> str:
    """The name Ollama clients list: `name:latest` unless the name already has a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + LATEST


def untagged(name: str) -> str | None:
    """`name` without its `:latest` tag, or None when it has none."""
    return name.removesuffix(LATEST) if name.endswith(LATEST) and len(name) > len(LATEST) else None


# -- requests ---------------------------------------------------------------


def _image_url(data: object, path: str) -> dict[str, Any]:
    """A base64 image (bare, as Ollama sends it, or already a data URI) as an `image_url` part."""
    if not isinstance(data, str) or not data:
        raise TranslationError(f"'{path}' must be a base64-encoded image", path)
    if data.startswith("data:"):
        return {"type": "image_url", "image_url": {"url": data}}
    try:
        head = base64.b64decode(data[:16] + "=" * (-len(data[:16]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TranslationError(f"'{path}' must be a base64-encoded image", path) from None
    mime = next((m for magic, m in _MAGIC if head.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _content(text: object, images: object, path: str) -> str | list[dict[str, Any]]:
    content = text if isinstance(text, str) else ""
    if images is None or images == []:
        return content
    if not isinstance(images, list):
        raise TranslationError(f"'{path}.images' must be an array of base64 images", f"{path}.images")
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    parts += [_image_url(img, f"{path}.images[{i}]") for i, img in enumerate(images)]
    return parts


def _arguments(value: object) -> str:
    """Ollama sends arguments as an object; OpenAI wants its JSON text."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def _assistant(message: Mapping[str, Any], path: str, pending: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": _content(message.get("content"), None, path)}
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        openai_calls = []
        for i, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise TranslationError(f"'{path}.tool_calls[{i}]' needs a function with a name", f"{path}.tool_calls")
            call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else f"call_{path}_{i}"
            call_id = call_id.replace("[", "_").replace("]", "").replace(".", "_")
            pending.append((call_id, function["name"]))
            openai_calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": function["name"], "arguments": _arguments(function.get("arguments"))},
                }
            )
        out["tool_calls"] = openai_calls
        if not out["content"]:
            out["content"] = None
    return out


def _tool_result(message: Mapping[str, Any], pending: list[tuple[str, str]]) -> dict[str, Any]:
    """A tool message answers a call: the one whose name it gives, else the oldest still open."""
    name = message.get("tool_name") or message.get("name")
    explicit = message.get("tool_call_id")
    if isinstance(explicit, str) and explicit:
        call_id = explicit
        pending[:] = [p for p in pending if p[0] != explicit]
    else:
        match = next((p for p in pending if p[1] == name), pending[0] if pending else None)
        if match is not None:
            pending.remove(match)
        call_id = match[0] if match is not None else f"call_{name or 'tool'}"
    text = message.get("content")
    return {"role": "tool", "tool_call_id": call_id, "content": text if isinstance(text, str) else ""}


def _messages(messages: object, lost: list[Degradation]) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise TranslationError("'messages' must be an array of messages", "messages")
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # tool calls not yet answered: (id, function name)
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise TranslationError(f"'{path}' must be an object with a role among {', '.join(sorted(ROLES))}", path)
        role = message["role"]
        if message.get("thinking"):
            lost.append(Degradation(DegradationKind.THINKING_BLOCK, f"{path}.thinking"))
        if role == "assistant":
            out.append(_assistant(message, path, pending))
        elif role == "tool":
            out.append(_tool_result(message, pending))
        else:
            out.append({"role": role, "content": _content(message.get("content"), message.get("images"), path)})
    return out


def _tools(tools: object, lost: list[Degradation]) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be an array of tools", "tools")
    kept = []
    for i, tool in enumerate(tools):
        if (
            isinstance(tool, dict)
            and isinstance(tool.get("function"), dict)
            and tool.get("type", "function") == "function"
        ):
            kept.append({"type": "function", "function": tool["function"]})
        else:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_TOOL, f"tools[{i}]"))
    return kept or None


def _response_format(fmt: object) -> dict[str, Any] | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    raise TranslationError("'format' must be \"json\" or a JSON schema object", "format")


def _options(options: object, out: dict[str, Any], lost: list[Degradation]) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise TranslationError("'options' must be an object", "options")
    for key, value in options.items():
        if value is None:
            continue
        if key in _SAMPLING:
            out[_SAMPLING[key]] = value
        elif key == "num_predict":
            # -1 (until done) and -2 (fill the context) leave the limit to the server.
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out["max_tokens"] = value
        elif key in _EXTENSIONS:
            out[key] = value
        else:
            kind = DegradationKind.UNSUPPORTED_FIELD if key in _DROPPED else DegradationKind.UNKNOWN_FIELD
            lost.append(Degradation(kind, f"options.{key}"))


def _thinking(think: object) -> ThinkingRequest | None:
    """`think`: true/false, or an effort level ("low", "medium", "high")."""
    if think is None:
        return None
    if isinstance(think, bool):  # plain "on" asks for the middle effort level
        return ThinkingRequest(enabled=think, show=think, effort="medium" if think else None)
    if isinstance(think, str) and think in ("low", "medium", "high"):
        return ThinkingRequest(enabled=True, effort=think)
    raise TranslationError('\'think\' must be true, false, "low", "medium" or "high"', "think")


def _common(body: Mapping[str, Any], out: dict[str, Any], known: frozenset[str], lost: list[Degradation]) -> None:
    stream = body.get("stream")
    stream = True if stream is None else stream  # Ollama streams unless told not to (null too)
    if not isinstance(stream, bool):
        raise TranslationError("'stream' must be true or false", "stream")
    out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}  # the final object's token counts
    fmt = _response_format(body.get("format"))
    if fmt is not None:
        out["response_format"] = fmt
    _options(body.get("options"), out, lost)
    for key in body:
        if key in _DROPPED_FIELDS and body[key]:
            lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, key))
        elif key not in known and key not in _DROPPED_FIELDS:
            lost.append(Degradation(DegradationKind.UNKNOWN_FIELD, key))


def chat_request(body: Mapping[str, Any]) -> tuple[dict[str, Any], ThinkingRequest | None, list[Degradation]]:
    """An `/api/chat` body as an OpenAI chat body (without `model`), the thinking asked
    for, and what could not be carried over."""
    lost: list[Degradation] = []
    out: dict[str, Any] = {"messages": _messages(body.get("messages"), lost)}
    if not out["messages"]:
        raise TranslationError("'messages' must not be empty", "messages")
    tools = _tools(body.get("tools"), lost)
    if tools is not None:
        out["tools"] = tools
    _common(body, out, _CHAT_FIELDS, lost)
    return out, _thinking(body.get("think")), lost


def generate_request(body: Mapping[str, Any]) -> tuple[dict[str, Any], ThinkingRequest | None, list[Degradation]]:
    """An `/api/generate` body as a one-turn OpenAI chat body: `system` (when given) and
    the prompt with its images as the user message. The upstream's chat template wraps
    it, so `template` and `raw` are named as dropped; `context` (token ids of an earlier
    answer) has no chat form; a `suffix` (fill-in-the-middle) cannot be done through
    chat and is refused rather than ignored."""
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise TranslationError("'prompt' must be a string", "prompt")
    if not prompt:
        raise TranslationError("'prompt' must be a non-empty string", "prompt")
    if body.get("suffix"):
        raise TranslationError("'suffix' (fill-in-the-middle) goes through fim_request", "suffix")
    lost: list[Degradation] = []
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _content(prompt, body.get("images"), "prompt")})
    for field in ("template", "context"):
        if body.get(field):
            lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, field))
    if body.get("raw") is True:
        lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, "raw"))
    out: dict[str, Any] = {"messages": messages}
    _common(body, out, _GENERATE_FIELDS, lost)
    return out, _thinking(body.get("think")), lost


def fim_request(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[Degradation]]:
    """An `/api/generate` body with a `suffix` (fill-in-the-middle) as an OpenAI
    completions body: `prompt` and `suffix` as they are, the options as for chat.
    `system`, `template`, `raw` and `context` have no completions form and are named."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise TranslationError("'prompt' must be a string", "prompt")
    suffix = body.get("suffix")
    if not isinstance(suffix, str):
        raise TranslationError("'suffix' must be a string", "suffix")
    lost: list[Degradation] = []
    out: dict[str, Any] = {"prompt": prompt, "suffix": suffix}
    for field in ("system", "template", "context", "images"):
        if body.get(field):
            lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, field))
    _common(body, out, _GENERATE_FIELDS, lost)  # `raw`: a completions prompt is raw already
    if out.pop("response_format", None) is not None:
        lost.append(Degradation(DegradationKind.UNSUPPORTED_FIELD, "format"))
    return out, lost


# -- answers ----------------------------------------------------------------


def done_reason(finish_reason: object) -> str:
    """OpenAI's finish_reason as Ollama's done_reason (a tool call ends with "stop" there)."""
    return _DONE_REASONS.get(finish_reason, "stop") if isinstance(finish_reason, str) else "stop"


def tool_calls(calls: Iterable[Mapping[str, Any]], lost: list[Degradation]) -> list[dict[str, Any]]:
    """OpenAI tool calls as Ollama's: arguments as an object ({} when the text is not one)."""
    out = []
    for i, call in enumerate(calls):
        function = call.get("function")
        if not isinstance(function, Mapping):
            continue
        raw = function.get("arguments")
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else {}
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            lost.append(Degradation(DegradationKind.INVALID_TOOL_ARGUMENTS, f"tool_calls[{i}].function.arguments"))
            arguments = {}
        entry: dict[str, Any] = {
            "function": {"index": i, "name": str(function.get("name") or ""), "arguments": arguments}
        }
        if isinstance(call.get("id"), str):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def final_fields(reason: str, usage: Mapping[str, Any] | None, timings: Timings) -> dict[str, Any]:
    """The `done: true` object's stop reason, token counts and durations."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return {
        "done": True,
        "done_reason": reason,
        "total_duration": timings.total,
        "load_duration": timings.load,
        "prompt_eval_count": prompt if isinstance(prompt, int) else 0,
        "prompt_eval_duration": timings.prompt_eval,
        "eval_count": completion if isinstance(completion, int) else 0,
        "eval_duration": timings.eval,
    }


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def completion_response(
    completion: Mapping[str, Any],
    endpoint: Endpoint,
    *,
    model: str,
    created_at: str,
    timings: Timings,
    show_thinking: bool = True,
) -> tuple[dict[str, Any], list[Degradation]]:
    """A whole `chat.completion` as one `/api/chat` or `/api/generate` answer."""
    lost: list[Degradation] = []
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    if isinstance(choices, list) and len(choices) > 1:
        lost.append(Degradation(DegradationKind.EXTRA_CHOICES, "choices"))
    message = choice.get("message") if isinstance(choice.get("message"), Mapping) else {}
    assert isinstance(message, Mapping)
    text = _text(message.get("content") if "text" not in choice else choice["text"])  # `text`: a completion
    thinking = reasoning_text(message) if show_thinking else None
    out: dict[str, Any] = {"model": model, "created_at": created_at}
    if endpoint is CHAT:
        answer: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            answer["thinking"] = thinking
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            answer["tool_calls"] = tool_calls([c for c in calls if isinstance(c, Mapping)], lost)
        out["message"] = answer
    else:
        out["response"] = text
        if thinking:
            out["thinking"] = thinking
    usage = completion.get("usage")
    out.update(
        final_fields(done_reason(choice.get("finish_reason")), usage if isinstance(usage, Mapping) else None, timings)
    )
    return out, lost


class OllamaStream:
    """OpenAI chat chunks in, Ollama's streamed objects out (encode each as one NDJSON line).

    Text and reasoning go out as they come; tool calls are assembled from their
    argument fragments and sent whole in one object before the final one, since
    Ollama clients read each call's arguments as a complete object."""

    def __init__(self, model: str, endpoint: Endpoint, *, show_thinking: bool = True) -> None:
        self.model = model
        self.endpoint = endpoint
        self.show_thinking = show_thinking
        self.degradations: list[Degradation] = []
        self.created_at = ""
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: object = None
        self._usage: Mapping[str, Any] | None = None
        self._pieces = 0

    def _piece(self, text: str, thinking: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": self.created_at}
        if self.endpoint is CHAT:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        out["done"] = False
        return out

    def feed(self, chunk: Mapping[str, Any], created_at: str) -> list[dict[str, Any]]:
        """The objects one chunk becomes (often one, none for a role or usage chunk)."""
        self.created_at = created_at
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        out: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
            if isinstance(choice.get("text"), str):  # a text_completion chunk (fill-in-the-middle)
                if choice["text"]:
                    self._pieces += 1
                    out.append(self._piece(choice["text"], None))
                continue
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            text = _text(delta.get("content"))
            thinking = reasoning_text(delta) if self.show_thinking else None
            if text or thinking:
                self._pieces += 1
                out.append(self._piece(text, thinking))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, Mapping):
                    self._add_call(call)
        return out

    def _add_call(self, call: Mapping[str, Any]) -> None:
        index = call.get("index", len(self._calls))
        slot = self._calls.setdefault(index if isinstance(index, int) else 0, {"function": {"arguments": ""}})
        if isinstance(call.get("id"), str):
            slot["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, Mapping):
            if isinstance(function.get("name"), str):
                slot["function"]["name"] = slot["function"].get("name", "") + function["name"]
            if isinstance(function.get("arguments"), str):
                slot["function"]["arguments"] += function["arguments"]

    def finish(self, timings: Timings) -> list[dict[str, Any]]:
        """The assembled tool calls (chat only) and the final `done: true` object."""
        out: list[dict[str, Any]] = []
        if self._calls and self.endpoint is CHAT:
            calls = tool_calls([self._calls[i] for i in sorted(self._calls)], self.degradations)
            piece = self._piece("", None)
            piece["message"]["tool_calls"] = calls
            out.append(piece)
        last = self._piece("", None)
        usage = self._usage
        if usage is None:  # the server sent no usage: count the pieces, about one token each
            usage = {"completion_tokens": self._pieces}
        last.update(final_fields(done_reason(self._finish), usage, timings))
        out.append(last)
        return out


def error_body(message: str) -> bytes:
    """Ollama's error object: `{"error": "..."}` (also the last line of a failed stream)."""
    return orjson.dumps({"error": message})

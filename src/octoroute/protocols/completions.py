"""Legacy text completions, sans I/O: OpenAI's `POST /v1/completions`
(`CreateCompletionRequest` / `CreateCompletionResponse` in ../shared/spec/openapi.yaml;
streamed and whole answers share that shape) and llama.cpp's `POST /infill`
(tools/server/README.md in llama.cpp: `input_prefix`, `input_suffix`, the
`/completion` options, answers with `content`, `stop`, `stop_type`,
`tokens_evaluated`, `tokens_predicted`).

Most endpoints take the client's request as it is (model name replaced). A
fill-in-the-middle request (`suffix`) for an endpoint with `fim = "infill"` is
translated to /infill (`to_infill`) and its answer, whole or streamed, back to
OpenAI's shape (`from_infill`, `InfillStream`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import orjson

from octoroute.protocols.embeddings import token_ids_input
from octoroute.protocols.sse import UnreadableEvent, encode_data, encode_json_events, iter_data

if TYPE_CHECKING:
    from octoroute.config.topology import EndpointSpec

FinishReason = Literal["stop", "length", "content_filter"]
# Options /infill shares with OpenAI's completions under the same name.
_SAME_OPTIONS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "stream")
_STOP_TRUE = re.compile(rb'"stop"\s*:\s*true')


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: None
    finish_reason: FinishReason | None  # None only in a stream's chunks before the last


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(TypedDict, total=False):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


def is_fim(body: Mapping[str, object]) -> bool:
    """A fill-in-the-middle request: one with a non-empty `suffix` (an empty one asks
    for nothing after the insertion, which any completions endpoint does)."""
    suffix = body.get("suffix")
    return isinstance(suffix, str) and suffix != ""


def plain_prompt(body: Mapping[str, object]) -> bool:
    """The prompt is one string (what /infill can take as its prefix)."""
    return isinstance(body.get("prompt"), str)


def check_completions_body(body: Mapping[str, object]) -> tuple[str, str] | None:
    """(param, message) for what the gateway cannot route or translate, else None."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        return "model", "'model' must be a string"
    prompt = body.get("prompt")
    texts = isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
    if not (isinstance(prompt, str) or texts or token_ids_input(prompt)):
        return (
            "prompt",
            "'prompt' must be a string, an array of strings, an array of token ids or an array of token-id arrays",
        )
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        return "suffix", "'suffix' must be a string"
    if body.get("stream") not in (None, True, False):
        return "stream", "'stream' must be a boolean"
    return None


def to_infill(body: Mapping[str, Any], ep: EndpointSpec) -> dict[str, Any]:
    """A FIM completions request as llama.cpp's /infill request: prompt → `input_prefix`,
    suffix → `input_suffix`, max_tokens → `n_predict`; the shared sampling options by name."""
    out: dict[str, Any] = {"input_prefix": body["prompt"], "input_suffix": body["suffix"], "prompt": ""}
    for key in _SAME_OPTIONS:
        if body.get(key) is not None:
            out[key] = body[key]
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = ep.max_tokens
    if max_tokens is not None:
        out["n_predict"] = max_tokens
    if ep.temperature is not None and "temperature" not in out:
        out["temperature"] = ep.temperature
    return out


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _finish(payload: Mapping[str, object]) -> FinishReason:
    limit = payload.get("stop_type") == "limit" or payload.get("stopped_limit") is True
    return "length" if limit else "stop"


def _usage(payload: Mapping[str, object]) -> CompletionUsage:
    prompt, output = _count(payload.get("tokens_evaluated")), _count(payload.get("tokens_predicted"))
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}


def from_infill(payload: Mapping[str, object], model: str, completion_id: str, created: int) -> Completion | None:
    """A whole /infill answer as an OpenAI text completion, or None when it is not one."""
    content = payload.get("content")
    if not isinstance(content, str):
        return None
    choice: CompletionChoice = {"text": content, "index": 0, "logprobs": None, "finish_reason": _finish(payload)}
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(payload),
    }


def ends_infill_stream(events: bytes) -> bool:
    """Whether `events` hold the last event of a streamed /infill answer (`"stop": true`)."""
    return _STOP_TRUE.search(events) is not None


class InfillStream:
    """A streamed /infill answer as OpenAI completion chunks, ending with `[DONE]`; the
    last chunk carries `finish_reason`, then a usage chunk when the client asked for it."""

    def __init__(self, model: str, completion_id: str, created: int, *, include_usage: bool) -> None:
        self._head = {"id": completion_id, "object": "text_completion", "created": created, "model": model}
        self._include_usage = include_usage
        self._done = False

    def _chunk(self, text: str, finish: FinishReason | None) -> dict[str, Any]:
        return {**self._head, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

    def convert(self, events: bytes) -> bytes:
        out: list[dict[str, Any]] = []
        for data in iter_data(events):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:  # a hole in the answer: say so rather than skip it
                raise UnreadableEvent(encode_json_events(out)) from exc
            if not isinstance(event, dict) or self._done:
                continue
            text = event.get("content")
            if event.get("stop") is True:
                self._done = True
                out.append(self._chunk(text if isinstance(text, str) else "", _finish(event)))
                if self._include_usage:
                    out.append({**self._head, "choices": [], "usage": _usage(event)})
            elif isinstance(text, str) and text:
                out.append(self._chunk(text, None))
        return encode_json_events(out) + (encode_data(b"[DONE]") if self._done else b"")

    @property
    def done(self) -> bool:
        return self._done

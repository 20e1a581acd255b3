"""Tool calls a model wrote as text, turned into real OpenAI `tool_calls`.

Local models often write the call as text instead of a `tool_calls` entry.
When every call found names a *declared* tool, the text becomes `tool_calls`
and `finish_reason` becomes "tool_calls":

    changed = repair_completion(response, frozenset({"get_weather"}), call_id_factory("req42"))

    repair = StreamRepair(frozenset({"get_weather"}), call_id_factory("req42"))
    for chunk in chunks:                 # parsed chat.completion.chunk objects
        out.extend(repair.feed(chunk))
    out.extend(repair.finish())          # on [DONE] or end of body

Call shapes: `{"name", "arguments" | "parameters" | "input"}`, `{"tool", "args"
| "tool_input"}` (optionally with `"type": "function"` and `"id"`) and OpenAI's
`{"type": "function", "function": {...}}`; arguments an object or a JSON string
of one. Any other key, no arguments key or an undeclared name: not a call.
Written as bare JSON, a JSON list `[{...}]`, in a ``` / ```json fence, or in
`<tool_call>...</tool_call>` (Qwen/Hermes; the last closing tag may be missing).

Where calls may be, the same for both APIs so a stream ends as the whole answer
would: at the start (after whitespace) and right after a call, in any form;
after prose only as `<tool_call>`, since fences and braces are too common in
ordinary answers to hold a stream back for them. All or nothing: one invalid
candidate and the answer stays text. The text left (prose before the calls
verbatim, text after one without its leading whitespace) is the content, null
if only whitespace.

A stream is held back from the first call-like opener to the finish_reason
chunk, at most `max_buffer_chars`, and released as text early when the opener
turns out to be an ordinary fence or JSON answer. Only choice 0 is repaired.
Run it after the output filters: a `<think>` block first would read as prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

MakeId = Callable[[int], str]
"""`make_id(n)` is the full id of the n-th repaired call (0, 1, ...) of one answer."""

MAX_BUFFER_CHARS: Final = 64 * 1024
_TAG: Final = "<tool_call>"
_TAG_END: Final = "</tool_call>"
_FENCE: Final = "```"
_FENCE_INFOS: Final = frozenset({"", "json", "tool_call"})
_NAME_KEYS: Final = ("name", "tool")
_ARG_KEYS: Final = ("arguments", "parameters", "input", "args", "tool_input")
_OPTIONAL_KEYS: Final = frozenset({"type", "id"})
_STRUCTURE = re.compile(r'[{}\[\]"]')
_IN_STRING = re.compile(r'["\\]')
_FIRST_KEY = re.compile(r'\[?\s*\{\s*"([^"\\]*)"')
_CALL_KEYS: Final = frozenset({*_NAME_KEYS, *_ARG_KEYS, *_OPTIONAL_KEYS, "function"})
_VERDICT_CHARS: Final = 256  # an opener undecided after this many characters waits for the end


@dataclass(frozen=True, slots=True)
class TextToolCall:
    """One call found in text; `arguments` is a JSON object, encoded."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ParsedCalls:
    """The calls found in a text and the text left once they are removed."""

    calls: tuple[TextToolCall, ...]
    text: str

    @property
    def content(self) -> str | None:
        """The message content to keep: null when only whitespace is left."""
        return self.text if self.text.strip() else None


def call_id_factory(prefix: str) -> MakeId:
    """Deterministic ids `call_<prefix>_<n>`; pass the request id as prefix for unique ids."""
    return lambda n: f"call_{prefix}_{n}"


# ------------------------------------------------------------------ parsing


def _arguments_json(value: object) -> str | None:
    """Arguments as an encoded JSON object, or None when they are not an object."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    value = {} if value is None else value
    return orjson.dumps(value).decode() if isinstance(value, dict) else None


def _call_from(obj: object, declared: frozenset[str]) -> TextToolCall | None:
    """A call when `obj` has exactly a call's shape and names a declared tool."""
    if not isinstance(obj, dict):
        return None
    function = obj.get("function")
    if isinstance(function, dict) and obj.keys() <= {"function", *_OPTIONAL_KEYS}:
        if obj.get("type", "function") != "function":
            return None
        obj = function
    names = [key for key in _NAME_KEYS if key in obj]
    args = [key for key in _ARG_KEYS if key in obj]
    if len(names) != 1 or len(args) != 1 or not obj.keys() <= {names[0], args[0], *_OPTIONAL_KEYS}:
        return None
    name = obj[names[0]]
    if obj.get("type", "function") != "function" or not isinstance(name, str) or name not in declared:
        return None
    arguments = _arguments_json(obj[args[0]])
    return None if arguments is None else TextToolCall(name, arguments)


def _calls_from_json(source: str, declared: frozenset[str]) -> list[TextToolCall] | None:
    """The calls in one JSON value (an object or a non-empty list of them), else None."""
    try:
        value = orjson.loads(source)
    except orjson.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = [_call_from(item, declared) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _json_end(text: str, start: int) -> int:
    """End of the bracketed value opening at `start` (-1: never closes); regex jumps keep it in C."""
    depth = 0
    pos = start
    while (match := _STRUCTURE.search(text, pos)) is not None:
        char = match.group()
        pos = match.end()
        if char == '"':
            while (quote := _IN_STRING.search(text, pos)) is not None and quote.group() == "\\":
                pos = quote.end() + 1
            if quote is None:
                return -1
            pos = quote.end()
        elif char in "{[":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos
    return -1


def _unfence(body: str) -> str:
    """The inside of a fence wrapping the whole of `body`, or `body` itself."""
    if body.startswith(_FENCE) and body.endswith(_FENCE) and "\n" in body:
        return body[body.index("\n") + 1 : -len(_FENCE)].strip()
    return body


def _segment(text: str, pos: int, declared: frozenset[str]) -> tuple[list[TextToolCall], int] | None:
    """The calls of the call-like segment opening at `pos` and where it ends, or None."""
    if text.startswith(_TAG, pos):
        close = text.find(_TAG_END, pos + len(_TAG))
        end = len(text) if close < 0 else close + len(_TAG_END)
        body = _unfence(text[pos + len(_TAG) : len(text) if close < 0 else close].strip())
    elif text.startswith(_FENCE, pos):
        newline = text.find("\n", pos)
        close = text.find(_FENCE, newline + 1) if newline >= 0 else -1
        if close < 0 or text[pos + len(_FENCE) : newline].strip().lower() not in _FENCE_INFOS:
            return None
        body, end = text[newline + 1 : close], close + len(_FENCE)
    else:
        end = _json_end(text, pos)
        if end < 0:
            return None
        body = text[pos:end]
    calls = _calls_from_json(body, declared)
    return None if calls is None else (calls, end)


def _opens_call(text: str, pos: int) -> bool:
    """Whether a call segment may open at `pos` (a list only as `[{`: `[1]` is prose)."""
    if text.startswith(("{", _FENCE, _TAG), pos):
        return True
    return text.startswith("[", pos) and text[pos + 1 :].lstrip().startswith("{")


def _may_open_later(start: str) -> bool:
    """Whether `start` (no leading whitespace) is too short to tell if a call opens."""
    return _FENCE.startswith(start) or _TAG.startswith(start) or (start[0] == "[" and not start[1:].strip())


def _cannot_be_call(start: str) -> bool | None:
    """Early verdict on a held opener: True when no call can follow, None while unsure.

    Lets ordinary answers that open with a code fence or a JSON object stream
    instead of waiting for the end. Never True where `parse_text_tool_calls`
    could still find a call.
    """
    if start.startswith(_FENCE):
        newline = start.find("\n")
        if newline < 0:
            return None
        body = start[newline + 1 :].lstrip()
        if start[len(_FENCE) : newline].strip().lower() not in _FENCE_INFOS or body[:1] not in ("", "{", "["):
            return True
        start = body
    key = _FIRST_KEY.match(start)
    if key is None:
        return None
    return key.group(1) not in _CALL_KEYS


def parse_text_tool_calls(text: str, declared: frozenset[str]) -> ParsedCalls | None:
    """The declared-tool calls written in `text` (rules in the module docstring), or None."""
    calls: list[TextToolCall] = []
    kept: list[str] = []
    pos = 0
    while pos < len(text):
        start = len(text) - len(text[pos:].lstrip())
        if not _opens_call(text, start):
            if start == len(text) and calls:
                break  # only whitespace after the last call
            tag = text.find(_TAG, pos if not calls else start)
            kept.append(text[pos if not calls else start : tag if tag >= 0 else len(text)])
            if tag < 0:
                break
            start = tag
        found = _segment(text, start, declared)
        if found is None:
            return None
        calls.extend(found[0])
        pos = found[1]
    return ParsedCalls(tuple(calls), "".join(kept)) if calls else None


# ------------------------------------------------------------------ non-streaming


def openai_tool_call(call_id: str, call: TextToolCall) -> dict[str, Any]:
    """The `tool_calls[]` entry of a message for one repaired call."""
    return {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def repair_completion(response: dict[str, Any], declared: frozenset[str], make_id: MakeId) -> bool:
    """Rewrite text tool calls of a `chat.completion` in place; True when anything changed.

    Messages that already carry `tool_calls`, or whose content is not a string, are left alone.
    Ids are `make_id(0)`, `make_id(1)`... over the whole response.
    """
    choices = response.get("choices")
    if not declared or not isinstance(choices, list):
        return False
    count = 0
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or message.get("tool_calls") or not isinstance(message.get("content"), str):
            continue
        parsed = parse_text_tool_calls(message["content"], declared)
        if parsed is None:
            continue
        message["content"] = parsed.content
        message["tool_calls"] = [openai_tool_call(make_id(count + i), call) for i, call in enumerate(parsed.calls)]
        choice["finish_reason"] = "tool_calls"
        count += len(parsed.calls)
    return count > 0


# ------------------------------------------------------------------ streaming


def _choice0(chunk: Mapping[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return None
    return next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)


def _partial_tag(text: str) -> int:
    """Length of the longest suffix of `text` that could start `<tool_call>`."""
    return next((size for size in range(min(len(_TAG) - 1, len(text)), 0, -1) if _TAG.startswith(text[-size:])), 0)


def _chunk_like(template: Mapping[str, Any], delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """A new chunk with the template's id, model, created... and one choice 0."""
    chunk = {key: value for key, value in template.items() if key not in ("choices", "usage")}
    chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return chunk


def _with_content(chunk: Mapping[str, Any], text: str, finish_reason: object = ...) -> dict[str, Any] | None:
    """`chunk` (copied) with choice 0's content replaced; None if nothing would be left."""
    out = dict(chunk)
    out["choices"] = [dict(c) if isinstance(c, dict) and c.get("index", 0) == 0 else c for c in chunk["choices"]]
    choice = _choice0(out)
    assert choice is not None
    delta = dict(choice.get("delta") or {})
    delta.pop("content", None)
    if text:
        delta["content"] = text
    choice["delta"] = delta
    if finish_reason is not ...:
        choice["finish_reason"] = finish_reason
    bare = not delta and choice.get("finish_reason") is None and not choice.get("logprobs")
    if bare and len(out["choices"]) == 1 and out.get("usage") is None:
        return None
    return out


class _Mode:
    DETECT = 0  # only whitespace or part of an opener so far: held
    PASS = 1  # prose: passed through, watching for `<tool_call>`
    BUFFER = 2  # a call may be under way: everything held until the end
    OFF = 3  # nothing more to repair: chunks pass untouched


class StreamRepair:
    """Repairs text tool calls in a stream of chat.completion.chunk objects (choice 0).

    `feed` returns the chunks to send now (usually the one given, unchanged),
    `finish` what is still held when the stream ends without a finish_reason.
    """

    def __init__(self, declared: frozenset[str], make_id: MakeId, *, max_buffer_chars: int = MAX_BUFFER_CHARS):
        self._declared = declared
        self._make_id = make_id
        self._max = max_buffer_chars
        self._mode = _Mode.DETECT if declared else _Mode.OFF
        self._pending = ""  # held text outside the buffer: leading whitespace or a partial tag
        self._buffer: list[str] = []
        self._size = 0
        self._template: Mapping[str, Any] | None = None
        self._prose = False  # some content has gone out already
        self._undecided = True  # the held opener has not had its early verdict yet

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choice = _choice0(chunk) if self._mode != _Mode.OFF else None
        if choice is None:
            return [chunk]
        self._template = chunk
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("tool_calls") or delta.get("function_call"):
            held = self._release()  # real calls: the model does not need us
            self._mode = _Mode.OFF
            return [_chunk_like(chunk, {"content": held}, None), chunk] if held else [chunk]
        content = delta.get("content")
        content = content if isinstance(content, str) else ""
        emit = self._take(content)
        if choice.get("finish_reason") is not None:
            return self._close(chunk, emit, content)
        if emit == content:
            return [chunk]
        out = _with_content(chunk, emit)
        return [] if out is None else [out]

    def finish(self) -> list[dict[str, Any]]:
        if self._template is None or self._mode == _Mode.OFF:
            return []
        return self._close(_chunk_like(self._template, {}, None), "", None)

    # ------------------------------------------------------------------ state

    def _take(self, content: str) -> str:
        """Feed content to the state machine; returns the text that may go out now."""
        if self._mode == _Mode.BUFFER:
            return self._hold(content)
        if self._mode == _Mode.PASS:
            return self._scan_prose(self._pending + content)
        if self._mode == _Mode.OFF:
            return content
        self._pending += content
        start = self._pending.lstrip()
        if (not start and len(self._pending) <= self._max) or (start and _may_open_later(start)):
            return ""
        if _opens_call(start, 0):  # the leading whitespace stays pending: text again if no call
            self._mode, self._pending = _Mode.BUFFER, self._pending[: len(self._pending) - len(start)]
            return self._hold(start)
        self._mode, self._prose = _Mode.PASS, True
        return self._scan_prose(self._pending)

    def _scan_prose(self, text: str) -> str:
        if "<" not in text:  # the common case: no tag can start here
            self._pending = ""
            return text
        tag = text.find(_TAG)
        if tag >= 0:
            self._mode, self._pending = _Mode.BUFFER, ""
            return text[:tag] + self._hold(text[tag:])
        keep = len(text) - _partial_tag(text)
        self._pending = text[keep:]
        return text[:keep]

    def _hold(self, text: str) -> str:
        self._buffer.append(text)
        self._size += len(text)
        if self._undecided and not self._prose:
            verdict = _cannot_be_call("".join(self._buffer))
            self._undecided = verdict is None and self._size <= _VERDICT_CHARS
            if verdict:
                self._mode = _Mode.OFF  # an ordinary answer: stream it
                return self._release()
        if self._size <= self._max:
            return ""
        self._mode = _Mode.OFF  # too long to be a call worth waiting for
        return self._release()

    def _release(self) -> str:
        text = self._pending + "".join(self._buffer)
        self._pending, self._buffer, self._size = "", [], 0
        return text

    def _close(self, chunk: dict[str, Any], emit: str, content: str | None) -> list[dict[str, Any]]:
        """The end of choice 0: repaired calls, or everything held released as text.

        `content` is the finish chunk's own content; None for the chunk `finish()` makes up.
        """
        parsed = parse_text_tool_calls("".join(self._buffer), self._declared) if self._mode == _Mode.BUFFER else None
        held = self._release()
        self._mode = _Mode.OFF
        if parsed is None:
            if emit + held == content:
                return [chunk]
            if content is None:
                return [_chunk_like(chunk, {"content": emit + held}, None)] if emit + held else []
            released = _with_content(chunk, emit + held)
            return [] if released is None else [released]
        text = emit + parsed.text
        keep = text and (self._prose or parsed.content is not None)  # as repair_completion decides
        out = [_chunk_like(chunk, {"content": text}, None)] if keep else []
        for index, call in enumerate(parsed.calls):
            entry = {"index": index, **openai_tool_call(self._make_id(index), call)}
            out.append(_chunk_like(chunk, {"tool_calls": [entry]}, None))
        last = _with_content(chunk, "", "tool_calls")
        assert last is not None  # it carries a finish_reason
        return [*out, last]

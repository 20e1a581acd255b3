"""Streamed answer translation from chat completion chunks to the Responses API's
typed events (https://platform.openai.com/docs/api-reference/responses-streaming).

    stream = ChatToResponsesStream(frame, names, ItemIds("req1"), completed_at=clock)
    out = stream.feed(chunk)      # encoded events (bytes) for one chat.completion.chunk
    out += stream.finish()        # close open items, then response.completed / incomplete
    stream.fail("upstream went away")  # or response.failed, once, after the commit point

The sequence a client sees: `response.created`, `response.in_progress`, then per
output item `response.output_item.added`, its parts and deltas
(`response.content_part.added`, `response.output_text.delta`…,
`response.output_text.done`, `response.content_part.done`; reasoning as
`response.reasoning_text.delta`/`.done` in a `reasoning_text` part; a function call's
`response.function_call_arguments.delta`…/`.done`; a custom tool's
`response.custom_tool_call_input.delta`/`.done`), `response.output_item.done`, and
last `response.completed` (or `response.incomplete` when the answer hit its
length limit) carrying the whole output and usage. Every event has a
`sequence_number`, counting from 0. One item is open at a time: a new item closes
the one before; arguments for a call already closed are dropped and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from octoroute.core.types import Degradation, DegradationKind
from octoroute.protocols.responses import ToolName, ToolNames, encode_event, obj, responses_usage
from octoroute.protocols.translate_responses_response import (
    ItemIds,
    call_item,
    finish_status,
    message_item,
    reasoning_item,
)


class _Item:
    """The output item being streamed: a message, a reasoning item or a tool call."""

    __slots__ = ("call_id", "chat_name", "id", "index", "kind", "text", "tool_index")

    def __init__(self, kind: str, item_id: str, index: int) -> None:
        self.kind = kind  # "message", "reasoning", "call"
        self.id = item_id
        self.index = index  # output_index
        self.text = ""  # text, reasoning or arguments so far
        self.call_id = ""
        self.chat_name = ""
        self.tool_index = -1


class ChatToResponsesStream:
    """One chat completion stream in, one Responses event stream out."""

    def __init__(
        self, frame: Mapping[str, Any], names: ToolNames, ids: ItemIds, *, completed_at: Callable[[], int]
    ) -> None:
        self._frame = dict(frame)
        self._names = names
        self._ids = ids
        self._completed_at = completed_at
        self._seq = 0
        self._started = False
        self._ended = False
        self._open: _Item | None = None
        self._closed_calls: set[int] = set()
        self._waiting: dict[int, _Item] = {}  # tool calls whose name has not arrived yet
        self.output: list[dict[str, Any]] = []
        self._usage: object = None
        self._finish: object = None
        self.degradations: list[Degradation] = []
        self.response: dict[str, Any] | None = None  # the finished response, once ended

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return encode_event(event)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        frame = self._frame
        return [self._event("response.created", response=frame), self._event("response.in_progress", response=frame)]

    # ------------------------------------------------------------------ items

    def _open_item(self, kind: str, prefix: str) -> tuple[_Item, list[bytes]]:
        out = self._close()
        item = _Item(kind, self._ids.next(prefix), len(self.output))
        self.output.append({})  # its place; filled when it is done
        self._open = item
        if kind == "message":
            added = message_item(item.id, "", "in_progress") | {"content": []}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            added = reasoning_item(item.id, "", "in_progress") | {"content": []}
            part = {"type": "reasoning_text", "text": ""}
        out.append(self._event("response.output_item.added", output_index=item.index, item=added))
        out.append(self._content_part("response.content_part.added", item, part))
        return item, out

    def _content_part(self, kind: str, item: _Item, part: Mapping[str, Any]) -> bytes:
        return self._event(kind, item_id=item.id, output_index=item.index, content_index=0, part=part)

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None:
            return []
        at = {"item_id": item.id, "output_index": item.index}
        if item.kind == "call":
            self._closed_calls.add(item.tool_index)
            done = call_item(item.id, item.call_id, item.chat_name, item.text, self._names)
            if done["type"] == "custom_tool_call":  # its input is known only once the arguments are whole
                events = [
                    self._event("response.custom_tool_call_input.delta", **at, delta=done["input"]),
                    self._event("response.custom_tool_call_input.done", **at, input=done["input"]),
                ]
            else:
                arguments = done["arguments"]
                events = [
                    self._event("response.function_call_arguments.done", **at, name=done["name"], arguments=arguments)
                ]
        elif item.kind == "message":
            done = message_item(item.id, item.text)
            part = done["content"][0]
            events = [
                self._event("response.output_text.done", **at, content_index=0, text=item.text, logprobs=[]),
                self._content_part("response.content_part.done", item, part),
            ]
        else:
            done = reasoning_item(item.id, item.text)
            events = [
                self._event("response.reasoning_text.done", **at, content_index=0, text=item.text),
                self._content_part("response.content_part.done", item, done["content"][0]),
            ]
        self.output[item.index] = done
        events.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return events

    def _text(self, kind: str, prefix: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._open
        if item is None or item.kind != kind:
            item, out = self._open_item(kind, prefix)
        item.text += text
        at = {"item_id": item.id, "output_index": item.index, "content_index": 0, "delta": text}
        if kind == "message":
            out.append(self._event("response.output_text.delta", **at, logprobs=[]))
        else:
            out.append(self._event("response.reasoning_text.delta", **at))
        return out

    def _tool_delta(self, call: Mapping[str, Any]) -> list[bytes]:
        index = call.get("index", 0)
        index = index if isinstance(index, int) else 0
        function = obj(call.get("function"))
        given = function.get("arguments")
        arguments = given if isinstance(given, str) else ""
        item = self._open if self._open is not None and self._open.tool_index == index else self._waiting.get(index)
        if item is None:
            if index in self._closed_calls:
                self.degradations.append(Degradation(DegradationKind.LATE_TOOL_DELTA, f"tool_calls[{index}]"))
                return []
            item = _Item("call", "", -1)
            item.tool_index = index
            self._waiting[index] = item
        call_id, name = call.get("id"), function.get("name")
        if isinstance(call_id, str) and call_id and not item.call_id:
            item.call_id = call_id
        if isinstance(name, str) and name and not item.chat_name:
            item.chat_name = name
        out: list[bytes] = []
        if item.index < 0:  # not announced yet: wait for the name
            item.text += arguments
            if not item.chat_name:
                return []
            out, arguments = self._announce(item), item.text
            item.text = ""
        if arguments:
            item.text += arguments
            if self._names.get(item.chat_name, ToolName("function", "")).kind != "custom":
                at = {"item_id": item.id, "output_index": item.index}
                out.append(self._event("response.function_call_arguments.delta", **at, delta=arguments))
        return out

    def _announce(self, item: _Item) -> list[bytes]:
        self._waiting.pop(item.tool_index, None)
        out = self._close()
        item.id = self._ids.next("fc")
        item.index = len(self.output)
        item.call_id = item.call_id or self._ids.next("call")
        self.output.append({})
        self._open = item
        added = call_item(item.id, item.call_id, item.chat_name, "", self._names, "in_progress")
        if added["type"] == "custom_tool_call":
            added["input"] = ""
        out.append(self._event("response.output_item.added", output_index=item.index, item=added))
        return out

    # ------------------------------------------------------------------ the stream

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """Events for one chat.completion.chunk (an error chunk ends the stream as failed)."""
        if self._ended:
            return []
        out = self._start()
        error = chunk.get("error")
        if error is not None and not chunk.get("choices"):
            message = error.get("message") if isinstance(error, Mapping) else error
            return [*out, self.fail(f"upstream stream error: {message}")]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return out
        choice: Mapping[str, Any] = choices[0]
        delta = obj(choice.get("delta"))
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str) and thought:
            out += self._text("reasoning", "rs", thought)
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self._text("message", "msg", content)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, Mapping):
                out += self._tool_delta(call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        """Close what is open, then the terminal event with the whole response."""
        if self._ended:
            return []
        out = self._start()
        for item in list(self._waiting.values()):  # a call whose name never came: name it as it is
            out += self._announce(item)
        out += self._close()
        if not self.output:  # an empty answer is still one (empty) message
            item, opened = self._open_item("message", "msg")
            out += opened + self._close()
        status, incomplete = finish_status(self._finish)
        response = self._final(status)
        response["incomplete_details"] = incomplete
        self._ended = True
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return out

    def _final(self, status: str) -> dict[str, Any]:
        response = {**self._frame, "status": status, "output": [o for o in self.output if o]}
        response["completed_at"] = self._completed_at() if status == "completed" else None
        response["usage"] = responses_usage(self._usage)
        self.response = response
        return response

    def fail(self, message: str) -> bytes:
        """The one terminal event of a stream that broke after the commit point."""
        if self._ended:
            return b""
        start = b"".join(self._start())
        self._ended = True
        response = self._final("failed")
        response["error"] = {"code": "server_error", "message": message}
        return start + self._event("response.failed", response=response)

"""Output filters for a group's answers: think blocks, reasoning fields, stop markers.

    output = OutputFilter(strip_think=True, drop_reasoning=True, stop_markers=DEFAULT_STOP_MARKERS)
    output.apply_completion(response)            # chat.completion, in place; True if changed

    stream = output.stream()                     # one per response stream
    for chunk in chunks:                         # parsed chat.completion.chunk objects
        if (kept := stream.feed(chunk)) is not None:
            send(kept)
    for chunk in stream.finish():                # on [DONE] or end of body
        send(chunk)

What is removed, the same way whole or chunked (one scanner serves both):
- `<think>...</think>` blocks, wherever they are; a `<think>` that never
  closes removes the rest of the answer (the model ran out of tokens while
  thinking); whitespace right after a removed `</think>` is dropped too, since
  models put a blank line there. A `</think>` with no opening tag is removed
  as a tag only: the text before it has already streamed (templates that open
  the block in the prompt, DeepSeek-R1 style, leak their reasoning; use the
  server's reasoning parser for those).
- the `reasoning_content` / `reasoning` fields of messages and deltas
  (llama.cpp, vLLM, OpenRouter), which the OpenAI schema does not have;
- every occurrence of a stop marker (`<|im_end|>`...), left in by servers
  that do not know the model's template.

Chunks are edited in place. Only the shortest suffix that could still begin a
tag is held back to the next chunk; it goes out with the finish_reason chunk,
or from `finish()`. O(chunk) per chunk: a few `str.find`s, no regex.
Tags that contain another tag other than at their start are not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

THINK_OPEN: Final = "<think>"
THINK_CLOSE: Final = "</think>"
DEFAULT_STOP_MARKERS: Final = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>")
REASONING_FIELDS: Final = ("reasoning_content", "reasoning")


def _proper_prefixes(tags: tuple[str, ...]) -> frozenset[str]:
    return frozenset(tag[:size] for tag in tags for size in range(1, len(tag)))


@dataclass(frozen=True, slots=True)
class _Tags:
    """What the scanner looks for outside and inside a think block, precomputed once."""

    outside: tuple[str, ...]
    outside_prefixes: frozenset[str] = field(init=False)
    close_prefixes: frozenset[str] = field(init=False)
    longest: int = field(init=False)
    starts: str = field(init=False)  # first characters of the tags: text without them is plain

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", "".join({tag[0] for tag in (*self.outside, THINK_CLOSE)}))
        object.__setattr__(self, "outside_prefixes", _proper_prefixes(self.outside))
        object.__setattr__(self, "close_prefixes", _proper_prefixes((THINK_CLOSE,)))
        object.__setattr__(self, "longest", max((len(t) for t in (*self.outside, THINK_CLOSE)), default=0))


def _held_suffix(text: str, start: int, tags: _Tags, prefixes: frozenset[str]) -> int:
    """Length of the longest suffix of `text[start:]` that may begin a tag."""
    for pos in range(max(start, len(text) - tags.longest + 1), len(text)):
        if text[pos] in tags.starts and text[pos:] in prefixes:
            return len(text) - pos
    return 0


class _Scanner:
    """Removes think blocks and markers from one text fed piece by piece."""

    __slots__ = ("_held", "_inside", "_skip_space", "_tags")

    def __init__(self, tags: _Tags) -> None:
        self._tags = tags
        self._held = ""
        self._inside = False
        self._skip_space = False

    def feed(self, piece: str) -> str:
        """The text of `piece` (with what was held) that may go out now."""
        text = self._held + piece if self._held else piece
        self._held = ""
        if not (self._inside or self._skip_space or any(char in text for char in self._tags.starts)):
            return text  # the common case: no tag can start in this piece
        out: list[str] = []
        pos = 0
        while pos < len(text):
            if self._inside:
                close = text.find(THINK_CLOSE, pos)
                if close < 0:
                    held = _held_suffix(text, pos, self._tags, self._tags.close_prefixes)
                    self._held = text[len(text) - held :] if held else ""
                    break
                pos, self._inside, self._skip_space = close + len(THINK_CLOSE), False, True
                continue
            if self._skip_space:
                pos = len(text) - len(text[pos:].lstrip())
                if pos == len(text):
                    break
                self._skip_space = False
            found, tag = self._next_tag(text, pos)
            if not tag:
                held = _held_suffix(text, pos, self._tags, self._tags.outside_prefixes)
                out.append(text[pos : len(text) - held])
                self._held = text[len(text) - held :] if held else ""
                break
            out.append(text[pos:found])
            pos = found + len(tag)
            if tag == THINK_OPEN:
                self._inside = True
            elif tag == THINK_CLOSE:
                self._skip_space = True
        return "".join(out)

    def flush(self) -> str:
        """What was held at the end of the text: not a tag after all (or think text, dropped)."""
        held, self._held = self._held, ""
        return "" if self._inside else held

    def _next_tag(self, text: str, pos: int) -> tuple[int, str]:
        """The first tag at or after `pos` (the longest one when several start there)."""
        best, best_tag = len(text), ""
        for tag in self._tags.outside:
            found = text.find(tag, pos, best + len(tag))
            if found >= 0 and (found < best or len(tag) > len(best_tag)):
                best, best_tag = found, tag
        return best, best_tag


class OutputFilter:
    """A group's output filters; immutable and shared by all its requests."""

    __slots__ = ("_drop_reasoning", "_tags")

    def __init__(self, strip_think: bool, drop_reasoning: bool, stop_markers: tuple[str, ...]) -> None:
        think = (THINK_OPEN, THINK_CLOSE) if strip_think else ()
        markers = tuple(marker for marker in stop_markers if marker)
        self._tags = _Tags((*think, *markers)) if think or markers else None
        self._drop_reasoning = drop_reasoning

    @property
    def active(self) -> bool:
        """False when the filter would never change anything (callers may skip it)."""
        return self._tags is not None or self._drop_reasoning

    def filter_text(self, text: str) -> str:
        """`text` with think blocks and markers removed."""
        if self._tags is None:
            return text
        scanner = _Scanner(self._tags)
        return scanner.feed(text) + scanner.flush()

    def apply_completion(self, response: dict[str, Any]) -> bool:
        """Filter every message of a `chat.completion` in place; True when anything changed."""
        changed = False
        choices = response.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            changed = self._drop_fields(message) or changed
            content = message.get("content")
            if isinstance(content, str) and (filtered := self.filter_text(content)) != content:
                message["content"] = filtered
                changed = True
        return changed

    def stream(self) -> StreamFilter:
        """A new per-stream state."""
        return StreamFilter(self)

    def _drop_fields(self, holder: dict[str, Any]) -> bool:
        if not self._drop_reasoning:
            return False
        return any([holder.pop(name, _MISSING) is not _MISSING for name in REASONING_FIELDS])

    def _scanner(self) -> _Scanner | None:
        return None if self._tags is None else _Scanner(self._tags)


_MISSING: Final = object()
_KEEP_KEYS: Final = ("role", "tool_calls", "function_call", "refusal", *REASONING_FIELDS)


def _is_empty(chunk: Mapping[str, Any]) -> bool:
    """Whether a chunk carries nothing a client needs (no text, role, calls, end or usage)."""
    if chunk.get("usage") is not None:
        return False
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") is not None or choice.get("logprobs"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or any(delta.get(key) for key in _KEEP_KEYS)):
            return False
    return True


class StreamFilter:
    """Filters one stream's chunks; per-choice state, so `n > 1` streams work too."""

    __slots__ = ("_filter", "_scanners", "_template")

    def __init__(self, output: OutputFilter) -> None:
        self._filter = output
        self._scanners: dict[int, _Scanner] = {}
        self._template: Mapping[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk, edited in place; None when filtering left nothing worth sending."""
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return chunk
        self._template = chunk
        touched = False
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                touched = self._filter._drop_fields(delta) or touched
                touched = self._filter_content(choice, delta) or touched
        return None if touched and _is_empty(chunk) else chunk

    def finish(self) -> list[dict[str, Any]]:
        """Held text of choices that never got a finish_reason, as final content chunks."""
        out = []
        for index, scanner in sorted(self._scanners.items()):
            text = scanner.flush()
            if text and self._template is not None:
                chunk = {key: value for key, value in self._template.items() if key not in ("choices", "usage")}
                chunk["choices"] = [{"index": index, "delta": {"content": text}, "finish_reason": None}]
                out.append(chunk)
        self._scanners.clear()
        return out

    def _filter_content(self, choice: dict[str, Any], delta: dict[str, Any]) -> bool:
        index = choice.get("index", 0)
        scanner = self._scanners.get(index)
        if scanner is None:
            if (scanner := self._filter._scanner()) is None:
                return False
            self._scanners[index] = scanner
        content = delta.get("content")
        text = scanner.feed(content) if isinstance(content, str) else ""
        if choice.get("finish_reason") is not None:
            text += scanner.flush()  # this choice ends: what was held is text after all
        if text == content or (content is None and not text):
            return False
        delta["content"] = text
        return True

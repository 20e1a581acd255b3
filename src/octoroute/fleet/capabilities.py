"""What a model can do, and which endpoints can serve what a request needs.

The bundled `capabilities.toml` lists model families (tools, vision, thinking,
context window) matched by shell-style globs on the upstream model name,
case-insensitively, first match wins. Overrides (exact names or patterns, from
config) replace single fields of the family's answer. The file is read once,
when the registry is built; `lookup` is cached per name because it runs per
request.

    registry = CapabilityRegistry.bundled(overrides={"my-finetune*": {"tools": True}})
    needs = selection_needs(call.body)   # tools, images: what endpoint selection prefers
    lacking = missing(needs, registry.lookup(endpoint.name))
"""

from __future__ import annotations

import fnmatch
import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

MISSING_TOOLS: Final = "tools"
MISSING_VISION: Final = "vision"
MISSING_CONTEXT: Final = "context"

_FIELDS: Final = frozenset({"tools", "vision", "thinking", "context_window"})

# Message parts that carry images; their (often base64) payloads are not text.
_IMAGE_PARTS: Final = frozenset({"image_url", "input_image"})
_BINARY_PARTS: Final = _IMAGE_PARTS | {"input_audio", "file", "input_file"}
_CHARS_PER_TOKEN: Final = 4
_DEFAULT_CACHE_LIMIT: Final = 1024


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool
    vision: bool
    thinking: bool
    context_window: int


# What an unknown model is assumed to do when no family matches at all (the
# bundled file ends with a catch-all `*` family holding the same values).
FALLBACK: Final = Capabilities(tools=False, vision=False, thinking=False, context_window=4096)


@dataclass(frozen=True, slots=True)
class Family:
    """One entry of the table: glob patterns (stored lowercased) and their capabilities."""

    name: str
    patterns: tuple[str, ...]
    capabilities: Capabilities

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(p.lower() for p in self.patterns))

    def matches(self, lowered_name: str) -> bool:
        return any(fnmatch.fnmatchcase(lowered_name, p) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request requires of the model serving it."""

    tools: bool = False
    vision: bool = False
    min_context: int = 0  # estimated prompt tokens + requested completion tokens


@dataclass(frozen=True, slots=True)
class _Partial:
    tools: bool | None = None
    vision: bool | None = None
    thinking: bool | None = None
    context_window: int | None = None

    def apply(self, base: Capabilities) -> Capabilities:
        return Capabilities(
            tools=base.tools if self.tools is None else self.tools,
            vision=base.vision if self.vision is None else self.vision,
            thinking=base.thinking if self.thinking is None else self.thinking,
            context_window=base.context_window if self.context_window is None else self.context_window,
        )


def _read_bool(where: str, fields: Mapping[str, object], key: str) -> bool | None:
    value = fields.get(key)
    if key in fields and not isinstance(value, bool):
        raise ValueError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value if isinstance(value, bool) else None


def _read_window(where: str, fields: Mapping[str, object]) -> int | None:
    value = fields.get("context_window")
    if value is None and "context_window" not in fields:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: 'context_window' must be a positive integer (tokens), got {value!r}")
    return value


def _read_partial(where: str, fields: Mapping[str, object]) -> _Partial:
    """The capability fields of `fields`; ValueError naming `where` and the key if one is unknown or mistyped."""
    for key in fields:
        if key not in _FIELDS:
            raise ValueError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(_FIELDS))})")
    return _Partial(
        tools=_read_bool(where, fields, "tools"),
        vision=_read_bool(where, fields, "vision"),
        thinking=_read_bool(where, fields, "thinking"),
        context_window=_read_window(where, fields),
    )


def _parse_override(key: object, fields: object) -> _Partial:
    if not isinstance(key, str) or not key:
        raise ValueError(f"capability override key must be a non-empty model name or pattern, got {key!r}")
    where = f"capability override {key!r}"
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}: expected a table of capabilities, got {type(fields).__name__}")
    if not fields:
        raise ValueError(f"{where}: sets no capability (known: {', '.join(sorted(_FIELDS))})")
    return _read_partial(where, fields)


def _parse_family(index: int, entry: object) -> Family:
    where = f"capability family #{index + 1}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a table, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    where = f"capability family {name!r}"
    patterns = entry.get("patterns")
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{where}: 'patterns' must be a non-empty list of non-empty strings, got {patterns!r}")
    fields = {k: v for k, v in entry.items() if k not in ("name", "patterns")}
    absent = sorted(_FIELDS - fields.keys())
    if absent:
        raise ValueError(f"{where}: missing field(s) {', '.join(absent)}")
    # Every field is present, so applying the partial replaces all of FALLBACK.
    caps = _read_partial(where, fields).apply(FALLBACK)
    return Family(name=name, patterns=tuple(patterns), capabilities=caps)


def parse_families(data: Mapping[str, object]) -> tuple[Family, ...]:
    """Families from a parsed capabilities table (`{"family": [{...}, ...]}`), in file order."""
    entries = data.get("family")
    if not isinstance(entries, list) or not entries:
        raise ValueError("capabilities table: expected a non-empty [[family]] list")
    unknown = sorted(set(data) - {"family"})
    if unknown:
        raise ValueError(f"capabilities table: unknown top-level key(s) {', '.join(map(repr, unknown))}")
    families = tuple(_parse_family(i, entry) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"capability family {family.name!r} appears twice")
        seen.add(family.name)
    return families


@functools.cache  # package data, immutable once parsed: read once per process, not on every config reload
def load_bundled_families() -> tuple[Family, ...]:
    """The families in the `capabilities.toml` shipped with the package."""
    text = resources.files("octoroute.fleet").joinpath("capabilities.toml").read_text(encoding="utf-8")
    return parse_families(tomllib.loads(text))


class CapabilityRegistry:
    """Model name → `Capabilities`: overrides first (exact name, then patterns in order), then families.

    Only one override applies to a name: its fields replace the matching
    family's (or the fallback's). All matching is case-insensitive.
    """

    __slots__ = ("_cache", "_cache_limit", "_exact", "_families", "_patterns")

    def __init__(
        self,
        families: Iterable[Family],
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        *,
        cache_limit: int = _DEFAULT_CACHE_LIMIT,
    ) -> None:
        if cache_limit < 1:
            raise ValueError(f"cache_limit must be at least 1, got {cache_limit}")
        self._families = tuple(families)
        self._exact: dict[str, _Partial] = {}
        self._patterns: list[tuple[str, _Partial]] = []
        for key, fields in (overrides or {}).items():
            partial = _parse_override(key, fields)
            lowered = key.lower()
            self._exact.setdefault(lowered, partial)
            self._patterns.append((lowered, partial))
        self._cache: dict[str, Capabilities] = {}
        self._cache_limit = cache_limit

    @classmethod
    def bundled(cls, overrides: Mapping[str, Mapping[str, object]] | None = None) -> CapabilityRegistry:
        """The registry of the shipped `capabilities.toml`, with `overrides` on top."""
        return cls(load_bundled_families(), overrides)

    @property
    def families(self) -> tuple[Family, ...]:
        return self._families

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def lookup(self, model_name: str) -> Capabilities:
        """The capabilities of `model_name` (an endpoint's upstream model name)."""
        caps = self._cache.get(model_name)
        if caps is None:
            caps = self._resolve(model_name.lower())
            # Names may come from clients: bound the cache, evicting the oldest entry.
            if len(self._cache) >= self._cache_limit:
                del self._cache[next(iter(self._cache))]
            self._cache[model_name] = caps
        return caps

    def family_of(self, model_name: str) -> Family | None:
        """The first family matching `model_name`, if any (overrides do not count)."""
        lowered = model_name.lower()
        return next((f for f in self._families if f.matches(lowered)), None)

    def known_window(self, model_name: str) -> int | None:
        """The context window of `model_name` when a family or an override names one;
        None for a model the table does not know (the fallback's 4096 is only a guess)."""
        lowered = model_name.lower()
        partial = self._exact.get(lowered) or next(
            (p for pat, p in self._patterns if fnmatch.fnmatchcase(lowered, pat)), None
        )
        family = self.family_of(lowered)
        guessed = family is None or "*" in family.patterns  # no family, or only the catch-all
        if guessed and (partial is None or partial.context_window is None):
            return None
        return self.lookup(model_name).context_window

    def _resolve(self, lowered: str) -> Capabilities:
        family = self.family_of(lowered)
        base = FALLBACK if family is None else family.capabilities
        partial = self._exact.get(lowered)
        if partial is None:
            partial = next((p for pat, p in self._patterns if fnmatch.fnmatchcase(lowered, pat)), None)
        return base if partial is None else partial.apply(base)


def missing(needs: Needs, caps: Capabilities) -> frozenset[str]:
    """What `caps` lacks to serve `needs`: a subset of {"tools", "vision", "context"}."""
    out: set[str] = set()
    if needs.tools and not caps.tools:
        out.add(MISSING_TOOLS)
    if needs.vision and not caps.vision:
        out.add(MISSING_VISION)
    if needs.min_context > caps.context_window:
        out.add(MISSING_CONTEXT)
    return frozenset(out)


def _positive_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _scan_messages(messages: object) -> tuple[int, bool]:
    """(characters of text, whether any image part occurs), walking iteratively.

    Binary parts (images, audio, files) are skipped: a base64 data URL is not
    prompt text, and counting it would claim a huge context.
    """
    chars = 0
    vision = False
    stack: list[object] = [messages]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            part_type = item.get("type")
            if part_type in _BINARY_PARTS:
                vision = vision or part_type in _IMAGE_PARTS
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return chars, vision


def selection_needs(body: Mapping[str, object]) -> Needs:
    """The needs endpoint selection acts on (tools, images), found without walking
    text: a message whose content is a string cannot carry an image. Per request,
    so cheaper than `needs_of`."""
    tools = bool(body.get("tools")) and body.get("tool_choice") != "none"
    messages = body.get("messages")
    vision = isinstance(messages, list) and any(
        isinstance(part, Mapping) and part.get("type") in _IMAGE_PARTS
        for message in messages
        if isinstance(message, Mapping) and isinstance(message.get("content"), list)
        for part in message["content"]
    )
    return Needs(tools=tools, vision=vision)


def needs_of(body: Mapping[str, object]) -> Needs:
    """The needs of an OpenAI chat completions body.

    tools: `tools` (or legacy `functions`) present and not disabled by
    `tool_choice` / `function_call` = "none"; vision: any `image_url` or
    `input_image` part; min_context: text characters / 4 (messages and tool
    definitions) plus `max_completion_tokens` or `max_tokens`, whichever is
    larger.
    """
    tools = bool(body.get("tools")) and body.get("tool_choice") != "none"
    functions = bool(body.get("functions")) and body.get("function_call") != "none"
    chars, vision = _scan_messages(body.get("messages"))
    tool_chars, _ = _scan_messages([body.get("tools"), body.get("functions")])
    prompt_tokens = -(-(chars + tool_chars) // _CHARS_PER_TOKEN)
    completion = max(_positive_int(body.get("max_completion_tokens")), _positive_int(body.get("max_tokens")))
    return Needs(tools=tools or functions, vision=vision, min_context=prompt_tokens + completion)

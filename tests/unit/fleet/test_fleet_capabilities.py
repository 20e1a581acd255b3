"""Capability registry: the bundled table, lookups, overrides, request needs and endpoint ranking."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources

import pytest

from octoroute.config import EndpointSpec, ResolvedTimeouts
from octoroute.fleet.capabilities import (
    FALLBACK,
    Capabilities,
    CapabilityRegistry,
    Family,
    Needs,
    missing,
    needs_of,
    parse_families,
)

BUNDLED = CapabilityRegistry.bundled()


def ep(ep_id: str, model: str) -> EndpointSpec:
    return EndpointSpec(
        id=ep_id,
        group="fast",
        name=model,
        base_url=f"http://{ep_id}:8000/v1",
        weight=1.0,
        priority=1,
        max_tokens=None,
        temperature=None,
        api_key=None,
        timeouts=ResolvedTimeouts(connect=1.0, first_byte=5.0, total=30.0),
    )


def caps(*, tools: bool = False, vision: bool = False, thinking: bool = False, window: int = 8192) -> Capabilities:
    return Capabilities(tools=tools, vision=vision, thinking=thinking, context_window=window)


# --- the bundled file ---------------------------------------------------------


def test_bundled_file_parses_and_every_entry_is_valid() -> None:
    text = resources.files("octoroute.fleet").joinpath("capabilities.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    families = parse_families(raw)
    assert len(families) == len(raw["family"])
    for family in families:
        assert family.patterns, family.name
        assert family.capabilities.context_window >= 2048, family.name
    assert families[-1].name == "default"
    assert families[-1].patterns == ("*",)
    assert families[-1].capabilities == FALLBACK


# One representative name per family, in the spellings people use (Ollama tags,
# Hugging Face ids, GGUF files). Every family must be reachable: an entry shadowed
# by a broader pattern above it would fail here.
SAMPLES = {
    "deepseek-r1": "deepseek-r1:8b",
    "deepseek-v3.1": "deepseek-v3.1:671b",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3-0324",
    "deepseek-coder-v2": "deepseek-coder-v2:16b",
    "deepseek-coder": "deepseek-coder:6.7b",
    "llava-llama3": "llava-llama3:8b",
    "llava": "llava:13b",
    "gpt-oss": "gpt-oss:20b",
    "qwen3-vl-thinking": "Qwen/Qwen3-VL-8B-Thinking",
    "qwen3-vl": "qwen3-vl:8b",
    "qwen3-coder": "qwen3-coder:30b",
    "qwen3-thinking-2507": "Qwen3-30B-A3B-Thinking-2507",
    "qwen3-instruct-2507": "Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf",
    "qwen3": "qwen3:8b",
    "qwq": "qwq:32b",
    "qwen2.5-vl": "qwen2.5vl:7b",
    "qwen2.5-coder": "qwen2.5-coder:7b",
    "qwen2.5": "qwen2.5:14b-instruct",
    "llama3.2-vision": "llama3.2-vision:11b",
    "llama3.1+": "meta-llama/Llama-3.1-8B-Instruct",
    "llama3": "llama3:8b",
    "devstral": "mistralai/Devstral-Small-2505",
    "codestral": "codestral:22b",
    "ministral": "Ministral-8B-Instruct-2410",
    "magistral": "magistral:24b",
    "mixtral-8x22b": "mixtral:8x22b",
    "mixtral": "mixtral:8x7b",
    "mistral-small-3.1+": "mistral-small3.1:24b",
    "mistral-small": "mistral-small:22b",
    "mistral-nemo": "mistral-nemo:12b",
    "mistral-large": "mistral-large:123b",
    "mistral": "mistral:7b",
    "gemma3n": "gemma3n:e4b",
    "gemma3-small": "gemma3:1b",
    "gemma3": "gemma3:12b",
    "gemma2": "gemma2:9b",
    "phi4-mini-reasoning": "phi4-mini-reasoning:3.8b",
    "phi4-reasoning": "phi4-reasoning:14b",
    "phi4-multimodal": "microsoft/Phi-4-multimodal-instruct",
    "phi4-mini": "phi4-mini:3.8b",
    "phi4": "phi4:14b",
    "phi3-vision": "microsoft/Phi-3.5-vision-instruct",
    "phi3-128k": "phi3:medium-128k",
    "phi3": "phi3:mini",
    "granite-vision": "granite3.2-vision:2b",
    "granite-code": "granite-code:8b",
    "granite3.0": "granite3-dense:8b",
    "granite": "granite3.3:8b",
    "command-r": "command-r7b:7b",
    "smollm2": "smollm2:1.7b",
    "default": "some-unknown-model",
}


def test_every_bundled_family_is_reachable() -> None:
    assert set(SAMPLES) == {f.name for f in BUNDLED.families}
    for family_name, model in SAMPLES.items():
        family = BUNDLED.family_of(model)
        assert family is not None
        assert family.name == family_name, model


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qwen2.5-coder:7b", caps(tools=True, window=32768)),
        ("llava:13b", caps(vision=True, window=4096)),
        ("deepseek-r1:8b", caps(thinking=True, window=131072)),
        # The R1 distill is R1, not its Qwen3 base.
        ("DeepSeek-R1-0528-Qwen3-8B", caps(thinking=True, window=131072)),
        ("qwen3:8b", caps(tools=True, thinking=True, window=32768)),
        ("gpt-oss:120b", caps(tools=True, thinking=True, window=131072)),
        ("llama3.2-vision:11b", caps(vision=True, window=131072)),
        ("llama3.2:3b", caps(tools=True, window=131072)),
        ("gemma3:27b", caps(vision=True, window=131072)),
        ("unknown-model", FALLBACK),
    ],
)
def test_lookup_of_known_families(model: str, expected: Capabilities) -> None:
    assert BUNDLED.lookup(model) == expected


@pytest.mark.parametrize(
    "model", ["QWEN2.5-CODER:7B", "Qwen/Qwen2.5-Coder-7B-Instruct", "qwen2.5-coder-7b-instruct-q4_k_m.gguf"]
)
def test_lookup_is_case_insensitive_and_spelling_tolerant(model: str) -> None:
    assert BUNDLED.lookup(model) == BUNDLED.lookup("qwen2.5-coder:7b")


def test_patterns_are_matched_case_insensitively_and_first_match_wins() -> None:
    registry = CapabilityRegistry(
        [
            Family("specific", ("*Coder*",), caps(tools=True)),
            Family("broad", ("*",), caps(vision=True)),
        ]
    )
    assert registry.lookup("my-coder") == caps(tools=True)
    assert registry.lookup("MY-CODER") == caps(tools=True)
    assert registry.lookup("chat") == caps(vision=True)


def test_no_matching_family_gives_the_fallback() -> None:
    registry = CapabilityRegistry([Family("only", ("llava*",), caps(vision=True))])
    assert registry.lookup("mistral") == FALLBACK


# --- overrides -----------------------------------------------------------------


def test_overrides_win_over_families_field_by_field() -> None:
    registry = CapabilityRegistry.bundled(
        overrides={"llava*": {"tools": True}, "my-finetune": {"vision": True, "context_window": 65536}}
    )
    assert registry.lookup("llava:13b") == caps(tools=True, vision=True, window=4096)
    assert registry.lookup("LLaVA:7b") == caps(tools=True, vision=True, window=4096)
    assert registry.lookup("my-finetune") == caps(vision=True, window=65536)
    assert registry.lookup("MY-FINETUNE") == caps(vision=True, window=65536)
    assert registry.lookup("my-finetune-2") == FALLBACK  # an exact name is not a prefix
    assert registry.lookup("qwen3:8b") == BUNDLED.lookup("qwen3:8b")


def test_exact_override_beats_an_earlier_pattern() -> None:
    registry = CapabilityRegistry.bundled(overrides={"qwen3*": {"tools": False}, "qwen3:8b": {"thinking": False}})
    assert registry.lookup("qwen3:8b") == caps(tools=True, thinking=False, window=32768)
    assert registry.lookup("qwen3:4b") == caps(tools=False, thinking=True, window=32768)


def test_first_matching_override_pattern_wins() -> None:
    registry = CapabilityRegistry.bundled(overrides={"gemma*": {"tools": True}, "gemma3*": {"vision": False}})
    assert registry.lookup("gemma3:12b") == caps(tools=True, vision=True, window=131072)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x": {"tools": "yes"}}, "capability override 'x': 'tools' must be true or false, got 'yes'"),
        ({"x": {"vision": 1}}, "capability override 'x': 'vision' must be true or false"),
        ({"x": {"context_window": True}}, "capability override 'x': 'context_window' must be a positive integer"),
        ({"x": {"context_window": 0}}, "capability override 'x': 'context_window' must be a positive integer"),
        ({"x": {"context_window": "8k"}}, "capability override 'x': 'context_window' must be a positive integer"),
        ({"x": {"tool": True}}, "capability override 'x': unknown field 'tool'"),
        ({"x": {}}, "capability override 'x': sets no capability"),
        ({"x": ["tools"]}, "capability override 'x': expected a table"),
        ({"": {"tools": True}}, "capability override key must be a non-empty"),
    ],
)
def test_invalid_overrides_are_rejected_naming_the_key(
    overrides: Mapping[str, Mapping[str, object]], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        CapabilityRegistry.bundled(overrides)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"patterns": ["*"], "tools": True}, "capability family #1: 'name' must be"),
        ({"name": "a", "patterns": [], "tools": True}, "capability family 'a': 'patterns' must be"),
        ({"name": "a", "patterns": ["*"], "tools": True}, "capability family 'a': missing field"),
        (
            {"name": "a", "patterns": ["*"], "tools": 1, "vision": False, "thinking": False, "context_window": 1},
            "capability family 'a': 'tools' must be true or false",
        ),
        (
            {
                "name": "a",
                "patterns": ["*"],
                "tools": True,
                "vision": False,
                "thinking": False,
                "context_window": 1,
                "x": 1,
            },
            "capability family 'a': unknown field 'x'",
        ),
    ],
)
def test_invalid_family_entries_are_rejected(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_families({"family": [entry]})


def test_duplicate_family_names_are_rejected() -> None:
    entry = {"name": "a", "patterns": ["*"], "tools": True, "vision": False, "thinking": False, "context_window": 1}
    with pytest.raises(ValueError, match="'a' appears twice"):
        parse_families({"family": [entry, entry]})


# --- the cache -----------------------------------------------------------------


def test_lookup_is_cached_per_name() -> None:
    registry = CapabilityRegistry.bundled()
    first = registry.lookup("qwen3:8b")
    assert registry.cache_size == 1
    assert registry.lookup("qwen3:8b") is first
    assert registry.cache_size == 1
    registry.lookup("llava:13b")
    assert registry.cache_size == 2


def test_cache_answers_without_matching_again(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CapabilityRegistry.bundled()
    expected = registry.lookup("qwen3:8b")
    monkeypatch.setattr(Family, "matches", lambda self, name: pytest.fail("matched again"))
    assert registry.lookup("qwen3:8b") == expected


def test_cache_is_bounded() -> None:
    registry = CapabilityRegistry(BUNDLED.families, cache_limit=2)
    for name in ("a", "b", "c", "qwen3:8b"):
        registry.lookup(name)
    assert registry.cache_size == 2
    assert registry.lookup("qwen3:8b") == BUNDLED.lookup("qwen3:8b")


# --- needs_of ------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
PNG = "data:image/png;base64," + "A" * 400_000


def test_needs_of_plain_text() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x" * 396}]}
    # 396 characters + 4 for the role: 100 tokens.
    assert needs_of(body) == Needs(tools=False, vision=False, min_context=100)


def test_needs_of_adds_the_requested_completion_tokens() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 396}], "max_tokens": 1000}
    assert needs_of(body).min_context == 1100
    body = {"messages": [{"role": "user", "content": "x" * 396}], "max_tokens": 10, "max_completion_tokens": 2000}
    assert needs_of(body).min_context == 2100
    body = {"messages": [{"role": "user", "content": "x" * 396}], "max_tokens": "lots"}
    assert needs_of(body).min_context == 100


@pytest.mark.parametrize(
    ("extra", "wants_tools"),
    [
        ({"tools": TOOLS}, True),
        ({"tools": TOOLS, "tool_choice": "auto"}, True),
        ({"tools": TOOLS, "tool_choice": "required"}, True),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, True),
        ({"tools": TOOLS, "tool_choice": "none"}, False),
        ({"tools": []}, False),
        ({"functions": [{"name": "f"}]}, True),
        ({"functions": [{"name": "f"}], "function_call": "none"}, False),
    ],
)
def test_needs_of_tools(extra: dict[str, object], wants_tools: bool) -> None:
    body = {"messages": [{"role": "user", "content": "weather?"}], **extra}
    assert needs_of(body).tools is wants_tools


def test_tool_definitions_count_toward_the_context_even_when_disabled() -> None:
    plain = needs_of({"messages": [{"role": "user", "content": "hi"}]})
    with_tools = needs_of({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": "none"})
    assert with_tools.min_context > plain.min_context


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "input_image", "image_url": PNG},
    ],
)
def test_needs_of_images(part: dict[str, object]) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]}
    needs = needs_of(body)
    assert needs.vision is True
    assert needs.tools is False
    # The base64 payload is not prompt text.
    assert needs.min_context < 100


def test_needs_of_text_parts_and_tool_history_without_images() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x" * 4000}]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "y" * 4000}}]},
            {"role": "tool", "tool_call_id": "1", "content": "z" * 4000},
        ]
    }
    needs = needs_of(body)
    assert needs.vision is False
    assert 3000 <= needs.min_context < 3100


def test_needs_of_tolerates_odd_bodies() -> None:
    assert needs_of({}) == Needs()
    assert needs_of({"messages": "nope", "tools": None}) == Needs(min_context=1)


# --- missing ------------------------------------------------


def test_missing_names_what_an_endpoint_lacks() -> None:
    needs = Needs(tools=True, vision=True, min_context=10_000)
    assert missing(needs, caps(window=8192)) == {"tools", "vision", "context"}
    assert missing(needs, caps(tools=True, vision=True, window=10_000)) == frozenset()
    assert missing(needs, caps(tools=True, window=32768)) == {"vision"}
    assert missing(Needs(), FALLBACK) == frozenset()

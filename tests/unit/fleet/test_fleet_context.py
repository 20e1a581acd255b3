"""The token estimate, the window book and one request's context gate."""

from __future__ import annotations

import pytest

from octoroute.config.topology import EndpointSpec, ResolvedTimeouts
from octoroute.core.facts import FactSource, ServerFacts, WindowSource
from octoroute.fleet.capabilities import CapabilityRegistry
from octoroute.fleet.context import (
    DEFAULT_OUTPUT_TOKENS,
    MIN_OUTPUT_TOKENS,
    ContextBook,
    ContextGate,
    Window,
    estimate_prompt_tokens,
    requested_output,
)


def ep(ep_id: str, group: str = "fast", *, window: int | None = None, max_tokens: int | None = None) -> EndpointSpec:
    return EndpointSpec(
        id=ep_id,
        group=group,
        name=ep_id,
        base_url="http://127.0.0.1:1/v1",
        weight=1.0,
        priority=1,
        max_tokens=max_tokens,
        temperature=None,
        api_key=None,
        timeouts=ResolvedTimeouts(1.0, 5.0, 30.0),
        context_window=window,
    )


TABLE = {"small": 2048, "mid": 8192, "big": 32768}


def book(*eps: EndpointSpec) -> ContextBook:
    return ContextBook(eps, TABLE.get)


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"messages": [{"role": "user", "content": "x" * 400}]}, 100 + 1 + 4),
        ({"messages": [{"role": "user", "content": "日本語のテキスト" * 10}]}, 80 + 1 + 4),  # one token per CJK char
        ({"messages": [{"role": "user", "content": "hé" * 200}]}, 100 + 1 + 4),  # accented Latin stays /4
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "y" * 40},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
                        ],
                    }
                ]
            },
            1 + 1 + 10 + 4,  # "user", "text" and the text; the image's base64 is not prompt text
        ),
        ({"messages": [], "tools": [{"type": "function", "function": {"name": "f" * 40}}]}, 2 + 10),
    ],
    ids=["ascii", "cjk", "latin", "image", "tools"],
)
def test_prompt_estimate(body: dict[str, object], tokens: int) -> None:
    assert estimate_prompt_tokens(body) == tokens


def test_requested_output() -> None:
    assert requested_output({"max_tokens": 100}) == 100
    assert requested_output({"max_completion_tokens": 50, "max_tokens": 100}) == 50
    assert requested_output({"max_tokens": True}) is None
    assert requested_output({}) is None


def test_the_book_prefers_config_then_discovery_then_the_table() -> None:
    configured, discovered, looked_up, unknown = ep("small", window=1000), ep("mid"), ep("big"), ep("mystery")
    b = book(configured, discovered, looked_up, unknown)
    b.learn("small", ServerFacts(FactSource.LLAMA_PROPS, context_window=4096, total_slots=2))
    b.learn("mid", ServerFacts(FactSource.VLLM_MODELS, context_window=16384))
    assert b.window("small") == Window(1000, WindowSource.CONFIG)
    assert b.facts("small") == ServerFacts(FactSource.LLAMA_PROPS, context_window=4096, total_slots=2)
    assert b.window("mid") == Window(16384, WindowSource.DISCOVERED, FactSource.VLLM_MODELS)
    assert b.window("big") == Window(32768, WindowSource.TABLE)
    assert b.window("mystery") == Window(None, WindowSource.UNKNOWN)
    b.learn_window("mid", 8000)
    assert b.window("mid") == Window(8000, WindowSource.DISCOVERED, FactSource.OVERFLOW_ERROR)
    assert b.learn("mid", ServerFacts(FactSource.VLLM_MODELS, context_window=16384))  # rediscovered: replaces it
    assert b.tokens("mid") == 16384
    assert not b.learn("mid", ServerFacts(FactSource.VLLM_MODELS, context_window=16384))


def test_the_gate_skips_endpoints_the_request_cannot_fit() -> None:
    small, mid, big = ep("small"), ep("mid"), ep("big")
    gate = ContextGate(book(small, mid, big), (small, mid, big), prompt_tokens=3000, requested=100)
    assert not gate.allows("small")
    assert gate.allows("mid")
    assert gate.allows("big")
    assert gate.skipped == {"small": "fast"}
    assert gate.escalating
    assert gate.rejection() is None


def test_the_endpoint_max_tokens_or_a_default_is_the_output_without_a_request_value() -> None:
    capped, plain = ep("small", max_tokens=1000), ep("mid")
    gate = ContextGate(book(capped, plain), (capped, plain), prompt_tokens=1000, requested=None)
    assert gate.output_for(capped) == 1000
    assert gate.output_for(plain) == DEFAULT_OUTPUT_TOKENS
    assert gate.allows("small")  # 1000 + 1000 <= 2048


def test_when_the_output_fits_nowhere_only_a_minimum_is_kept() -> None:
    small, mid = ep("small"), ep("mid")
    gate = ContextGate(book(small, mid), (small, mid), prompt_tokens=1500, requested=32000)
    assert gate.output_for(mid) == MIN_OUTPUT_TOKENS
    assert gate.allows("small")  # 1500 + 256 <= 2048: the server may cut the answer short
    assert gate.allows("mid")
    assert not gate.skipped


def test_unknown_windows_are_always_tried() -> None:
    mystery = ep("mystery")
    gate = ContextGate(book(mystery), (mystery,), prompt_tokens=500_000, requested=100)
    assert gate.allows("mystery")
    assert gate.rejection() is None


def test_an_overflow_teaches_the_count_and_the_window() -> None:
    small, mid, big = ep("small"), ep("mid"), ep("big")
    b = book(small, mid, big)
    gate = ContextGate(b, (small, mid, big), prompt_tokens=1500, requested=100)
    assert gate.allows("small")
    gate.record_overflow("small", prompt_tokens=9000, window=1800)
    assert gate.exact
    assert gate.prompt_tokens == 9000
    assert b.tokens("small") == 1800
    assert not gate.allows("small")
    assert not gate.allows("mid")  # 9000 + 100 > 8192
    assert gate.allows("big")
    gate.record_overflow("big", prompt_tokens=40000, window=32768)
    rejection = gate.rejection()
    assert rejection is not None
    assert rejection.prompt_tokens == 40000
    assert rejection.largest_window == 32768
    assert "counted by the upstream" in rejection.message


def test_an_overflow_without_sizes_rules_out_that_window() -> None:
    mid, other_mid, big = ep("mid"), ep("other", window=8192), ep("big")
    gate = ContextGate(book(mid, other_mid, big), (mid, other_mid, big), prompt_tokens=1000, requested=100)
    gate.record_overflow("mid", None, None)
    assert not gate.allows("other")  # the same size cannot hold it either
    assert gate.allows("big")


def test_escalation_groups_open_only_once_the_request_was_found_too_large() -> None:
    small, elsewhere = ep("small"), ep("big", group="other")
    gate = ContextGate(
        book(small, elsewhere), (small, elsewhere), prompt_tokens=100, requested=100, escalation_groups=["other"]
    )
    assert not gate.allows("big")
    gate.record_overflow("small", 5000, 2048)
    assert gate.allows("big")


def test_the_table_gives_a_window_only_for_models_it_knows() -> None:
    registry = CapabilityRegistry.bundled({"my-finetune*": {"context_window": 12000}, "my-tools": {"tools": True}})
    assert registry.known_window("Qwen2.5-Coder-7B-Instruct") == 32768
    assert registry.known_window("my-finetune-v2") == 12000
    assert registry.known_window("my-tools") is None  # an override that says nothing of the window
    assert registry.known_window("tiny") is None  # only the catch-all family matches


def test_the_estimate_is_made_only_when_a_known_window_needs_it() -> None:
    mystery, small = ep("mystery"), ep("small")

    def never() -> int:
        raise AssertionError("estimated without need")

    assert ContextGate(book(mystery), (mystery,), never, requested=100).allows("mystery")
    asked: list[int] = []
    gate = ContextGate(book(small), (small,), lambda: asked.append(1) or 5000, requested=100)
    assert not gate.allows("small")
    assert not gate.allows("small")
    assert asked == [1]


def test_the_book_version_moves_when_a_window_may_have_changed() -> None:
    b = book(ep("small"))
    before = b.version
    b.learn("small", ServerFacts(FactSource.LLAMA_PROPS, total_slots=2))
    b.learn_window("small", 1000)
    assert b.version == before + 2
    b.mark_silent("small")
    assert b.version == before + 2


def test_estimate_reads_tool_schemas_with_a_property_named_type() -> None:
    """Codex's tools declare a parameter called `type`: its schema is an object, not a part type."""
    schema = {"type": "object", "properties": {"type": {"type": "string", "description": "agent kind"}}}
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"parameters": schema}}],
    }
    assert estimate_prompt_tokens(body) > estimate_prompt_tokens({"messages": body["messages"]})

"""Hypothesis strategies for client request bodies: arbitrary JSON and
structurally plausible Chat Completions / Messages bodies with wrong types,
missing and extra fields, huge and unusual strings and deep nesting."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Bounded so `make test` stays within minutes; `deadline=None`: a loaded machine is not a failure.
# More: OCTOROUTE_HYPOTHESIS_EXAMPLES=2000 make test.
BOUNDED = settings(
    max_examples=int(os.environ.get("OCTOROUTE_HYPOTHESIS_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


odd_strings = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),  # any code point UTF-8 can carry, surrogates excluded
    st.sampled_from(["", " ", "\x00", "\u202e", "🦀" * 50, "x" * 100_000, "<|im_end|>", "[DONE]", "\r\n\r\n"]),
)
anything = st.one_of(json_values, odd_strings, st.integers(min_value=1, max_value=120).map(nested))


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, one time in twelve anything at all (so that whole bodies are often valid)."""

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(anything) if draw(st.integers(0, 11)) == 5 else draw(valid)  # not 0: hypothesis favours bounds

    return pick()


def body_with(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]) -> Any:
    """A dict with each required field (sometimes dropped), some optional ones, and extras."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key, strategy in required.items():
            if draw(st.integers(0, 19)) != 7:  # a required field is missing one time in twenty
                body[key] = draw(strategy)
        for key, strategy in optional.items():
            if draw(st.booleans()):
                body[key] = draw(strategy)
        body.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
        return body

    return build()


roles = maybe(st.sampled_from(["user", "assistant", "system", "developer", "tool"]))
openai_part = maybe(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": maybe(odd_strings)}),
        st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": maybe(st.fixed_dictionaries({"url": maybe(odd_strings)}))}
        ),
    )
)
tool_call = maybe(
    st.fixed_dictionaries(
        {
            "id": maybe(odd_strings),
            "type": maybe(st.just("function")),
            "function": maybe(st.fixed_dictionaries({"name": maybe(odd_strings), "arguments": maybe(odd_strings)})),
        }
    )
)
openai_message = maybe(
    body_with(
        {"role": roles, "content": maybe(odd_strings | st.lists(openai_part, max_size=3))},
        {"name": maybe(odd_strings), "tool_calls": maybe(st.lists(tool_call, max_size=2)), "tool_call_id": anything},
    )
)
openai_tool = maybe(
    st.fixed_dictionaries(
        {
            "type": maybe(st.just("function")),
            "function": maybe(
                st.fixed_dictionaries({"name": maybe(odd_strings), "parameters": maybe(st.just({"type": "object"}))})
            ),
        }
    )
)
numbers = maybe(st.integers(min_value=1, max_value=4000) | st.floats(min_value=0, max_value=1))

chat_bodies = body_with(
    {
        "model": maybe(st.sampled_from(["fast", "auto", "m", "fast", "nope"])),
        "messages": maybe(st.lists(openai_message, max_size=4)),
    },
    {
        "stream": maybe(st.booleans()),
        "max_tokens": numbers,
        "max_completion_tokens": numbers,
        "temperature": numbers,
        "top_p": numbers,
        "n": numbers,
        "stop": maybe(odd_strings | st.lists(odd_strings, max_size=3)),
        "tools": maybe(st.lists(openai_tool, max_size=2)),
        "tool_choice": maybe(st.sampled_from(["auto", "none", "required"])),
        "stream_options": maybe(st.fixed_dictionaries({"include_usage": maybe(st.booleans())})),
        "response_format": anything,
        "metadata": anything,
        "user": maybe(odd_strings),
    },
)

anthropic_block = maybe(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": maybe(odd_strings)}),
        st.fixed_dictionaries(
            {"type": st.just("tool_use"), "id": maybe(odd_strings), "name": maybe(odd_strings), "input": anything}
        ),
        st.fixed_dictionaries(
            {"type": st.just("tool_result"), "tool_use_id": maybe(odd_strings), "content": maybe(odd_strings)}
        ),
        st.fixed_dictionaries({"type": st.just("thinking"), "thinking": maybe(odd_strings)}),
        st.fixed_dictionaries(
            {
                "type": st.just("image"),
                "source": maybe(st.fixed_dictionaries({"type": st.just("base64"), "data": maybe(odd_strings)})),
            }
        ),
    )
)
anthropic_message = maybe(
    body_with(
        {
            "role": maybe(st.sampled_from(["user", "assistant"])),
            "content": maybe(odd_strings | st.lists(anthropic_block, max_size=3)),
        },
        {},
    )
)
anthropic_tool = maybe(
    body_with(
        {"name": maybe(odd_strings), "input_schema": maybe(st.just({"type": "object"}) | anything)},
        {"description": anything},
    )
)

messages_bodies = body_with(
    {
        "model": maybe(st.sampled_from(["fast", "auto", "m", "fast", "nope"])),
        "max_tokens": numbers,
        "messages": maybe(st.lists(anthropic_message, max_size=4)),
    },
    {
        "stream": maybe(st.booleans()),
        "system": maybe(odd_strings | st.lists(anthropic_block, max_size=2)),
        "temperature": numbers,
        "top_k": numbers,
        "stop_sequences": maybe(st.lists(odd_strings, max_size=3)),
        "tools": maybe(st.lists(anthropic_tool, max_size=2)),
        "tool_choice": maybe(st.fixed_dictionaries({"type": maybe(st.sampled_from(["auto", "any", "tool", "none"]))})),
        "thinking": maybe(st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": numbers})),
        "metadata": anything,
    },
)

native_bodies = body_with(
    {"prompt": maybe(odd_strings)},
    {"temperature": numbers, "max_tokens": numbers, "tier": anything, "model": anything},
)

texts = maybe(odd_strings | st.lists(maybe(odd_strings), max_size=4))
token_ids = maybe(st.lists(st.integers(min_value=-5, max_value=70_000), max_size=6))
embeddings_bodies = body_with(
    {
        "model": maybe(st.sampled_from(["embed", "olla", "auto", "fast", "nope", "embed:latest"])),
        "input": maybe(texts | token_ids | st.lists(token_ids, max_size=3)),
    },
    {
        "encoding_format": maybe(st.sampled_from(["float", "base64"])),
        "dimensions": numbers,
        "user": maybe(odd_strings),
        "stream": maybe(st.booleans()),
    },
)
ollama_embed_bodies = body_with(
    {"model": maybe(st.sampled_from(["embed", "olla:latest", "fast", "nope"])), "input": texts},
    {"prompt": maybe(odd_strings), "truncate": anything, "options": anything, "keep_alive": anything},
)
completions_bodies = body_with(
    {
        "model": maybe(st.sampled_from(["fast", "coder", "auto", "embed", "nope"])),
        "prompt": maybe(texts | token_ids | st.lists(token_ids, max_size=3)),
    },
    {
        "suffix": maybe(odd_strings),
        "stream": maybe(st.booleans()),
        "max_tokens": numbers,
        "temperature": numbers,
        "stop": maybe(odd_strings | st.lists(odd_strings, max_size=3)),
        "stream_options": maybe(st.fixed_dictionaries({"include_usage": maybe(st.booleans())})),
        "echo": anything,
    },
)

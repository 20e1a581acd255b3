"""Context-overflow answers of llama.cpp, vLLM, OpenAI, Anthropic and Ollama are
recognised with the sizes they state; other errors are not."""

from __future__ import annotations

import json

import pytest

from octoroute.protocols.overflow import Overflow, read_overflow

LLAMA = (
    b'{"error":{"code":400,"message":"request (24046 tokens) exceeds the available context size (2048 tokens), '
    b'try increasing it","type":"exceed_context_size_error","n_prompt_tokens":24046,"n_ctx":2048}}'
)
VLLM_CHARS = (
    b'{"error":{"message":"This model\'s maximum context length is 2048 tokens. However, your prompt contains '
    b"36107 characters (more than 26624 characters, which is the upper bound for 2048 input tokens). Please "
    b'reduce the length of the input prompt. (parameter=input_text, value=36107)","type":"BadRequestError",'
    b'"param":"input_text","code":400}}'
)
VLLM_MAX_TOKENS = (
    b'{"error":{"message":"max_tokens=100000 cannot be greater than max_model_len=2048. Please request fewer '
    b'output tokens. (parameter=max_tokens, value=100000)","type":"BadRequestError","param":"max_tokens","code":400}}'
)


def error(message: str, **fields: object) -> bytes:
    return json.dumps({"error": {"message": message, **fields}}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (LLAMA, Overflow(24046, 2048)),
        (VLLM_CHARS, Overflow(None, 2048)),
        (VLLM_MAX_TOKENS, Overflow(None, 2048)),
        (
            error(
                "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                "(4900 in the messages, 100 in the completion). Please reduce the length of the messages or completion."
            ),
            Overflow(4900, 4096),
        ),
        (
            error(
                "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length "
                "is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778). None"
            ),
            Overflow(2778, 4096),
        ),
        (
            error(
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
                "tokens. Please reduce the length of the messages.",
                type="invalid_request_error",
                code="context_length_exceeded",
            ),
            Overflow(9000, 8192),
        ),
        (error("Input is too long for this model.", code="context_length_exceeded"), Overflow(None, None)),
        (
            json.dumps(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "prompt is too long: 208541 tokens > 200000 maximum",
                    },
                }
            ).encode(),
            Overflow(208541, 200000),
        ),
        (error("the input length exceeds the context length", type="api_error"), Overflow(None, None)),
        (b'{"error":"the input length exceeds the context length"}', Overflow(None, None)),
    ],
    ids=[
        "llama",
        "vllm-characters",
        "vllm-max-tokens",
        "vllm-requested",
        "vllm-input-tokens",
        "openai",
        "openai-code-only",
        "anthropic",
        "ollama-openai-shape",
        "ollama-native",
    ],
)
def test_overflow_answers_are_recognised_with_their_sizes(body: bytes, expected: Overflow) -> None:
    assert read_overflow(400, body) == expected


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, error("'messages' must be a list", type="invalid_request_error")),
        (400, b"not json at all"),
        (400, b""),
        (500, LLAMA),  # only client errors are overflows
        (429, error("maximum context length is 10 tokens")),
        (401, error("invalid api key")),
    ],
)
def test_other_errors_are_not_overflows(status: int, body: bytes) -> None:
    assert read_overflow(status, body) is None

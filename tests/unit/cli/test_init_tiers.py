"""`octoroute init`'s tiers by size and the config text it writes (pure)."""

from __future__ import annotations

import tomllib

import pytest

from octoroute.cli.init import EMBED_GROUP, embedding_reason, render_config, summarize, tier_of
from octoroute.config.loader import parse_config
from octoroute.core.types import Tier
from octoroute.upstream.scan import FoundModel, FoundServer


@pytest.mark.parametrize(
    ("parameters", "size_bytes", "tier"),
    [
        (0.5e9, None, Tier.FAST),
        (3.99e9, 40 * 10**9, Tier.FAST),  # a parameter count wins over the size on disk
        (4e9, None, Tier.BALANCED),
        (14e9, None, Tier.BALANCED),
        (20e9, None, Tier.DEEP),
        (70e9, None, Tier.DEEP),
        (None, 2 * 10**9, Tier.FAST),
        (None, 5 * 10**9, Tier.BALANCED),
        (None, 12 * 10**9, Tier.DEEP),
        (None, None, Tier.BALANCED),
    ],
)
def test_tier_by_size(parameters, size_bytes, tier):
    assert tier_of(FoundModel("m", parameters, size_bytes, None)) is tier


def test_the_config_is_valid_toml_and_a_valid_config_with_odd_names_quoted():
    server = FoundServer(
        8080,
        "llama.cpp",
        (FoundModel('we"ird\\name', 1e9, None, None), FoundModel("bge-embed", 1e8, None, None)),
    )
    text = render_config([server])
    data = tomllib.loads(text)
    assert data["models"] == {
        "fast": [{"name": 'we"ird\\name', "base_url": "http://127.0.0.1:8080/v1"}],
        "embed": [{"name": "bge-embed", "base_url": "http://127.0.0.1:8080/v1"}],
    }
    parse_config(data, {})


def _model(name: str, **reported: object) -> FoundModel:
    return FoundModel(name, None, None, None, **reported)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        # what the server says wins, either way
        (
            _model("nomic-embed-text:latest", capabilities=("embedding",)),
            "the server lists its capabilities as embedding",
        ),
        (_model("qwen3-embedding:0.6b", capabilities=("embedding",)), "the server lists its capabilities as embedding"),
        (_model("my-embed-chat", capabilities=("completion", "tools")), None),
        (_model("both", capabilities=("embedding", "completion")), None),  # it can chat
        (
            _model("custom", capabilities=("embedding",), family="llama"),
            "the server lists its capabilities as embedding",
        ),
        (
            _model("text-embedding-nomic-embed-text-v1.5", model_type="embeddings"),
            "the server lists its type as embeddings",
        ),
        (_model("text-embedding-but-llm", model_type="llm"), None),
        (_model("qwen2-vl-7b-instruct", model_type="vlm"), None),
        # else the family: an encoder cannot generate
        (_model("mxbai-embed-large:latest", family="bert"), "its family is bert"),
        (_model("paraphrase-multilingual:latest", family="bert"), "its family is bert"),
        (_model("mystery:latest", family="nomic-bert"), "its family is nomic-bert"),
        (_model("snowflake-arctic-embed2", family="xlm-roberta"), "its family is xlm-roberta"),
        (_model("llama3.1:8b", family="llama"), None),
        # else the name
        (_model("nomic-embed-text-v1.5.Q8_0"), "its name"),
        (_model("all-minilm:l6-v2"), "its name"),
        (_model("sentence-transformers/all-MiniLM-L6-v2"), "its name"),
        (_model("BAAI/bge-large-en-v1.5"), "its name"),
        (_model("bge-m3:latest"), "its name"),
        (_model("intfloat/multilingual-e5-large"), "its name"),
        (_model("e5-mistral-7b-instruct"), "its name"),
        (_model("thenlper/gte-base"), "its name"),
        (_model("Alibaba-NLP/gte-Qwen2-1.5B-instruct"), "its name"),
        (_model("text-embedding-3-small"), "its name"),
        (_model("granite-embedding:30m"), "its name"),
        # chat models whose names merely hold the letters
        (_model("qwen2.5:3b"), None),
        (_model("Qwen/Qwen2.5-14B-Instruct"), None),
        (_model("gemma3:4b"), None),
        (_model("deepseek-r1:7b"), None),
        (_model("phi3.5-mini"), None),
        (_model("huggingface/bgem3-chat"), None),
        (_model("vicuna-e50"), None),
        (_model("gtex-7b"), None),
    ],
)
def test_embedding_models_are_told_from_chat_models(model, reason):
    assert embedding_reason(model) == reason


def test_embedding_models_get_a_group_that_serves_embeddings_only_and_no_tier():
    ollama = FoundServer(
        11434,
        "Ollama",
        (
            FoundModel("qwen2.5:3b", 3.1e9, 1_929_912_432, None, capabilities=("completion", "tools")),
            FoundModel("nomic-embed-text:latest", 137e6, 274_302_450, None, capabilities=("embedding",)),
        ),
    )
    lmstudio = FoundServer(
        1234, "LM Studio", (FoundModel("text-embedding-bge-m3", None, None, 8192, model_type="embeddings"),)
    )
    text = render_config([ollama, lmstudio])
    data = tomllib.loads(text)
    assert data["models"] == {
        "fast": [{"name": "qwen2.5:3b", "base_url": "http://127.0.0.1:11434/v1"}],
        EMBED_GROUP: [
            {"name": "nomic-embed-text:latest", "base_url": "http://127.0.0.1:11434/v1"},
            {"name": "text-embedding-bge-m3", "base_url": "http://127.0.0.1:1234/v1"},
        ],
    }
    assert data["groups"] == {EMBED_GROUP: {"serves": ["embeddings"]}}
    config = parse_config(data, {})
    assert config.server.host == "127.0.0.1"
    assert (
        "# nomic-embed-text:latest on Ollama: 137M parameters, 0.3 GB; "
        "embedding only: the server lists its capabilities as embedding"
    ) in text
    assert summarize([ollama, lmstudio]) == [
        "found Ollama at http://127.0.0.1:11434/v1: qwen2.5:3b (3.1B parameters, 1.9 GB)",
        "  embedding models (group embed, not in the chat tiers): nomic-embed-text:latest "
        "(137M parameters, 0.3 GB; the server lists its capabilities as embedding)",
        "found LM Studio at http://127.0.0.1:1234/v1: no chat model",
        "  embedding models (group embed, not in the chat tiers): text-embedding-bge-m3 "
        "(context 8,192; the server lists its type as embeddings)",
    ]


def test_without_embedding_models_there_is_no_embed_group():
    text = render_config([FoundServer(8000, "vLLM", (FoundModel("Qwen/Qwen2.5-14B-Instruct", 14e9, None, None),))])
    assert "groups" not in tomllib.loads(text)

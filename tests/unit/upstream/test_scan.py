"""What `octoroute init` reads from each server's listing (pure parsers)."""

from __future__ import annotations

import pytest

from octoroute.upstream.checkup import candidate_base_urls, listed_ids, ollama_names
from octoroute.upstream.scan import (
    FoundModel,
    capabilities_from_show,
    models_from_listing,
    models_from_lmstudio,
    models_from_tags,
    parameters_in_name,
    parse_parameter_size,
    with_names_read,
)


@pytest.mark.parametrize(
    ("text", "count"),
    [("8.0B", 8e9), ("137M", 137e6), ("70.6B", 70.6e9), ("1T", 1e12), ("", None), ("big", None), (7, None)],
)
def test_ollama_parameter_sizes(text, count):
    assert parse_parameter_size(text) == count


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("Qwen/Qwen2.5-14B-Instruct", 14e9),
        ("llama3.1:70b", 70e9),
        ("mixtral-8x7b", 56e9),
        ("Llama-3.2-1B", 1e9),
        ("phi3:mini", None),
        ("gpt-oss-120b", 120e9),
        ("qwen3-0.6b", 0.6e9),
        ("bge-base-en", None),
    ],
)
def test_parameter_counts_written_in_names(name, count):
    assert parameters_in_name(name) == count


def test_ollama_tags_give_size_and_parameter_count():
    tags = {
        "models": [
            {"name": "qwen2.5:3b", "size": 1929912432, "details": {"parameter_size": "3.1B"}},
            {"name": "odd", "size": "big", "details": "none"},
            {"no": "name"},
        ]
    }
    assert models_from_tags(tags) == (
        FoundModel("qwen2.5:3b", 3.1e9, 1929912432, None),
        FoundModel("odd", None, None, None),
    )
    assert models_from_tags({"models": "x"}) == ()
    assert ollama_names(tags) == ("qwen2.5:3b", "odd")


def test_llama_cpp_meta_and_vllm_max_model_len():
    llama = {"data": [{"id": "toolcaller", "meta": {"n_params": 214208, "size": 856832, "n_ctx": 2048}}]}
    vllm = {"data": [{"id": "Qwen/Qwen2.5-7B-Instruct", "owned_by": "vllm", "max_model_len": 32768}]}
    assert models_from_listing(llama) == (FoundModel("toolcaller", 214208.0, 856832, 2048),)
    assert models_from_listing(vllm) == (FoundModel("Qwen/Qwen2.5-7B-Instruct", None, None, 32768),)
    assert with_names_read(models_from_listing(vllm)) == (
        FoundModel("Qwen/Qwen2.5-7B-Instruct", 7e9, None, 32768, parameters_from_name=True),
    )
    assert listed_ids({"data": [{"id": "a"}, {"id": 3}, "b"]}) == ("a",)
    assert listed_ids([]) == ()


@pytest.mark.parametrize(
    ("base_url", "candidates"),
    [
        ("http://h:11434/v1", ["http://h:11434/v1"]),
        ("http://h:11434", ["http://h:11434", "http://h:11434/v1"]),
        ("http://h:8000/api", ["http://h:8000/api", "http://h:8000/api/v1", "http://h:8000/v1"]),
    ],
)
def test_base_urls_worth_trying(base_url, candidates):
    assert candidate_base_urls(base_url) == candidates


def test_ollama_tags_give_the_family():
    tags = {"models": [{"name": "nomic-embed-text:latest", "size": 274302450, "details": {"family": "nomic-bert"}}]}
    assert models_from_tags(tags) == (
        FoundModel("nomic-embed-text:latest", None, 274302450, None, family="nomic-bert"),
    )


@pytest.mark.parametrize(
    ("show", "caps"),
    [
        ({"capabilities": ["embedding"]}, ("embedding",)),
        ({"capabilities": ["completion", "tools", 3]}, ("completion", "tools")),
        ({"capabilities": []}, None),  # nothing said: the family and the name decide
        ({"details": {"family": "llama"}}, None),  # an Ollama older than capabilities
        ({"capabilities": "embedding"}, None),
        (None, None),
    ],
)
def test_ollama_show_capabilities(show, caps):
    assert capabilities_from_show(show) == caps


def test_lm_studio_models_give_type_arch_and_context():
    listing = {
        "object": "list",
        "data": [
            {"id": "text-embedding-nomic-embed-text-v1.5", "type": "embeddings", "arch": "nomic-bert"},
            {"id": "qwen2.5-7b-instruct", "type": "llm", "arch": "qwen2", "max_context_length": 32768},
            {"id": "no-type"},
            {"type": "llm"},
        ],
    }
    assert models_from_lmstudio(listing) == (
        FoundModel(
            "text-embedding-nomic-embed-text-v1.5", None, None, None, family="nomic-bert", model_type="embeddings"
        ),
        FoundModel("qwen2.5-7b-instruct", None, None, 32768, family="qwen2", model_type="llm"),
    )
    assert models_from_lmstudio({"error": "Unexpected endpoint or method. (GET /api/v0/models)"}) == ()

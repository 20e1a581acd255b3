"""What each server's discovery answer is taken to mean (the parsers are pure)."""

from __future__ import annotations

from octoroute.core.facts import FactSource, ServerFacts
from octoroute.upstream.discovery import facts_from_models, facts_from_props, facts_from_show


def test_llama_props_give_the_slot_context_and_the_slots() -> None:
    props = {"default_generation_settings": {"n_ctx": 2048, "params": {}}, "total_slots": 1, "model_alias": "tiny"}
    assert facts_from_props(props) == ServerFacts(FactSource.LLAMA_PROPS, context_window=2048, total_slots=1)
    assert facts_from_props({"total_slots": 4}) == ServerFacts(FactSource.LLAMA_PROPS, total_slots=4)
    assert facts_from_props({"default_generation_settings": {"n_ctx": 0}}) is None
    assert facts_from_props(["not", "props"]) is None


def test_vllm_models_give_max_model_len_of_the_named_model() -> None:
    listing = {
        "data": [
            {"id": "tiny-hf", "max_model_len": 2048},
            {"id": "other", "max_model_len": 8192},
        ]
    }
    assert facts_from_models(listing, "other") == ServerFacts(FactSource.VLLM_MODELS, context_window=8192)
    assert facts_from_models(listing, "absent") is None
    only = {"data": [{"id": "served-name", "max_model_len": 4096}]}
    assert facts_from_models(only, "alias") == ServerFacts(FactSource.VLLM_MODELS, context_window=4096)
    # llama.cpp's and Ollama's lists carry no max_model_len.
    assert facts_from_models({"data": [{"id": "tiny", "meta": {"n_ctx": 2048}}]}, "tiny") is None


def test_ollama_show_trusts_num_ctx_else_the_runtime_default() -> None:
    info = {"general.architecture": "qwen2", "qwen2.context_length": 32768}
    with_num_ctx = {"parameters": 'num_ctx                        16384\nstop "<|im_end|>"', "model_info": info}
    assert facts_from_show(with_num_ctx) == ServerFacts(FactSource.OLLAMA_SHOW, context_window=16384)
    assert facts_from_show({"parameters": 'stop "x"', "model_info": info}) == ServerFacts(
        FactSource.OLLAMA_SHOW, context_window=4096
    )
    small = {"model_info": {"llama.context_length": 2048}}
    assert facts_from_show(small) == ServerFacts(FactSource.OLLAMA_SHOW, context_window=2048)
    assert facts_from_show({"model_info": {}}) is None

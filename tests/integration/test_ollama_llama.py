"""The Ollama API in front of a real llama.cpp `llama-server` (../shared/llm), driven
by the official `ollama` client: real streaming quirks (a `content: null` opening
chunk, a usage-only last chunk), real token counts."""

from __future__ import annotations

import ollama
import pytest
from tests.integration.llama import LlamaServer
from tests.support import fleet_config

pytestmark = pytest.mark.llama


def test_chat_and_generate_through_llama_server(llama_tiny: LlamaServer, gateway):
    gw = gateway(fleet_config({"fast": [{"name": llama_tiny.model, "base_url": llama_tiny.base_url, "id": "tiny"}]}))
    options = {"temperature": 0, "num_predict": 8}
    with ollama.Client(host=gw.url) as client:
        assert [m.model for m in client.list().models][:2] == ["auto:latest", "fast:latest"]
        parts = list(
            client.chat(
                model="fast:latest", messages=[{"role": "user", "content": "Say hello"}], options=options, stream=True
            )
        )
        whole = client.chat(
            model="fast", messages=[{"role": "user", "content": "Say hello"}], options=options, stream=False
        )
        generated = client.generate(model="fast", prompt="Say hello", options=options, stream=False)
    last = parts[-1]
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert last.done_reason in {"stop", "length"}
    assert last.prompt_eval_count  # llama-server's own usage, not an estimate
    assert last.eval_count
    assert 0 < last.eval_count <= 8
    streamed = "".join(p.message.content or "" for p in parts)
    assert streamed == whole.message.content  # greedy decoding: the same words either way
    assert whole.eval_count == last.eval_count
    assert generated.done
    assert generated.eval_count
    assert generated.response

"""Conversation affinity against two real llama.cpp servers: every later turn of
a conversation lands on the server that holds its prompt, and llama-server itself
reports the reuse (`timings.cache_n`, `usage.prompt_tokens_details.cached_tokens`)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from tests.integration.llama import LlamaServer, start_server, stop_server
from tests.support import fleet_config

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def two_llamas() -> Iterator[tuple[LlamaServer, LlamaServer]]:
    first = start_server("tiny")
    try:
        second = start_server("tiny")
    except BaseException:
        stop_server(first)
        raise
    try:
        yield first, second
    finally:
        stop_server(first)
        stop_server(second)


def test_later_turns_reuse_the_servers_prompt_cache(two_llamas, gateway, sdk_clients):
    a, b = two_llamas
    endpoints = [
        {"name": "tiny", "id": "llama-a", "base_url": a.base_url, "max_concurrency": 1},
        {"name": "tiny", "id": "llama-b", "base_url": b.base_url, "max_concurrency": 1},
    ]
    gw = gateway(fleet_config({"fast": endpoints}))
    client = sdk_clients.openai(gw)
    messages = [
        {"role": "system", "content": "You are a terse assistant that answers in one line. " * 6},
        {"role": "user", "content": "List three colours."},
    ]
    seen = []
    for question in ("And three more?", "Now three shapes.", "And three animals?"):
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=messages, max_tokens=8, temperature=0
        )
        body = orjson.loads(raw.content)
        seen.append((raw.headers["X-Octoroute-Affinity"], raw.headers["X-Octoroute-Endpoint"], body["timings"]))
        messages += [
            {"role": "assistant", "content": body["choices"][0]["message"]["content"] or ""},
            {"role": "user", "content": question},
        ]
    home = seen[0][1]
    assert [(result, endpoint) for result, endpoint, _ in seen] == [("new", home), ("hit", home), ("hit", home)]
    for _, _, timings in seen[1:]:
        # the server found the conversation so far in its slot and processed only the new turn
        assert timings["cache_n"] > 0
        assert timings["prompt_n"] < timings["cache_n"]

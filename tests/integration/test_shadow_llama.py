"""Shadow mode's judge candidate against a real llama.cpp `llama-server`
(../shared/llm, the tiny model): the live request is answered by the live
strategy's choice, and the candidate's judge call reaches the real server in the
background and is recorded as a `shadow` event with a decision the llm strategy
can make from what the server said."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import urllib3
from tests.integration.llama import LlamaServer
from tests.support import eventually, fleet_config

pytestmark = pytest.mark.llama

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]


def events_of(path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_judge_candidate_asks_the_real_server_in_the_background(
    llama_tiny: LlamaServer, gateway, sdk_clients, tmp_path
):
    path = tmp_path / "events.jsonl"
    config = fleet_config(
        {"fast": [{"name": llama_tiny.model, "base_url": llama_tiny.base_url, "id": "llama-fast"}]},
        routing={"strategy": "rule", "router_tier": "fast", "shadow": {"strategy": "llm", "allow_judge": True}},
        observability={"events_file": str(path)},
    )
    gw = gateway(config)
    raw = sdk_clients.openai(gw).chat.completions.with_raw_response.create(model="auto", messages=HI, max_tokens=8)
    answer = raw.parse()
    assert answer.choices[0].finish_reason in {"stop", "length"}
    assert (raw.headers["x-octoroute-tier"], raw.headers["x-octoroute-reason"]) == ("fast", "rule_casual_short")
    request_id = raw.headers["x-request-id"]

    eventually(lambda: any(e["event"] == "shadow" for e in events_of(path)), timeout=60, what="the shadow event")
    shadow = next(e for e in events_of(path) if e["event"] == "shadow")
    assert (shadow["request_id"], shadow["tier"], shadow["shadow_strategy"]) == (request_id, "fast", "llm")
    # The tiny model writes gibberish: the judge's answer is unusable unless it happens to
    # name a tier, and then the llm strategy's own fallback (the rules: casual chat -> fast) decides.
    if shadow["shadow_reason"] == "llm_classified":
        assert shadow["shadow_tier"] in {"fast", "balanced", "deep"}
    else:
        assert (shadow["shadow_reason"], shadow["shadow_tier"]) == ("llm_failed_fallback_rule", "fast")
    request = next(e for e in events_of(path) if e["event"] == "request")
    assert (request["request_id"], request["shadow_pending"]) == (request_id, True)
    summary = orjson.loads(HTTP.request("GET", f"{gw.url}/metrics.json").data)["shadow"]
    assert (summary["decisions"], summary["pending"]) == (1, 0)

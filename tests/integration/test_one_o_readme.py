"""octoroute 1.0's README, verbatim: every config block parses and serves, every
request it shows gets the response shape it shows. The README is read at test
time from `<repo>/../shared/seeds/` (never copied into this repository)."""

from __future__ import annotations

import copy
import json
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3

from octoroute.config import build_topology, parse_config
from octoroute.core.errors import ConfigError

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
README = SEEDS / "002_0b1f667790f443f9.txt"
HTTP = urllib3.PoolManager(retries=False, timeout=30)
TIERS = ("fast", "balanced", "deep")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme(), re.S)


def curl_bodies() -> list[dict[str, Any]]:
    """The JSON bodies of every `curl ... /chat -d '...'` the README shows."""
    found = []
    for block in blocks("bash"):
        for body in re.findall(r"curl -X POST http://localhost:3000/chat.*?-d '(.*?)'", block, re.S):
            found.append(json.loads(body))
    return found


def response_examples() -> list[dict[str, Any]]:
    """Every JSON block that is a /chat response (it has `model_used`)."""
    out = []
    for block in blocks("json"):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue  # the request schema with `"low" | "normal"` alternatives is not JSON
        if "model_used" in value:
            out.append(value)
    return out


def test_the_seed_is_there() -> None:
    assert README.is_file(), f"octoroute 1.0's README is expected at {README}"
    assert len(blocks("toml")) >= 1
    assert len(curl_bodies()) >= 3
    assert len(response_examples()) == 2


@pytest.mark.parametrize("index", range(len(re.findall(r"```toml\n", README.read_text(encoding="utf-8")))))
def test_every_config_block_passes_check(index: int) -> None:
    data = tomllib.loads(blocks("toml")[index])
    config = parse_config(data, env={})
    topology = build_topology(config, env={})
    if "models" in data:
        for tier, table in data["models"].items():
            spec = topology.groups[tier].endpoints[0]
            assert spec.name == table["name"]
            assert spec.max_tokens == table["max_tokens"]
    assert config.routing.strategy == data.get("routing", {}).get("strategy", config.routing.strategy)


@pytest.fixture
def one_o_gateway(upstreams, gateway):
    """The README's quick-start config, its three servers replaced by fixture upstreams."""
    data = tomllib.loads(blocks("toml")[0])
    data = copy.deepcopy(data)
    sims = {}
    for tier in TIERS:
        sims[tier] = upstreams(tier)
        data["models"][tier]["base_url"] = sims[tier].base_url
    data["health"] = {"active": False, "discover": False}
    return gateway(data), sims


def post_chat(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = HTTP.request(
        "POST", f"{url}/chat", body=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    return response.status, orjson.loads(response.data)


def test_every_request_shown_gets_the_response_shape_shown(one_o_gateway) -> None:
    gw, _ = one_o_gateway
    keys = set().union(*(example.keys() for example in response_examples()))
    assert keys == {"response", "model_used", "routing_strategy", "token_count", "processing_time_ms"}
    for body in curl_bodies():
        status, answer = post_chat(gw.url, body)
        assert status == 200, answer
        assert keys <= answer.keys()
        assert isinstance(answer["response"], str)
        assert answer["response"]
        assert answer["model_used"] in {"fast_8b", "balanced_30b", "deep_120b"}
        assert answer["routing_strategy"] in {"rule", "llm"}  # hybrid counts the path taken, as 1.0 does
        assert isinstance(answer["token_count"], int)
        assert isinstance(answer["processing_time_ms"], int | float)


def test_one_o_model_names_choose_their_tier(one_o_gateway) -> None:
    gw, sims = one_o_gateway
    schema = next(block for block in blocks("json") if '"model": null' in block)
    names = re.findall(r'"(\w+_\d+b)"', schema)
    assert names == ["fast_8b", "balanced_30b", "deep_120b"]
    for name, tier in zip(names, TIERS, strict=True):
        before = len(sims[tier].requests)
        status, answer = post_chat(gw.url, {"prompt": "hello", "model": name, "temperature": 0.7})
        assert status == 200, answer
        assert answer["model_used"] == name
        assert len(sims[tier].requests) == before + 1


def test_health_answers_ok_as_shown(one_o_gateway) -> None:
    gw, _ = one_o_gateway
    assert 'with body `"OK"`' in readme()
    response = HTTP.request("GET", f"{gw.url}/health")
    assert response.status == 200
    assert response.data == b"OK"
    as_json = HTTP.request("GET", f"{gw.url}/health", headers={"Accept": "application/json"})
    assert orjson.loads(as_json.data)["status"] == "ok"  # beside octoroute's own "config"


def test_models_lists_as_shown(one_o_gateway) -> None:
    gw, sims = one_o_gateway
    shown = next(json.loads(block) for block in blocks("json") if '"healthy"' in block)
    response = HTTP.request("GET", f"{gw.url}/models")
    assert response.status == 200
    body = orjson.loads(response.data)
    assert body.keys() >= shown.keys()
    assert [set(m) for m in body["models"]] == [set(shown["models"][0])] * 3
    fast = next(m for m in body["models"] if m["name"] == shown["models"][0]["name"])
    assert fast == {"name": "fast_8b", "endpoint": sims["fast"].base_url.removesuffix("/v1"), "healthy": True}
    assert "endpoints" in body  # octoroute's own richer rows stay alongside


METRICS_SEED = SEEDS / "000_061dd02c7431dc32.txt"
SELECTION_SEED = SEEDS / "001_faa9e179334a8b5b.txt"


def seed_configs(path: Path) -> list[str]:
    """The TOML configs 1.0's tests build their state from (`r#"..."#` strings with [models.*])."""
    raw = re.findall(r'r#"(.*?)"#', path.read_text(encoding="utf-8"), re.S)
    return [textwrap.dedent(text) for text in raw if "[models." in text]


@pytest.mark.parametrize("seed", [METRICS_SEED, SELECTION_SEED], ids=["metrics", "selection"])
def test_the_configs_of_one_o_tests_pass_check(seed: Path) -> None:
    configs = seed_configs(seed)
    assert configs
    for text in configs:
        data = tomllib.loads(text)
        weights = [ep.get("weight", 1.0) for eps in data["models"].values() for ep in eps]
        if min(weights) <= 0:  # 1.0's own comments: "config validation will reject this at load time"
            with pytest.raises(ConfigError, match=r"weight: must be > 0"):
                parse_config(data, env={})
        else:
            parse_config(data, env={})


def test_metrics_are_named_and_labelled_as_one_o(one_o_gateway) -> None:
    gw, _ = one_o_gateway
    seed = METRICS_SEED.read_text(encoding="utf-8")
    declared = re.findall(r'body\.contains\("# TYPE (\w+) (\w+)"\)', seed)
    assert {name for name, _ in declared} == {
        "octoroute_requests_total",
        "octoroute_routing_duration_ms",
        "octoroute_model_invocations_total",
    }
    for body in curl_bodies():  # the README's config routes with `hybrid`
        assert post_chat(gw.url, body)[0] == 200
    exposition = HTTP.request("GET", f"{gw.url}/metrics").data.decode()
    for name, kind in declared:
        assert f"# TYPE {name} {kind}" in exposition or f"# TYPE {name.removesuffix('_total')} {kind}" in exposition
    strategies = set(re.findall(r'octoroute_requests_total\{[^}]*strategy="(\w+)"', exposition))
    assert strategies
    assert strategies <= {"rule", "llm"}  # the path hybrid took, never "hybrid"
    buckets = re.findall(r'octoroute_routing_duration_ms_bucket\{le="([^"]+)"', exposition)
    assert buckets[:9] == ["0.1", "0.5", "1.0", "5.0", "10.0", "50.0", "100.0", "500.0", "1000.0"]

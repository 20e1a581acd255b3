"""Shadow mode over real HTTP: a candidate strategy decides beside the live one on
traffic sent with the official openai SDK through fixture upstreams, is recorded
in the event file, the Prometheus metrics and /metrics.json, and never changes,
delays or adds calls to the live request (unless a judge candidate is allowed
to ask the router model, and then only in the background)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import urllib3
from tests.integration.test_learned_routing import weights_with
from tests.integration.test_observability import scrape, settle, snapshot, total, value
from tests.support import endpoint, eventually, fleet_config

from octoroute.routing.scoring import bundled_model

HTTP = urllib3.PoolManager()
HI = [{"role": "user", "content": "hi there"}]
HARD_HI = [{"role": "user", "content": "hi, hard one"}]
CHAT = "/v1/chat/completions"
DEEP_TASK = {"task_type": "deep_analysis"}


@dataclass(frozen=True)
class Prediction:
    score: float
    factors: tuple[tuple[str, float], ...] = ()


class WordModel:
    """A learned model for tests: 0.9 when the prompt says "hard", else 0.1."""

    version = "test.words"

    def predict(self, text: str) -> Prediction:
        return Prediction(0.9 if "hard" in text else 0.1)


def three_tiers(upstreams) -> tuple[dict[str, Any], dict[str, Any]]:
    sims = {tier: upstreams(tier) for tier in ("fast", "balanced", "deep")}
    return sims, {tier: [endpoint(sim, f"{tier}-model", id=f"{tier}-1")] for tier, sim in sims.items()}


def events_of(path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def route(client, messages, **extra: Any) -> tuple[tuple[str, str, str, str], str]:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages, **extra)
    h = raw.headers
    answer = raw.parse()
    decision = (h["x-octoroute-tier"], h["x-octoroute-strategy"], h["x-octoroute-reason"], h["x-octoroute-score"])
    return decision, answer.choices[0].message.content or ""


def test_shadow_off_changes_nothing(upstreams, gateway, sdk_clients, loop_thread, tmp_path):
    sims, models = three_tiers(upstreams)
    path_off, path_on = tmp_path / "off.jsonl", tmp_path / "on.jsonl"
    off = gateway(fleet_config(models, observability={"events_file": str(path_off)}), score_model=WordModel())
    on = gateway(
        fleet_config(models, routing={"shadow": {"strategy": "llm"}}, observability={"events_file": str(path_on)}),
        score_model=WordModel(),
    )
    prompts = [HI, HARD_HI, [{"role": "user", "content": "prove it"}]]  # the last one with DEEP_TASK
    seen = {}
    for name, gw in (("off", off), ("on", on)):
        client = sdk_clients.openai(gw)
        seen[name] = [route(client, HI), route(client, HARD_HI), route(client, prompts[2], extra_body=DEEP_TASK)]
        settle(gw, loop_thread, len(prompts))
    assert seen["off"] == seen["on"]  # the same tiers, reasons, scores and answers
    assert [d[0] for d, _ in seen["off"]] == ["fast", "fast", "deep"]
    assert [len(sim.chat_requests) for sim in sims.values()] == [4, 0, 2]  # no call beyond the live ones
    off_requests = [e for e in events_of(path_off) if e["event"] == "request"]
    assert len(off_requests) == 3
    assert not any(key.startswith("shadow") for e in off_requests for key in e)
    assert [e["event"] for e in events_of(path_off)].count("shadow") == 0
    assert snapshot(off.url)["shadow"] is None
    assert all("shadow_tier" not in d or d["shadow_tier"] is None for d in snapshot(off.url)["decisions"])
    text, _ = scrape(off.url)
    assert "octoroute_shadow" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    on_requests = [e for e in events_of(path_on) if e["event"] == "request"]
    assert all(e["shadow_strategy"] == "llm" for e in on_requests)


def test_an_offline_candidate_is_recorded_with_its_agreement(upstreams, gateway, sdk_clients, loop_thread, tmp_path):
    sims, models = three_tiers(upstreams)
    path = tmp_path / "events.jsonl"
    config = fleet_config(
        models,
        routing={"strategy": "rule", "router_tier": "fast", "shadow": {"strategy": "llm"}},
        observability={"events_file": str(path)},
    )
    gw = gateway(config, score_model=WordModel())
    client = sdk_clients.openai(gw)
    before = scrape(gw.url)[1]
    live = [
        route(client, HI)[0],  # rule: fast; candidate (learned in place of the judge): 0.1 -> fast
        route(client, HARD_HI)[0],  # rule: fast; candidate: 0.9 -> deep
        route(client, HARD_HI, extra_body=DEEP_TASK)[0],  # rule: deep; candidate: deep
    ]
    with client.chat.completions.create(model="auto", messages=HI, stream=True) as stream:  # fast / fast
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    settle(gw, loop_thread, 4)
    assert [d[:3] for d in live] == [
        ("fast", "rule", "rule_casual_short"),
        ("fast", "rule", "rule_casual_short"),
        ("deep", "rule", "rule_deep_task"),
    ]
    # Without allow_judge the llm candidate asks nobody: each upstream saw only the live calls.
    assert [len(sim.chat_requests) for sim in sims.values()] == [3, 0, 1]
    assert all(r.body["messages"] in (HI, HARD_HI) for sim in sims.values() for r in sim.chat_requests)

    requests = [e for e in events_of(path) if e["event"] == "request"]
    shadowed = [
        (e["tier"], e["shadow_strategy"], e["shadow_tier"], e["shadow_score"], e["shadow_reason"]) for e in requests
    ]
    assert shadowed == [
        ("fast", "llm", "fast", 0.1, "learned_instead_of_judge"),
        ("fast", "llm", "deep", 0.9, "learned_instead_of_judge"),
        ("deep", "llm", "deep", 0.9, "learned_instead_of_judge"),
        ("fast", "llm", "fast", 0.1, "learned_instead_of_judge"),
    ]
    assert not any("shadow_pending" in e for e in requests)

    after = scrape(gw.url)[1]
    name = "octoroute_shadow_decisions_total"
    moved = {
        (live_tier, cand): value(after, name, strategy="llm", live_tier=live_tier, shadow_tier=cand)
        - value(before, name, strategy="llm", live_tier=live_tier, shadow_tier=cand)
        for live_tier in ("fast", "balanced", "deep")
        for cand in ("fast", "balanced", "deep")
    }
    assert {k: v for k, v in moved.items() if v} == {("fast", "fast"): 2, ("fast", "deep"): 1, ("deep", "deep"): 1}
    assert value(after, "octoroute_shadow_dropped_total", strategy="llm") == 0
    assert value(after, "octoroute_shadow_pending", strategy="llm") == 0

    shadow = snapshot(gw.url)["shadow"]
    assert shadow == {
        "strategy": "llm",
        "live_strategy": "rule",
        "model": "test.words",  # the judge candidate scored offline uses the learned model
        "live_model": None,
        "allow_judge": False,
        "sample": 1.0,
        "decisions": 4,
        "agreed": 3,
        "agreement": 0.75,
        "live_by_tier": {"fast": 3, "balanced": 0, "deep": 1},
        "shadow_by_tier": {"fast": 2, "balanced": 0, "deep": 2},
        "confusion": {
            "fast": {"fast": 2, "balanced": 0, "deep": 1},
            "balanced": {"fast": 0, "balanced": 0, "deep": 0},
            "deep": {"fast": 0, "balanced": 0, "deep": 1},
        },
        "pending": 0,
        "dropped": 0,
    }
    rows = sorted(snapshot(gw.url)["decisions"], key=lambda d: d["time"])
    assert [(d["tier"], d["shadow_tier"]) for d in rows] == [
        ("fast", "fast"),
        ("fast", "deep"),
        ("deep", "deep"),
        ("fast", "fast"),
    ]


def test_a_sampled_share_of_requests_is_shadowed(upstreams, gateway, sdk_clients, loop_thread):
    _, models = three_tiers(upstreams)
    config = fleet_config(models, routing={"strategy": "rule", "shadow": {"strategy": "learned", "sample": 0.5}})
    gw = gateway(config, score_model=WordModel(), rng=random.Random(3))
    client = sdk_clients.openai(gw)
    for _ in range(20):
        route(client, HI)
    settle(gw, loop_thread, 20)
    shadowed = snapshot(gw.url)["shadow"]["decisions"]
    assert 0 < shadowed < 20
    rows = snapshot(gw.url)["decisions"]
    assert sum(d["shadow_tier"] is not None for d in rows) == shadowed


def gated_judge_config(upstreams, tmp_path, **shadow: Any):
    """fast serves live traffic (rule: casual chat goes there); deep holds the router
    model, which answers DEEP only once the test opens its gate."""
    fast, judge = upstreams("fast"), upstreams("judge")
    judge.behaviour.reply_text = "DEEP"
    judge.behaviour.gate = asyncio.Event()
    path = tmp_path / "events.jsonl"
    config = fleet_config(
        {"fast": [endpoint(fast, "fast-model", id="fast-1")], "deep": [endpoint(judge, "judge-model", id="judge-1")]},
        routing={
            "strategy": "rule",
            "router_tier": "deep",
            "llm_timeout_seconds": 120,
            "shadow": {"strategy": "llm", "allow_judge": True, **shadow},
        },
        observability={"events_file": str(path)},
    )
    return fast, judge, path, config


def test_a_judge_candidate_asks_in_the_background_and_never_delays_the_answer(
    upstreams, gateway, sdk_clients, loop_thread, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="octoroute.shadow")
    fast, judge, path, config = gated_judge_config(upstreams, tmp_path)
    gw = gateway(config)
    # A guard, not a measurement: were the answer to wait for the held judge, the call
    # would fail here instead of hanging until the judge's own timeout.
    client = sdk_clients.openai(gw).with_options(timeout=30)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI)
    # The answer is here while the router model is still held at its gate: the
    # live request did not wait for its shadow.
    assert not judge.behaviour.gate.is_set()
    assert (raw.headers["x-octoroute-tier"], raw.headers["x-octoroute-reason"]) == ("fast", "rule_casual_short")
    assert raw.parse().choices[0].message.content.startswith("This is fast answering")
    loop_thread.run(judge.wait_requests(CHAT, 1))  # the shadow's judge call did go out
    settle(gw, loop_thread, 1)
    pending = snapshot(gw.url)["shadow"]
    assert (pending["pending"], pending["decisions"]) == (1, 0)
    request = next(e for e in events_of(path) if e["event"] == "request")
    assert request["shadow_strategy"] == "llm"
    assert request["shadow_pending"] is True
    assert "shadow_tier" not in request

    loop_thread.loop.call_soon_threadsafe(judge.behaviour.gate.set)
    eventually(lambda: snapshot(gw.url)["shadow"]["decisions"] == 1, what="the shadow decision")
    eventually(lambda: any(e["event"] == "shadow" for e in events_of(path)), what="the shadow event")
    shadow_event = next(e for e in events_of(path) if e["event"] == "shadow")
    assert shadow_event == {
        **shadow_event,
        "request_id": raw.headers["x-request-id"],
        "tier": "fast",
        "strategy": "rule",
        "score": 0.0,
        "shadow_strategy": "llm",
        "shadow_tier": "deep",
        "shadow_score": 1.0,
        "shadow_reason": "llm_classified",
    }
    summary = snapshot(gw.url)["shadow"]
    assert (summary["agreement"], summary["pending"], summary["confusion"]["fast"]["deep"]) == (0.0, 0, 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "octoroute.shadow"]
    assert lines == [
        f"request_id={raw.headers['x-request-id']} tier=fast strategy=rule score=0.0 "
        "shadow_strategy=llm shadow_tier=deep shadow_score=1.0 shadow_reason=llm_classified"
    ]
    asked = judge.chat_requests
    assert len(asked) == 1
    assert asked[0].body["model"] == "judge-model"
    assert asked[0].body["stream"] is False
    assert "hi there" in orjson.dumps(asked[0].body["messages"]).decode()
    assert len(fast.chat_requests) == 1
    series = scrape(gw.url)[1]
    assert value(series, "octoroute_shadow_decisions_total", strategy="llm", live_tier="fast", shadow_tier="deep") == 1
    assert total(series, "octoroute_model_invocations_total", tier="deep") == 1  # the judge call is a real call


def test_judge_candidates_past_max_pending_are_dropped_and_counted(
    upstreams, gateway, sdk_clients, loop_thread, tmp_path
):
    fast, judge, _, config = gated_judge_config(upstreams, tmp_path, max_pending=1)
    gw = gateway(config)
    client = sdk_clients.openai(gw)
    for _ in range(3):
        route(client, HI)
    loop_thread.run(judge.wait_requests(CHAT, 1))
    settle(gw, loop_thread, 3)
    summary = snapshot(gw.url)["shadow"]
    assert (summary["pending"], summary["dropped"], summary["decisions"]) == (1, 2, 0)
    assert value(scrape(gw.url)[1], "octoroute_shadow_dropped_total", strategy="llm") == 2
    assert len(judge.chat_requests) == 1
    assert len(fast.chat_requests) == 3
    # The gate stays shut: stopping the gateway cancels the pending shadow decision cleanly.


def test_only_auto_routed_requests_are_shadowed_on_every_api(upstreams, gateway, sdk_clients, loop_thread, tmp_path):
    _, models = three_tiers(upstreams)
    path = tmp_path / "events.jsonl"
    config = fleet_config(
        models,
        routing={"strategy": "rule", "shadow": {"strategy": "learned"}},
        aliases={"claude-*": "auto", "big": "deep"},
        observability={"events_file": str(path)},
    )
    gw = gateway(config, score_model=WordModel())
    claude = sdk_clients.anthropic(gw)
    claude.messages.create(model="claude-test", max_tokens=20, messages=HARD_HI)  # an alias to auto: shadowed
    claude.messages.create(model="big", max_tokens=20, messages=HARD_HI)  # an alias to a group: not routed
    openai_client = sdk_clients.openai(gw)
    openai_client.chat.completions.create(model="fast", messages=HARD_HI)  # a group: not routed
    openai_client.chat.completions.create(model="fast-1", messages=HARD_HI)  # an endpoint id: not routed
    chat = HTTP.request("POST", f"{gw.url}/chat", body=orjson.dumps({"prompt": "hi, hard one"}))  # 1.0's /chat: auto
    assert chat.status == 200, chat.data
    settle(gw, loop_thread, 5)
    requests = [e for e in events_of(path) if e["event"] == "request"]
    shadowed = [(e["route"], e["model"], e.get("shadow_tier")) for e in requests]
    assert shadowed == [
        ("/v1/messages", "claude-test", "deep"),
        ("/v1/messages", "big", None),
        ("/v1/chat/completions", "fast", None),
        ("/v1/chat/completions", "fast-1", None),
        ("/chat", "auto", "deep"),
    ]
    summary = snapshot(gw.url)["shadow"]
    assert (summary["decisions"], summary["agreed"], summary["confusion"]["fast"]["deep"]) == (2, 0, 2)


class BrokenModel(WordModel):
    """Fails on prompts that say "boom", as a buggy candidate might."""

    def predict(self, text: str) -> Prediction:
        if "boom" in text:
            raise ValueError("the candidate broke")
        return super().predict(text)


def test_a_failing_candidate_never_fails_the_live_request(upstreams, gateway, sdk_clients, loop_thread, caplog):
    _, models = three_tiers(upstreams)
    config = fleet_config(models, routing={"strategy": "rule", "shadow": {"strategy": "learned"}})
    gw = gateway(config, score_model=BrokenModel())
    client = sdk_clients.openai(gw)
    decision, answer = route(client, [{"role": "user", "content": "boom"}])
    assert decision[:3] == ("fast", "rule", "rule_casual_short")
    assert answer.startswith("This is fast answering")
    route(client, HI)
    settle(gw, loop_thread, 2)
    assert snapshot(gw.url)["shadow"]["decisions"] == 1  # the failed one is not counted
    failures = [r for r in caplog.records if r.name == "octoroute.shadow" and r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "the candidate broke" in str(failures[0].exc_info[1])


def test_a_trained_model_shadows_the_live_learned_one(upstreams, gateway, sdk_clients, loop_thread, tmp_path):
    sims, models = three_tiers(upstreams)
    weights, path = tmp_path / "trained.json", tmp_path / "events.jsonl"
    weights.write_bytes(weights_with("trained-7", bias=10.0))  # beyond its reference: every prompt deep
    config = fleet_config(
        models,
        routing={"strategy": "learned", "shadow": {"strategy": "learned", "learned_weights": str(weights)}},
        observability={"events_file": str(path)},
    )
    gw = gateway(config)
    client = sdk_clients.openai(gw)
    live = [route(client, HI)[0], route(client, HARD_HI)[0]]
    settle(gw, loop_thread, 2)
    bundled = bundled_model()
    assert [d[:2] for d in live] == [("fast", "learned"), ("fast", "learned")]  # the bundled model decides
    assert [float(d[3]) for d in live] == pytest.approx(
        [bundled.predict("hi there").score] * 1 + [bundled.predict("hi, hard one").score], abs=5e-4
    )
    assert [len(sim.chat_requests) for sim in sims.values()] == [2, 0, 0]  # the candidate calls nobody
    requests = [e for e in events_of(path) if e["event"] == "request"]
    assert [(e["shadow_strategy"], e["shadow_tier"], e["shadow_reason"]) for e in requests] == [
        ("learned", "deep", "learned_score")
    ] * 2
    assert all(e["shadow_score"] > 0.9 for e in requests)  # past the top of its 0..4 reference
    shadow = snapshot(gw.url)["shadow"]
    assert (shadow["strategy"], shadow["model"], shadow["live_strategy"], shadow["live_model"]) == (
        "learned",
        "trained-7",
        "learned",
        bundled.version,
    )
    assert (shadow["agreed"], shadow["decisions"]) == (0, 2)

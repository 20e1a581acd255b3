"""Shadow mode with the bundled learned model (no fake): an offline judge candidate
is scored exactly as `octoroute score` scores the same prompt with that strategy,
and a `learned` candidate beside the rules matches `octoroute score`'s default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from tests.integration.test_observability import settle
from tests.integration.test_shadow import events_of, three_tiers
from tests.support import fleet_config

PROMPTS = [
    "hi there",
    "Prove that the square root of 2 is irrational, step by step.",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "What is the capital of France?",
]


def octoroute_score(prompts: list[str], config: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "octoroute", "score", "--config", str(config)],
        input="".join(orjson.dumps({"prompt": p}).decode() + "\n" for p in prompts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def score_config(tmp_path: Path, strategy: str) -> Path:
    path = tmp_path / f"score-{strategy}.toml"
    tiers = "".join(
        f'[[models.{t}]]\nname = "m"\nbase_url = "http://127.0.0.1:1/v1"\n' for t in ("fast", "balanced", "deep")
    )
    path.write_text(f'[routing]\nstrategy = "{strategy}"\n\n{tiers}')
    return path


def test_shadow_scores_match_octoroute_score(upstreams, gateway, sdk_clients, loop_thread, tmp_path):
    _, models = three_tiers(upstreams)
    for candidate in ("llm", "learned"):
        path = tmp_path / f"events-{candidate}.jsonl"
        config = fleet_config(
            models,
            routing={"strategy": "rule", "shadow": {"strategy": candidate}},
            observability={"events_file": str(path)},
        )
        gw = gateway(config)  # the bundled model
        client = sdk_clients.openai(gw)
        for prompt in PROMPTS:
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}])
        settle(gw, loop_thread, len(PROMPTS))
        recorded = [
            {"score": e["shadow_score"], "tier": e["shadow_tier"], "reason": e["shadow_reason"]}
            for e in events_of(path)
            if e["event"] == "request"
        ]
        expected = octoroute_score(PROMPTS, score_config(tmp_path, candidate))
        for record in expected:
            record["score"] = round(record["score"], 4)
        assert recorded == expected, candidate
        want = "learned_instead_of_judge" if candidate == "llm" else "learned_score"
        assert {r["reason"] for r in recorded} == {want}

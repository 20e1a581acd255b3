"""`octoroute score` and `octoroute route --explain` as a user runs them: real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [
    "hi",
    "What is 2 + 2?",
    "Prove that there are infinitely many primes, then show that the sum of their reciprocals diverges.",
    "Write a Python function that merges k sorted linked lists in O(n log k) time and explain its complexity.",
]


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "octoroute", *args], input=stdin, capture_output=True, timeout=60, cwd=REPO, check=False
    )


def jsonl(*records: object) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def scores(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_score_writes_one_line_per_prompt_in_order_with_exactly_the_contract_keys() -> None:
    result = run("score", stdin=jsonl(*({"prompt": p, "id": i} for i, p in enumerate(PROMPTS))))
    assert result.returncode == 0, result.stderr
    out = scores(result)
    assert len(out) == len(PROMPTS)
    for line in out:
        assert set(line) == {"score", "tier", "reason"}
        assert isinstance(line["score"], float)
        assert 0.0 <= line["score"] <= 1.0
        assert line["tier"] in {"fast", "balanced", "deep"}
        assert line["reason"] == "learned_score"
    # the order is the input order: scoring the same prompts one by one gives the same lines
    for prompt, line in zip(PROMPTS, out, strict=True):
        assert scores(run("score", stdin=jsonl({"prompt": prompt}))) == [line]


def test_score_is_deterministic_and_ranks_a_hard_request_above_a_greeting() -> None:
    first = scores(run("score", stdin=jsonl(*({"prompt": p} for p in PROMPTS))))
    second = scores(run("score", stdin=jsonl(*({"prompt": p} for p in PROMPTS))))
    assert first == second
    assert first[2]["score"] > first[0]["score"]  # type: ignore[operator]


def test_score_honours_importance_hints() -> None:
    prompt = "Summarise the plot of Hamlet."
    normal, high, low = scores(
        run(
            "score",
            stdin=jsonl(
                {"prompt": prompt}, {"prompt": prompt, "importance": "high"}, {"prompt": prompt, "importance": "low"}
            ),
        )
    )
    assert low["score"] < normal["score"] < high["score"]  # type: ignore[operator]


def test_score_with_a_config_uses_its_routing(tmp_path: Path) -> None:
    config = tmp_path / "rule.toml"
    config.write_text(
        '[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n'
        '[[models.deep]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "rule"\n'
    )
    out = scores(run("score", "--config", str(config), stdin=jsonl({"prompt": "hi"}, {"prompt": "Write a poem"})))
    assert out[0] == {"score": 0.0, "tier": "fast", "reason": "rule_casual_short"}
    assert out[1] == {"score": 1.0, "tier": "deep", "reason": "rule_deep_task"}


@pytest.mark.parametrize("strategy", ["llm", "tool"])
def test_score_stands_in_for_the_judge_and_says_so(tmp_path: Path, strategy: str) -> None:
    config = tmp_path / "judge.toml"
    config.write_text(
        f'[[models.fast]]\nname = "m"\nbase_url = "http://127.0.0.1:1/v1"\n[routing]\nstrategy = "{strategy}"\n'
    )
    out = scores(run("score", "--config", str(config), stdin=jsonl({"prompt": "Explain quicksort"})))
    assert out[0]["reason"] == "learned_instead_of_judge"


def test_score_with_thresholds_cuts_where_told(tmp_path: Path) -> None:
    everything_deep = tmp_path / "deep.toml"
    everything_deep.write_text(
        '[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nscore_thresholds = [0.0, 0.0]\n'
    )
    out = scores(run("score", "--config", str(everything_deep), stdin=jsonl(*({"prompt": p} for p in PROMPTS))))
    assert {line["tier"] for line in out} == {"deep"}


def test_bad_lines_keep_their_place_and_fail_the_run() -> None:
    stdin = b"\n".join(
        [
            b'{"prompt": "hi"}',
            b"",
            b"not json",
            b'{"text": "no prompt"}',
            b'{"prompt": "x", "importance": "urgent"}',
            b'{"prompt": "ok"}',
        ]
    )
    result = run("score", stdin=stdin)
    assert result.returncode == 1
    out = scores(result)
    assert len(out) == 5  # the blank line is not an input
    assert "score" in out[0]
    assert "score" in out[4]
    assert str(out[1]["error"]).startswith("line 3: not valid JSON")
    assert out[2] == {"error": 'line 4: "prompt" must be a string'}
    assert str(out[3]["error"]).startswith('line 5: "importance" must be one of low, normal, high')
    assert b"line 3" in result.stderr


def test_score_reports_a_bad_config_in_one_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[routing]\nstrategy = "magic"\n')
    result = run("score", "--config", str(bad), stdin=jsonl({"prompt": "hi"}))
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"routing.strategy" in result.stderr


def test_score_reads_a_huge_prompt_quickly_enough_to_finish() -> None:
    huge = "lorem ipsum dolor sit amet " * 40_000  # about 1 MB
    result = run("score", stdin=jsonl({"prompt": huge}))
    assert result.returncode == 0, result.stderr
    assert len(scores(result)) == 1


def test_route_explain_prints_the_score_what_moved_it_and_the_cut() -> None:
    result = run("route", "--explain", "Prove that the square root of 2 is irrational.")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert re.search(r"strategy\s+learned", text)
    assert re.search(r"score\s+0\.\d{3}", text)
    assert re.search(r"cut point\s+.*\((fast\|balanced|balanced|balanced\|deep)\)", text)
    assert re.search(r"moved by\s+[+-]\d\.\d{3}", text)


def test_route_explain_for_a_rule_strategy_says_there_is_no_cut(tmp_path: Path) -> None:
    config = tmp_path / "rule.toml"
    config.write_text('[[models.fast]]\nname = "m"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "rule"\n')
    result = run("route", "--explain", "hi", "--config", str(config))
    text = result.stdout.decode()
    assert "rule_casual_short" in text
    assert "none: rule picks a tier" in text


@pytest.mark.parametrize("strategy", ["llm", "hybrid", "tool"])
def test_route_explain_when_the_judge_would_decide_shows_the_offline_score(tmp_path: Path, strategy: str) -> None:
    config = tmp_path / "j.toml"
    model = "qwen2.5-7b-instruct" if strategy == "tool" else "m"  # a model that calls tools, or tool falls back
    config.write_text(
        f'[[models.fast]]\nname = "{model}"\nbase_url = "http://localhost:1/v1"\n[routing]\nstrategy = "{strategy}"\n'
    )
    prompt = "Hey, how are you today? I'm bored." if strategy == "hybrid" else "hello"
    result = run("route", "--explain", prompt, "--importance", "high", "--config", str(config))
    text = result.stdout.decode()
    assert ("a call to route_request" if strategy == "tool" else "LLM router") in text
    assert "offline score" in text

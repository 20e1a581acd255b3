"""`octoroute score`: JSONL prompts in, one routing score per line out, offline.

The contract other tools build on (keep it stable): every non-blank input line
is one JSON object with at least `"prompt"` (a string) and optionally
`"importance"` (low | normal | high) and `"task_type"`; other keys are ignored.
For each, in order, one line `{"score": <float>, "tier": "<tier>", "reason": "<reason>"}`.
A line that cannot be scored gets `{"error": "<why>"}` in its place, so outputs
stay aligned with inputs, and the exit status is then 1. No model is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TypeVar

import orjson

from octoroute.config import Config, load_config, parse_config
from octoroute.config.topology import default_tier
from octoroute.core.errors import ConfigError
from octoroute.core.types import Importance, Strategy, TaskType
from octoroute.routing.scoring import OfflineScorer, Scored, build_offline_scorer

ROUTE_ONLY: dict[str, object] = {
    "models": {
        "fast": [{"name": "fast", "base_url": "http://127.0.0.1:1/v1"}],
        "balanced": [{"name": "balanced", "base_url": "http://127.0.0.1:1/v1"}],
        "deep": [{"name": "deep", "base_url": "http://127.0.0.1:1/v1"}],
    }
}
"""The config used when none is given: the three tiers and every routing default."""


E = TypeVar("E", Importance, TaskType)


class BadLine(ValueError):
    """An input line that cannot be scored; the message says why."""


def load_routing_config(config_path: Path | None, env: Mapping[str, str]) -> Config:
    """The config at `config_path`, or the defaults with all three tiers; raises ConfigError."""
    return load_config(config_path, env) if config_path else parse_config(ROUTE_ONLY, env)


def offline_scorer(config: Config, strategy: Strategy | None = None) -> OfflineScorer:
    """The scorer `score`, `eval` and `route` use for a config (or another strategy)."""
    return build_offline_scorer(config.routing, default_tier(config), strategy=strategy)


def score_record(scorer: OfflineScorer, record: object) -> Scored:
    """Score one decoded input object; raises BadLine when it is not a valid input."""
    if not isinstance(record, dict):
        raise BadLine("each line must be a JSON object")
    prompt = record.get("prompt")
    if not isinstance(prompt, str):
        raise BadLine('"prompt" must be a string')
    importance = _enum_field(record, "importance", Importance)
    task_type = _enum_field(record, "task_type", TaskType)
    return scorer.score_prompt(prompt, importance, task_type)


def encode_scored(scored: Scored) -> bytes:
    return orjson.dumps({"score": round(scored.score, 6), "tier": scored.tier.value, "reason": scored.reason.value})


def score_lines(scorer: OfflineScorer, lines: Iterable[bytes], out: IO[bytes], err: IO[str]) -> int:
    """Score each non-blank line to `out`; returns the exit status (1 if any line failed)."""
    status = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BadLine(f"not valid JSON ({exc.msg})") from exc
            out.write(encode_scored(score_record(scorer, record)) + b"\n")
        except BadLine as exc:
            status = 1
            err.write(f"octoroute score: line {number}: {exc}\n")
            out.write(orjson.dumps({"error": f"line {number}: {exc}"}) + b"\n")
        out.flush()
    return status


def run_score(config_path: Path | None, env: Mapping[str, str], stdin: IO[bytes], out: IO[bytes], err: IO[str]) -> int:
    try:
        config = load_routing_config(config_path, env)
    except ConfigError as exc:
        err.write(f"octoroute score: {config_path}: {len(exc.problems)} config problem(s)\n")
        for problem in exc.problems:
            err.write(f"  {problem}\n")
        return 2
    return score_lines(offline_scorer(config), stdin, out, err)


def _enum_field(record: dict[str, object], key: str, kind: type[E]) -> E | None:
    value = record.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise BadLine(f'"{key}" must be one of {allowed}; got {value!r}') from None

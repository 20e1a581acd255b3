"""Training and validation data, read straight from fetched git repositories.

Each loader reads files at a pinned commit with `git show` from a bare git
directory (what the `fetch` tool or `git clone --bare` produces), so the same
bytes come back on every machine. Sources, commits and licenses: `DATA.md`.
"""

from __future__ import annotations

import ast
import csv
import io
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

LLMROUTER_COMMIT = "4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"
ROUTERDC_COMMIT = "0e63989c5bf4363330b8a4616386e3f7f116d9f8"

# LLMRouter (DCRouter) scores nine open models; these four 7-9B models answer
# every task format sensibly, the two ~50B Nemotrons are the strong side. The
# ChatQA and CodeGemma models fail most multiple-choice formats outright
# (near-zero accuracy on ARC and MMLU), which says nothing about the item.
WEAK_MODELS = ("qwen2.5-7b-instruct", "mistral-7b-instruct-v0.3", "gemma-2-9b-it", "llama-3.1-8b-instruct")
STRONG_MODELS = ("llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1")


@dataclass(frozen=True, slots=True)
class Example:
    """One prompt with the mean score of the weak and of the strong models."""

    id: str
    source: str
    text: str
    weak: float
    strong: float


def git_show(git_dir: Path, commit: str, path: str) -> bytes:
    """The bytes of `path` at `commit` in the (bare) repository `git_dir`."""
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def format_prompt(question: str, choices: object, metric: str) -> str:
    """The prompt a user would send: the question, then its options or tests."""
    if choices is None:
        return question
    if isinstance(choices, str):
        choices = ast.literal_eval(choices)
    if metric == "code_eval" and isinstance(choices, list):
        return question + "\nYour code should pass these tests:\n" + "\n".join(str(c) for c in choices)
    if isinstance(choices, Mapping):
        texts = list(choices.get("text", []))
        labels = list(choices.get("label") or choices.get("labels") or [])
    elif isinstance(choices, list):
        texts = [str(c) for c in choices]
        labels = []
    else:
        return question
    labels = labels if len(labels) == len(texts) else [chr(ord("A") + i) for i in range(len(texts))]
    return question + "\n" + "\n".join(f"{label}. {text}" for label, text in zip(labels, texts, strict=True))


def load_llmrouter(git_dir: Path) -> list[Example]:
    """LLMRouter's DCRouter set: ~6,000 questions of 14 benchmarks, nine models' scores.

    The per-item scores (`data/dcrouter_preprocessed/`) carry no benchmark name;
    the query files (`data/example_data/query_data/`) hold the same questions
    with their task name, options and metric, and are joined on the text.
    """
    queries: dict[str, dict[str, object]] = {}
    for name in ("default_query_train.jsonl", "default_query_test.jsonl"):
        raw = git_show(git_dir, LLMROUTER_COMMIT, f"data/example_data/query_data/{name}")
        for line in raw.splitlines():
            row = orjson.loads(line)
            queries.setdefault(row["query"], row)
    examples: list[Example] = []
    seen: set[str] = set()
    for name in ("train.json", "test.json"):
        for row in orjson.loads(git_show(git_dir, LLMROUTER_COMMIT, f"data/dcrouter_preprocessed/{name}")):
            question = row["question"]
            if question in seen or question not in queries:
                continue
            seen.add(question)
            query = queries[question]
            scores = row["scores"]
            examples.append(
                Example(
                    id=f"llmrouter:{len(examples)}",
                    source=str(query["task_name"]),
                    text=format_prompt(question, query.get("choices"), str(query["metric"])),
                    weak=sum(float(scores[m]) for m in WEAK_MODELS) / len(WEAK_MODELS),
                    strong=sum(float(scores[m]) for m in STRONG_MODELS) / len(STRONG_MODELS),
                )
            )
    return examples


def load_routerdc(git_dir: Path) -> list[Example]:
    """RouterDC's RouterBench slices (ARC-Challenge, Winogrande, MBPP): Mixtral vs GPT-4.

    No license file in that repository: used for validation only, never for
    the shipped weights.
    """
    csv.field_size_limit(1 << 24)
    examples: list[Example] = []
    for name in ("arc_challenge", "winograde", "mbpp"):
        for split in ("train", "test"):
            raw = git_show(git_dir, ROUTERDC_COMMIT, f"datasets/routerbench_zs/{name}_{split}.csv")
            for row in csv.DictReader(io.StringIO(raw.decode())):
                prompt = row["prompt"]
                if not row["mistralai/mixtral-8x7b-chat"] or not row["gpt-4-1106-preview"]:
                    continue
                parts = ast.literal_eval(prompt) if prompt.startswith("[") else [prompt]
                examples.append(
                    Example(
                        id=f"routerdc:{row['sample_id']}",
                        source=f"routerbench-{name}",
                        text="\n".join(str(p) for p in parts),
                        weak=float(row["mistralai/mixtral-8x7b-chat"]),
                        strong=float(row["gpt-4-1106-preview"]),
                    )
                )
    return examples

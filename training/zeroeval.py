"""ZeroEval's zero-shot results (yuchenlin/ZeroEval, Apache-2.0) as routing labels.

    python -m training.zeroeval --git-dir /path/to/ZeroEval.git [--reference DIR]

ZeroEval ran many models zero-shot on a few benchmarks with one prompt shape:
the task's question, then an instruction to answer as a JSON object with
`reasoning` and `answer` (`solution` for ZebraLogic). Each
`result_dirs/<task>/<model>.json` keeps every item's question, gold answer and
the model's raw output. This module reads them at a pinned commit, decides per
model and item whether the output is right, and turns each item into a
`data.Example`: the question as a user would send it (never the JSON
instruction), the mean correctness of the weak models and of the strong ones.

Which tasks. `crux` (CRUXEval output prediction, 800 items), `math-l5` (MATH
level 5, 721 items with numeric answers) and `numersense-v2` (512 items).
`numersense-v2` is eight pairs of decimals ("9.9 or 9.11") asked in 64
wordings each: it is loaded, but it teaches one narrow skill through many
near-identical prompts, so whether to train on it is the caller's choice
(the source name makes it easy to drop). `zebra-grid` is scored by
`zebra_solved`, but yields no examples: the gold grids live in a private
dataset (allenai/ZebraLogicBench-private) that the repository does not hold,
and at the pinned commit only one model's file (16 of 1,000 puzzles) is
readable. `mmlu-redux` and `gsm` are MMLU and GSM8K, the evaluation sets, and
are never read.

How an output is scored, following ZeroEval's own evaluation
(`src/evaluation/*.py` at the pinned commit) so the accuracies agree with its
published summaries (`result_dirs/<task>.summary.json`; `main` prints both):

- The answer is the `answer` of the first complete `{...}` in the output if
  that parses as JSON; else a `"answer": "..."` or `answer: value` pair found
  by pattern; else, when the output ends in `\\boxed{x}`, that `x`. ZeroEval
  takes the boxed answer from Llama-3.1 models only; here every model gets it,
  since a boxed final answer is the model's answer whoever wrote it.
- crux: the answer and the gold, quotes stripped from both ends, are equal as
  strings (the gold is a Python literal; a JSON `true` reads back as `True`).
- math-l5, numersense-v2: `$` and `,` removed, a plain fraction evaluated
  (`3/4` → 0.75), then the first number of each compared as floats. Coarse
  (`2\\sqrt{3}` scores as 2), but 719 of math-l5's 721 gold answers are plain
  integers and every numersense gold is a decimal.
- zebra-grid: solved when every cell of the gold grid is in the output's last
  complete JSON object, equal after case folding and trimming.

The cross-check (`main`): math-l5 and numersense-v2 agree with ZeroEval's
summaries to the hundredth for every model but one (Phi-3-mini, +0.27 on
math-l5: two boxed answers). crux comes out 0.75-2.5 points above its
summary for every model: `crux.summary.json` was written before two fixes to
ZeroEval's crux scoring (2024-09-22: an answer's line breaks compared as
`\\n`, empty answers); the scoring at the pinned commit, which this module
follows, gives the numbers printed here.

Which models. One fixed tuple per side, each member used for a task only when
its file is readable and covers every item of the task (so every item of a
task is averaged over the same models; a file with missing items is left out,
never averaged over what it has):

- weak: the 7-9B open chat models plus Mixtral-8x7B, the class a
  self-hosted weak tier runs. The 2-4B models (gemma-2-2b, Qwen2.5-3B,
  Phi-3/3.5-mini) are left out: they fail so much that their misses say
  more about size than about the item.
- strong: GPT-4-class chat models, the class a strong tier is: GPT-4 (0314,
  turbo-2024-04-09), GPT-4o (2024-05-13), Claude 3 Opus, Claude 3.5 Sonnet,
  Llama-3.1-405B and Qwen2.5-72B. The o1 models are left out (reasoning
  models, a tier of their own), and so are later snapshots of the same model
  (gpt-4o-2024-08-06, chatgpt-4o-latest), which would count one model twice.
  Llama-3.1-405B is the SambaNova run, the one present with every item in
  both crux and math-l5.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.data import Example
from training.report import report_means, report_overlap, source_main

ZEROEVAL_COMMIT = "570c6269a2e4930ee06a17e713fece1ba52cf1dd"

WEAK_MODELS = (
    "Meta-Llama-3-8B-Instruct",
    "Meta-Llama-3.1-8B-Instruct",
    "Qwen2-7B-Instruct",
    "Qwen2.5-7B-Instruct",
    "gemma-2-9b-it",
    "Yi-1.5-9B-Chat",
    "Mixtral-8x7B-Instruct-v0.1",
)
STRONG_MODELS = (
    "gpt-4-turbo-2024-04-09",
    "gpt-4-0314",
    "gpt-4o-2024-05-13",
    "claude-3-opus-20240229",
    "claude-3-5-sonnet-20240620",
    "Llama-3.1-405B-Inst@sambanova",
    "Qwen2.5-72B-Instruct",
)

Kind = Literal["exact", "number", "grid"]


@dataclass(frozen=True, slots=True)
class Task:
    """One ZeroEval task: where its files are, the question's field, how it is scored."""

    name: str
    question_key: str
    kind: Kind
    size: int


TASKS = (
    Task("crux", "question", "exact", 800),
    Task("math-l5", "problem", "number", 721),
    Task("zebra-grid", "puzzle", "grid", 1000),
    Task("numersense-v2", "question", "number", 512),
)

# ZeroEval's summaries name a few models differently from their files.
SUMMARY_NAMES = {
    "Meta-Llama-3.1-405B-Instruct@hyperbolic": "Llama-3.1-405B-Inst@hyperbolic",
    "Llama-3.1-405B-Inst-fp8": "Llama-3.1-405B-Inst-fp8@together",
    "deepseek-chat": "deepseek-v2-chat-0628",
    "gemma-2-9b-it@nvidia": "gemma-2-9b-it",
    "gemma-2-27b-it@nvidia": "gemma-2-27b-it",
}


# ---- answer extraction (pure) ----


def _object_spans(text: str) -> list[tuple[int, int]]:
    """Start and end of each top-level `{...}`, by counting braces (strings not parsed)."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, index + 1))
    return spans


def _parse_object(text: str) -> object | None:
    # Models break lines inside JSON strings, which JSON forbids; ZeroEval drops
    # the line breaks before parsing, and so do we, so the two scores agree.
    try:
        parsed: object = json.loads(text.replace("\n", ""))
    except ValueError:
        return None
    return parsed


def first_json_object(text: str) -> object | None:
    """The first complete `{...}` of `text` parsed as JSON; None if it does not parse.

    >>> first_json_object('Sure: {"answer": 4} and {"answer": 5}')
    {'answer': 4}
    """
    spans = _object_spans(text)
    return _parse_object(text[spans[0][0] : spans[0][1]]) if spans else None


def last_json_object(text: str) -> object | None:
    """The last complete `{...}` of `text` parsed as JSON; None if it does not parse."""
    spans = _object_spans(text)
    return _parse_object(text[spans[-1][0] : spans[-1][1]]) if spans else None


_QUOTED_ANSWER = re.compile(r'"answer"\s*:\s*"([^"]*?)"')
_BARE_ANSWER = re.compile(r'"answer"\s*:\s*([^,\s]*)')
_UNQUOTED_KEY_ANSWER = re.compile(r"answer\s*:\s*([^,\s]*)")
_BOXED = re.compile(r"\\boxed{([\w\d]+)}")
_BOXED_TAIL = 30


def answer_of(output: str) -> str | None:
    """The model's answer in `output` as text, or None when it gave none.

    >>> answer_of('{"reasoning": "...", "answer": "[1, 2]"}')
    '[1, 2]'
    """
    parsed = first_json_object(output)
    if isinstance(parsed, dict) and "answer" in parsed:
        return str(parsed["answer"])
    for pattern in (_QUOTED_ANSWER, _BARE_ANSWER, _UNQUOTED_KEY_ANSWER):
        match = pattern.search(output)
        if match:
            return match.group(1)
    if "boxed" in output[-_BOXED_TAIL:]:
        match = _BOXED.search(output)
        if match:
            return match.group(1)
    return None


# ---- comparison (pure) ----


def exact_correct(answer: str | None, gold: str) -> bool:
    """crux: equal as text once quotes are stripped from both ends.

    The answer's line breaks are compared as `\\n`, the way the gold literal writes them.
    """
    if answer is None:
        return False
    return answer.strip("'\"").replace("\n", "\\n") == gold.strip("'\"")


_OPERATORS: Mapping[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _arithmetic(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError("not plain arithmetic")


def sanitise_number(text: str) -> str:
    """`$` and `,` removed; a plain arithmetic fraction (`3/4`, `-(1+2)/6`) replaced by its value."""
    text = text.replace("$", "").strip().replace(",", "")
    if "/" in text:
        try:
            return str(_arithmetic(ast.parse(text, mode="eval").body))
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
            return text
    return text


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def first_number(text: str) -> float | None:
    """The first number in `text` (after `sanitise_number`), or None."""
    match = _NUMBER.search(sanitise_number(text))
    return float(match.group()) if match else None


def number_correct(answer: str | None, gold: str) -> bool:
    """math-l5, numersense-v2: the first numbers of answer and gold are equal."""
    if answer is None:
        return False
    mine = first_number(answer)
    truth = first_number(gold.replace("#", ""))
    return mine is not None and truth is not None and mine == truth


def _cell(value: object) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    return str(value).strip().lower()


def zebra_solved(output: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """zebra-grid: every cell of the gold grid (`header` starts with "House") is in the output.

    The output's last complete JSON object must hold `{"solution": {"House 1":
    {"Name": "Arnold", ...}, ...}}`; cells compare case-folded and trimmed; a
    list holds its first element.
    """
    parsed = last_json_object(output)
    solution = parsed.get("solution") if isinstance(parsed, dict) else None
    if not isinstance(solution, dict):
        return False
    for number, row in enumerate(rows, start=1):
        house = solution.get(f"House {number}")
        if not isinstance(house, dict):
            return False
        for column, truth in zip(header[1:], row[1:], strict=True):
            if _cell(house.get(column)) != truth.strip().lower():
                return False
    return True


def is_correct(kind: Kind, output: str, gold: str) -> bool:
    """Whether `output` answers an item of a task of `kind` with `gold` (crux or number tasks)."""
    if kind == "exact":
        return exact_correct(answer_of(output), gold)
    if kind == "number":
        return number_correct(answer_of(output), gold)
    raise ValueError("zebra-grid needs the gold grid: use zebra_solved")


# ---- reading the repository ----


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One model's scored file of one task."""

    model: str
    correct: dict[str, bool]
    total: int


@dataclass(frozen=True, slots=True)
class TaskResults:
    """Every readable model of one task, the items' questions, and the files that could not be read."""

    task: Task
    questions: dict[str, str]
    runs: dict[str, ModelRun]
    unreadable: tuple[str, ...]


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, check=False)


def _model_files(git_dir: Path, task: Task) -> list[str]:
    listing = _git(git_dir, "ls-tree", "--name-only", f"{ZEROEVAL_COMMIT}:result_dirs/{task.name}/")
    listing.check_returncode()
    return sorted(name for name in listing.stdout.decode().splitlines() if name.endswith(".json"))


def read_task(git_dir: Path, task: Task) -> TaskResults:
    """Score every readable top-level model file of `task` (greedy runs; the sampling folders are skipped)."""
    questions: dict[str, str] = {}
    runs: dict[str, ModelRun] = {}
    unreadable: list[str] = []
    for name in _model_files(git_dir, task):
        shown = _git(git_dir, "show", f"{ZEROEVAL_COMMIT}:result_dirs/{task.name}/{name}")
        model = name.removesuffix(".json")
        if shown.returncode != 0:
            unreadable.append(model)
            continue
        rows = json.loads(shown.stdout)
        correct: dict[str, bool] = {}
        for row in rows:
            item_id = str(row["id"])
            question = str(row[task.question_key])
            # Items are joined across model files by id: a file that asks another question under it is a bug.
            if questions.setdefault(item_id, question) != question:
                raise ValueError(f"{task.name}/{name}: item {item_id} differs from the other files")
            if task.kind != "grid":
                correct[item_id] = is_correct(task.kind, str(row["output"][0]), str(row["answer"]))
        runs[model] = ModelRun(model, correct, len(rows))
    return TaskResults(task, questions, runs, tuple(unreadable))


def side_models(results: TaskResults, wanted: Sequence[str]) -> tuple[str, ...]:
    """The members of `wanted` readable for this task with every one of its items scored."""
    return tuple(
        model
        for model in wanted
        if model in results.runs and len(results.runs[model].correct) == results.task.size == len(results.questions)
    )


def examples_of(results: TaskResults) -> list[Example]:
    """One example per item, or none when a side has no usable model."""
    weak = side_models(results, WEAK_MODELS)
    strong = side_models(results, STRONG_MODELS)
    if not weak or not strong:
        return []
    return [
        Example(
            id=f"zeroeval-{results.task.name}:{item_id}",
            source=f"zeroeval-{results.task.name}",
            text=text,
            weak=sum(results.runs[m].correct[item_id] for m in weak) / len(weak),
            strong=sum(results.runs[m].correct[item_id] for m in strong) / len(strong),
        )
        for item_id, text in sorted(results.questions.items(), key=lambda pair: _id_key(pair[0]))
    ]


def _id_key(item_id: str) -> tuple[int, str]:
    return (int(item_id), "") if item_id.isdigit() else (0, item_id)


def load_zeroeval(git_dir: Path) -> list[Example]:
    """The examples of crux, math-l5 and numersense-v2 (zebra-grid yields none: no gold grids)."""
    examples: list[Example] = []
    for task in TASKS:
        if task.kind != "grid":
            examples.extend(examples_of(read_task(git_dir, task)))
    return examples


# ---- the cross-check ----


def published_accuracies(git_dir: Path, task: Task) -> dict[str, float]:
    """ZeroEval's own greedy accuracies for `task`, by model name as its summary writes it."""
    shown = _git(git_dir, "show", f"{ZEROEVAL_COMMIT}:result_dirs/{task.name}.summary.json")
    shown.check_returncode()
    return {
        str(row["Model"]): float(row["Acc"])
        for row in json.loads(shown.stdout)
        if row.get("Mode") == "greedy" and "Acc" in row
    }


def print_report(git_dir: Path, reference: Path | None, out: Callable[[str], None] = print) -> list[Example]:
    """Per task: every model's accuracy here and in ZeroEval's summary; the sides; then the overlap check."""
    examples: list[Example] = []
    for task in TASKS:
        results = read_task(git_dir, task)
        out(f"\n== {task.name}: {len(results.questions)} items seen, {len(results.runs)} model files readable")
        if results.unreadable:
            out(f"   unreadable at {ZEROEVAL_COMMIT[:12]} (skipped): {', '.join(results.unreadable)}")
        if task.kind == "grid":
            out("   no examples: the gold grids are in allenai/ZebraLogicBench-private, not in the repository")
            continue
        published = published_accuracies(git_dir, task)
        out(f"   {'model':42s} {'items':>5s} {'here':>6s} {'zeroeval':>8s} {'diff':>6s}")
        for model, run in sorted(results.runs.items()):
            here = 100 * sum(run.correct.values()) / run.total
            theirs = published.get(SUMMARY_NAMES.get(model, model))
            shown = f"{theirs:8.2f} {here - theirs:+6.2f}" if theirs is not None else f"{'-':>8s} {'':>6s}"
            out(f"   {model:42s} {run.total:5d} {here:6.2f} {shown}")
        weak = side_models(results, WEAK_MODELS)
        strong = side_models(results, STRONG_MODELS)
        task_examples = examples_of(results)
        out(f"   weak side ({len(weak)}): {', '.join(weak) or 'none'}")
        out(f"   strong side ({len(strong)}): {', '.join(strong) or 'none'}")
        report_means(task_examples, out)
        examples.extend(task_examples)
    report_overlap(examples, reference, out)
    return examples


def main(argv: Sequence[str] | None = None) -> int:
    return source_main(argv, __doc__.splitlines()[0] if __doc__ else None, "yuchenlin/ZeroEval", print_report)


if __name__ == "__main__":
    raise SystemExit(main())

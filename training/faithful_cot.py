"""Faithful-CoT's per-item predictions (veronica320/Faithful-COT, MIT) as routing labels.

    python -m training.faithful_cot --git-dir /path/to/Faithful-COT.git [--reference DIR]

Faithful-CoT (Lyu et al., 2023) ran six OpenAI models, each with five prompt
styles, on ten reasoning benchmarks and kept every prediction:
`output_dir/<DATASET>/test/<model>_<prompt>/predictions.jsonl` holds one
`{id, answer, completion, completions}` line per item, joined on `id` to the
questions in `data/<DATASET>/test.jsonl` (`{id, question, answer}`, AQuA also
`options`). This module reads them at a pinned commit, scores every prediction,
and turns each item into a `data.Example`.

Which datasets. The four grade-school maths sets that are not GSM8K: SVAMP
(1,000 items), ASDiv (2,097), MultiArith (596) and AQuA (254, five-option
algebra); and StrategyQA (2,290 yes/no questions that need implicit
world-knowledge steps, MIT). GSM8K is one of the evaluation sets and is never
read (`EXCLUDED_DATASETS`); the other benchmarks of the repository (date,
sports, SayCan, CLUTRR) are off target and are not read either. ASDiv and
MultiArith come without a license we could find upstream: they are
`VALIDATION_ONLY` (used to choose settings, never fitted for shipped
weights).

Which models. The repository's models are code-davinci-001/002,
text-davinci-002/003, gpt-3.5-turbo and gpt-4 (the `LM` of each config file).
The weak side is the five models below GPT-4 (`WEAK_MODELS`): together they
span the range from far below to about the evaluation pair's weak model
(Mixtral-8x7B), so the mean says how hard an item is for a weak tier. The
strong side is gpt-4, the evaluation pair's strong model. A model's score on
an item is the mean over its prompt styles (standard, COT, LtM, noNL, NL+SL)
whose predictions file is readable and covers every item of the dataset; a
side's score is the mean over its models with at least one such file. For a
dataset with a chance level (a guess among few answers: yes/no, five
options), a style no model beats chance with by `NEAR_CHANCE` is left out:
its runs are coin flips and say nothing about the item (StrategyQA's noNL,
whose Datalog programs score 0.49-0.56 for every model).

How an answer is scored, following the repository's own evaluator
(`source/evaluate/evaluate_answer_acc.py` and `source/dataset/utils.py` at the
pinned commit), with one change:

- Numbers (SVAMP, MultiArith, ASDiv): the answer is split on commas (after
  dropping thousands separators) and each part's last `:`-field parsed as a
  number (`3/4` and `1 1/2` as fractions), then truncated to an integer and
  made positive, as the repository does; ASDiv's multi-value answers compare
  as multisets. The change: when no part parses, the `answer` field is not an
  answer but a sentence or a whole rationale (the repository's extraction
  failed; gpt-4's COT runs do this for up to a quarter of the items), and the
  last number in it is taken. The repository would take the first number
  (SVAMP, MultiArith) or score it wrong (ASDiv).
- AQuA: the answer is the option letter, alone or followed by a remark in
  brackets (`E (None of these`); `A or D` is no answer.
- StrategyQA: the `answer` field is `True`/`False` (a JSON boolean or the
  string). When it is anything else (`[invalid]`: the repository reads the
  word after the completion's last "answer is" and found no bare yes/no, as
  for a third of gpt-4's replies), that word is read again allowing
  punctuation after it ("the answer is no, because ..."), and failing that the
  leading "Yes"/"No" of the completion's last line (the final answer of a
  least-to-most reply, the whole of a one-line reply); a reply that gives neither ("The answer is
  likely no", "It depends", "As an AI language model ...") is a hedge and
  wrong.
- An answer containing `[invalid]` (the program failed) is wrong.

`main` prints every run's accuracy next to the repository's own
`output_dir/performance_summary.csv` (which has code-davinci-002's runs only),
then the sides and the overlap check.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from training.data import Example, format_prompt
from training.report import report_means, report_overlap, source_main

FAITHFUL_COT_COMMIT = "301784317c99cf348cfad92a1b3e8810900e095b"

# Directory names of the repository's runs; `MODEL_NAMES` says which model each is.
WEAK_MODELS = ("code001", "code002", "text002", "text003", "gpt-3.5-turbo")
STRONG_MODELS = ("gpt4",)
MODEL_NAMES = {
    "code001": "code-davinci-001",
    "code002": "code-davinci-002",
    "text002": "text-davinci-002",
    "text003": "text-davinci-003",
    "gpt-3.5-turbo": "gpt-3.5-turbo",
    "gpt4": "gpt-4",
}
PROMPTS = ("standard", "COT", "LtM", "noNL", "NL+SL")
# A style whose every model's accuracy is below chance + this is left out (datasets with a chance level).
NEAR_CHANCE = 0.1
EXCLUDED_DATASETS = ("GSM8K",)
# No license found upstream: used to choose settings, never to fit shipped weights.
VALIDATION_ONLY = ("fcot-asdiv", "fcot-multiarith")

Kind = Literal["number", "choice", "boolean"]


@dataclass(frozen=True, slots=True)
class Dataset:
    """One benchmark of the repository: its directory, our source name, how it is scored, its size.

    `chance` is the accuracy of a guess (None when answers are open numbers).
    """

    name: str
    source: str
    kind: Kind
    size: int
    chance: float | None = None


DATASETS = (
    Dataset("SVAMP", "fcot-svamp", "number", 1000),
    Dataset("ASDiv", "fcot-asdiv", "number", 2097),
    Dataset("MultiArith", "fcot-multiarith", "number", 596),
    Dataset("AQUA", "fcot-aqua", "choice", 254, chance=0.2),
    Dataset("StrategyQA", "fcot-strategyqa", "boolean", 2290, chance=0.5),
)

Gold = tuple[int, ...] | str | bool


# ---- scoring (pure) ----

INVALID = "[invalid]"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_CHOICE = re.compile(r"([A-E])(?:\s*\(.*)?", re.DOTALL)
_LEADING_YES_NO = re.compile(r"\s*(yes|no)\b", re.IGNORECASE)
_ANSWER_IS_YES_NO = re.compile(r"answer is (yes|no)\b", re.IGNORECASE)


def to_integer(text: str) -> int | None:
    """A number as the repository reads it: fractions summed (`1 1/2`), truncated, made positive."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(sum(Fraction(part) for part in text.split())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return abs(int(value))


def answer_numbers(answer: str) -> tuple[int, ...]:
    """The integers an `answer` field gives, sorted; () when it gives none.

    >>> answer_numbers("(10, 5)"), answer_numbers("So, you pay $51 for each pack")
    ((5, 10), (51,))
    """
    if INVALID in answer:
        return ()
    parts = _THOUSANDS.sub("", answer).strip().lstrip("{([").rstrip("]})").split(",")
    values = [to_integer(part.strip().split(":")[-1].strip("'\" $")) for part in parts]
    found = [v for v in values if v is not None]
    if found:
        return tuple(sorted(found))
    numbers = _NUMBER.findall(_THOUSANDS.sub("", answer))
    last = to_integer(numbers[-1]) if numbers else None
    return () if last is None else (last,)


def gold_numbers(raw: object) -> tuple[int, ...]:
    """The gold answer: `#### 51` (SVAMP, MultiArith), `"9"` or a list of values (ASDiv)."""
    if isinstance(raw, list):
        return tuple(sorted(int(v) for v in raw))
    text = str(raw)
    if "####" in text:
        text = text.split("####")[-1]
    return (int(text.strip().replace(",", "")),)


def answer_choice(answer: str) -> str | None:
    """The option letter of an AQuA answer, or None.

    >>> answer_choice("E (None of these"), answer_choice("A or D")
    ('E', None)
    """
    match = _CHOICE.fullmatch(answer.strip())
    return match.group(1) if match else None


def answer_boolean(answer: str, completion: str = "") -> bool | None:
    """A StrategyQA prediction: the `answer` field when it is True/False, else what the completion says.

    The completion is read as the repository reads it (the word after its last
    "answer is"), except that punctuation after the word is allowed ("the
    answer is no, because ..."), and, failing that, by the leading yes/no of
    its last line (the final answer of a least-to-most reply; the whole reply
    when it is one line).

    >>> answer_boolean("False"), answer_boolean("[invalid]", "Yes, it is."), answer_boolean("[invalid]", "It depends")
    (False, True, None)
    """
    field = answer.strip().lower()
    if field in ("true", "false"):
        return field == "true"
    last = completion.rsplit("answer is ", 1)
    match = _ANSWER_IS_YES_NO.match("answer is " + last[1]) if len(last) == 2 else None
    lines = [line for line in completion.splitlines() if line.strip()]
    match = match or _LEADING_YES_NO.match(lines[-1] if lines else "")
    return None if match is None else match.group(1).lower() == "yes"


def is_correct(kind: Kind, answer: str, gold: Gold, completion: str = "") -> bool:
    """Whether an `answer` field (with its run's `completion`) is right for an item of a dataset of `kind`."""
    if kind == "boolean":
        found = answer_boolean(answer, completion)
        return found is not None and found is gold
    if kind == "choice":
        return answer_choice(answer) == gold
    found = answer_numbers(answer)
    return bool(found) and found == gold


def aqua_prompt(question: str, options: Sequence[str]) -> str:
    """AQuA's question as a user would send it: the repository's inline option list replaced by lettered lines."""
    question = question.split("\n# Answer option:")[0].rstrip()
    labels: list[str] = []
    texts: list[str] = []
    for option in options:
        match = re.fullmatch(r"([A-E])\)(.*)", option.strip(), re.DOTALL)
        if match is None:
            raise ValueError(f"AQuA option not in the form 'A)text': {option!r}")
        labels.append(match.group(1))
        texts.append(match.group(2).strip())
    return format_prompt(question, {"label": labels, "text": texts}, "mc")


# ---- reading the repository ----


@dataclass(frozen=True, slots=True)
class Item:
    """One question: the prompt a user would send and the gold answer."""

    text: str
    gold: Gold


@dataclass(frozen=True, slots=True)
class DatasetResults:
    """One dataset's items, its scored runs that cover every item, and the runs left out."""

    dataset: Dataset
    items: dict[int, Item]
    runs: dict[tuple[str, str], dict[int, bool]]
    left_out: tuple[str, ...]


def _show(git_dir: Path, commit: str, path: str) -> bytes | None:
    shown = subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], capture_output=True, check=False
    )
    return shown.stdout if shown.returncode == 0 else None


def _lines(raw: bytes) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    return [row for row in rows if row]


def read_items(git_dir: Path, dataset: Dataset, commit: str = FAITHFUL_COT_COMMIT) -> dict[int, Item]:
    """The questions of `dataset` by id."""
    if dataset.name in EXCLUDED_DATASETS:
        raise ValueError(f"{dataset.name} is an evaluation set and is never read")
    raw = _show(git_dir, commit, f"data/{dataset.name}/test.jsonl")
    if raw is None:
        raise FileNotFoundError(f"data/{dataset.name}/test.jsonl not at {commit[:12]} in {git_dir}")
    items: dict[int, Item] = {}
    for row in _lines(raw):
        item_id = int(str(row["id"]))
        question = str(row["question"])
        if dataset.kind == "choice":
            options = row["options"]
            if not isinstance(options, list):
                raise ValueError(f"{dataset.name} item {item_id}: options are not a list")
            item = Item(aqua_prompt(question, [str(o) for o in options]), str(row["answer"]).strip())
        elif dataset.kind == "boolean":
            if not isinstance(row["answer"], bool):
                raise ValueError(f"{dataset.name} item {item_id}: answer is not a boolean")
            item = Item(question, row["answer"])
        else:
            item = Item(question, gold_numbers(row["answer"]))
        if items.setdefault(item_id, item) != item:
            raise ValueError(f"{dataset.name}: two items with id {item_id}")
    return items


def score_run(dataset: Dataset, items: Mapping[int, Item], raw: bytes) -> dict[int, bool]:
    """Each prediction of one run that answers a known item, scored (a repeated id keeps its first line)."""
    correct: dict[int, bool] = {}
    for row in _lines(raw):
        item_id = int(str(row["id"]))
        if item_id in items and item_id not in correct:
            answer, completion = str(row.get("answer", "")), str(row.get("completion", ""))
            correct[item_id] = is_correct(dataset.kind, answer, items[item_id].gold, completion)
    return correct


def read_dataset(git_dir: Path, dataset: Dataset, commit: str = FAITHFUL_COT_COMMIT) -> DatasetResults:
    """Every run of the weak and strong models on `dataset`; a run missing any item is left out."""
    items = read_items(git_dir, dataset, commit)
    runs: dict[tuple[str, str], dict[int, bool]] = {}
    left_out: list[str] = []
    for model in (*WEAK_MODELS, *STRONG_MODELS):
        for prompt in PROMPTS:
            raw = _show(git_dir, commit, f"output_dir/{dataset.name}/test/{model}_{prompt}/predictions.jsonl")
            if raw is None:
                left_out.append(f"{model}_{prompt} (unreadable)")
                continue
            correct = score_run(dataset, items, raw)
            if len(correct) < len(items):
                left_out.append(f"{model}_{prompt} ({len(correct)} of {len(items)} items)")
                continue
            runs[(model, prompt)] = correct
    for prompt, best in near_chance_styles(dataset, runs).items():
        left_out.append(f"{prompt} (no model {NEAR_CHANCE:g} above chance {dataset.chance:g}: best {best:.3f})")
        runs = {key: correct for key, correct in runs.items() if key[1] != prompt}
    return DatasetResults(dataset, items, runs, tuple(left_out))


def near_chance_styles(dataset: Dataset, runs: Mapping[tuple[str, str], Mapping[int, bool]]) -> dict[str, float]:
    """The prompt styles whose every run scores below chance + `NEAR_CHANCE`, with their best accuracy."""
    if dataset.chance is None:
        return {}
    best: dict[str, float] = {}
    for (_, prompt), correct in runs.items():
        best[prompt] = max(best.get(prompt, 0.0), sum(correct.values()) / len(correct))
    return {prompt: acc for prompt, acc in best.items() if acc < dataset.chance + NEAR_CHANCE}


def side_models(results: DatasetResults, wanted: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The members of `wanted` with at least one covering run, and those runs' prompt styles."""
    found = {model: tuple(p for p in PROMPTS if (model, p) in results.runs) for model in wanted}
    return {model: prompts for model, prompts in found.items() if prompts}


def side_score(results: DatasetResults, side: Mapping[str, Sequence[str]], item_id: int) -> float:
    """The mean over the side's models of each model's mean over its prompt styles."""
    per_model = [sum(results.runs[(m, p)][item_id] for p in prompts) / len(prompts) for m, prompts in side.items()]
    return sum(per_model) / len(per_model)


def model_accuracy(results: DatasetResults, model: str, prompts: Sequence[str]) -> float:
    """One model's accuracy on the dataset, averaged over `prompts`."""
    return sum(side_score(results, {model: prompts}, i) for i in results.items) / len(results.items)


def examples_of(results: DatasetResults) -> list[Example]:
    """One example per item, or none when a side has no covering run."""
    weak = side_models(results, WEAK_MODELS)
    strong = side_models(results, STRONG_MODELS)
    if not weak or not strong:
        return []
    return [
        Example(
            id=f"{results.dataset.source}:{item_id}",
            source=results.dataset.source,
            text=item.text,
            weak=side_score(results, weak, item_id),
            strong=side_score(results, strong, item_id),
        )
        for item_id, item in sorted(results.items.items())
    ]


def load_faithful_cot(git_dir: Path, commit: str = FAITHFUL_COT_COMMIT) -> list[Example]:
    """SVAMP, ASDiv, MultiArith, AQuA and StrategyQA items (sources `fcot-*`; see `VALIDATION_ONLY`)."""
    examples: list[Example] = []
    for dataset in DATASETS:
        examples.extend(examples_of(read_dataset(git_dir, dataset, commit)))
    return examples


def split_shippable(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(items that may be fitted, validation-only items)."""
    return (
        [e for e in examples if e.source not in VALIDATION_ONLY],
        [e for e in examples if e.source in VALIDATION_ONLY],
    )


# ---- the cross-check ----


def published_accuracies(git_dir: Path, commit: str = FAITHFUL_COT_COMMIT) -> dict[tuple[str, str], float]:
    """The repository's own accuracies (percent) by (run, dataset), for our datasets only."""
    raw = _show(git_dir, commit, "output_dir/performance_summary.csv")
    if raw is None:
        return {}
    wanted = {d.name for d in DATASETS}
    table: dict[tuple[str, str], float] = {}
    for row in csv.DictReader(io.StringIO(raw.decode())):
        run = row.get("") or ""
        for name in wanted:
            value = row.get(name)
            if value:
                table[(run, name)] = float(value)
    return table


def print_report(git_dir: Path, reference: Path | None, out: Callable[[str], None] = print) -> list[Example]:
    """Per dataset: every run's accuracy here and in the repository's summary; the sides; the overlap check."""
    published = published_accuracies(git_dir)
    examples: list[Example] = []
    for dataset in DATASETS:
        results = read_dataset(git_dir, dataset)
        role = "validation only" if dataset.source in VALIDATION_ONLY else "training"
        out(f"\n== {dataset.name} ({dataset.source}, {role}): {len(results.items)} items")
        if results.left_out:
            out(f"   left out: {', '.join(results.left_out)}")
        out(f"   {'run':26s} {'here':>6s} {'repo':>6s} {'diff':>6s}")
        for (model, prompt), correct in results.runs.items():
            here = 100 * sum(correct.values()) / len(correct)
            theirs = published.get((f"{model}_{prompt}", dataset.name))
            shown = f"{theirs:6.1f} {here - theirs:+6.1f}" if theirs is not None else f"{'-':>6s}"
            out(f"   {model + '_' + prompt:26s} {here:6.1f} {shown}")
        for label, wanted in (("weak", WEAK_MODELS), ("strong", STRONG_MODELS)):
            side = side_models(results, wanted)
            means = [f"{MODEL_NAMES[m]} {model_accuracy(results, m, p):.3f}" for m, p in side.items()]
            out(f"   {label} side ({len(side)}): {', '.join(means) or 'none'}")
        dataset_examples = examples_of(results)
        report_means(dataset_examples, out)
        examples.extend(dataset_examples)
    report_overlap(examples, reference, out)
    return examples


def main(argv: Sequence[str] | None = None) -> int:
    return source_main(argv, __doc__.splitlines()[0] if __doc__ else None, "veronica320/Faithful-COT", print_report)


if __name__ == "__main__":
    raise SystemExit(main())

"""MMLU-Pro's per-model results on its non-MMLU questions (TIGER-AI-Lab/MMLU-Pro, Apache-2.0).

    python -m training.mmlu_pro --git-dir /path/to/MMLU-Pro.git [--reference DIR]

MMLU-Pro is 12,032 ten-option questions. 6,810 of them are MMLU questions with
added options; the other 5,222 come from a STEM problem site (`stemez-*`),
TheoremQA (`theoremQA-*`) and SciBench (`scibench-*`). Every question carries
its origin in the `src` field, and everything whose origin is MMLU
(`ori_mmlu-*`) is dropped here, before any text is compared: that is the
reuse the overlap check cannot see by name alone, since every question of
the set sits under one benchmark name. What remains is then overlap-checked
by text like any other source (4 near copies of MMLU mathematics questions
are flagged at the pinned commit).

The repository keeps each model's 5-shot run as a zip of JSON records
(`eval_results/model_outputs_<model>_5shots.zip`: question, options, gold
letter, category, origin, predicted letter). Some zips are missing from the
mirror (the largest files), including every GPT-4-class run; the ones used
here are all readable.

Which models: the weak side is Mixtral-8x7B-Instruct, the weak model of the
RouteLLM evaluation sets (37% on these questions). The strong side is the
mean of the three strongest readable runs: Gemini 1.5 Pro (71%), Gemini 1.5
Flash (64%) and Llama-3.1-70B-Instruct (60%). The two Gemini runs lack a few
items (6 and 13 of 5,222): an item's strong score is the mean over the strong
runs that have it.

Each item becomes a `data.Example` whose text is the question and its
lettered options (`A.` to `J.`) and whose source is `stemqa-<category>`
(physics, chemistry, ...), so leave-one-source-out is leave-one-subject-out.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from training import overlap
from training.data import Example, format_prompt, git_show

MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
WEAK_MODELS = ("Mixtral-8x7B-Instruct-v0.1",)
STRONG_MODELS = ("gemini-1.5-pro-002", "gemini-1.5-flash-002", "Meta-Llama-3_1-70B-Instruct")
MMLU_ORIGIN = "ori_mmlu"

Record = Mapping[str, object]


def results_path(model: str) -> str:
    return f"eval_results/model_outputs_{model}_5shots.zip"


def read_results(git_dir: Path, model: str, commit: str = MMLU_PRO_COMMIT) -> dict[str, Record]:
    """One model's records by question id (the zip holds one JSON list)."""
    with zipfile.ZipFile(io.BytesIO(git_show(git_dir, commit, results_path(model)))) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".json")]
        records = orjson.loads(archive.read(name))
    # A few runs hold stray non-record entries (strings) in the list.
    return {str(r["question_id"]): r for r in records if isinstance(r, dict)}


def is_mmlu_derived(record: Record) -> bool:
    """True for questions MMLU-Pro took from MMLU (by its own `src` provenance)."""
    return str(record.get("src", "")).startswith(MMLU_ORIGIN)


def correct(record: Record) -> float:
    return 1.0 if record.get("pred") is not None and record.get("pred") == record.get("answer") else 0.0


def _options(record: Record) -> list[str]:
    options = record["options"]
    if isinstance(options, str):
        options = ast.literal_eval(options)
    if not isinstance(options, list):
        raise ValueError(f"question {record.get('question_id')}: options are not a list")
    return [str(o) for o in options]


def examples_of(
    weak_runs: Sequence[Mapping[str, Record]], strong_runs: Sequence[Mapping[str, Record]]
) -> list[Example]:
    """Examples for the non-MMLU questions every weak run and at least one strong run answered.

    The question text and options are taken from the first weak run. The runs
    were made on different revisions of the data set: spacing fixes are
    ignored, but a run that asked a different question under the same id (a
    changed number, say: two items at the pinned commit) does not count for
    that item, and the item is dropped when that run is a weak one.
    """
    if not weak_runs or not strong_runs:
        raise ValueError("need at least one weak and one strong run")
    examples: list[Example] = []
    for qid, record in sorted(weak_runs[0].items(), key=lambda item: (len(item[0]), item[0])):
        if is_mmlu_derived(record):
            continue
        weak = [_same_item(run.get(qid), record) for run in weak_runs]
        strong = [r for r in (_same_item(run.get(qid), record) for run in strong_runs) if r is not None]
        if any(r is None for r in weak) or not strong:
            continue
        category = str(record["category"]).replace(" ", "_")
        examples.append(
            Example(
                id=f"mmlupro:{qid}",
                source=f"stemqa-{category}",
                text=format_prompt(str(record["question"]), _options(record), "mc"),
                weak=sum(correct(r) for r in weak if r is not None) / len(weak),
                strong=sum(correct(r) for r in strong) / len(strong),
            )
        )
    return examples


def _squeezed(text: object) -> str:
    return "".join(str(text).split()).lower()


def _same_item(other: Record | None, record: Record) -> Record | None:
    """`other` when it asks `record`'s question with the same options, else None."""
    if other is None or _squeezed(other.get("question")) != _squeezed(record.get("question")):
        return None
    return other if other.get("options") == record.get("options") else None


def load_mmlu_pro(git_dir: Path) -> list[Example]:
    """The non-MMLU questions of MMLU-Pro with Mixtral's and the strong runs' correctness."""
    weak = [read_results(git_dir, m) for m in WEAK_MODELS]
    strong = [read_results(git_dir, m) for m in STRONG_MODELS]
    return examples_of(weak, strong)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--git-dir", type=Path, required=True, help="git dir of TIGER-AI-Lab/MMLU-Pro")
    parser.add_argument("--reference", type=Path, default=overlap.DEFAULT_REFERENCE)
    parser.add_argument(
        "--jsonl", type=Path, help="also write the overlap-checked items as octoroute eval/train DATA.jsonl"
    )
    args = parser.parse_args(argv)
    for model in (*WEAK_MODELS, *STRONG_MODELS):
        runs = read_results(args.git_dir, model)
        kept = [r for r in runs.values() if not is_mmlu_derived(r)]
        accuracy = sum(map(correct, kept)) / len(kept)
        print(f"{model:32s} {len(runs):6,} records, {len(kept):5,} non-MMLU, accuracy {accuracy:.3f}")
    examples = load_mmlu_pro(args.git_dir)
    counts = Counter(e.source for e in examples)
    print(f"{len(examples):,} examples: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    index = overlap.ReferenceIndex(overlap.load_reference(args.reference))
    kept, flags = overlap.split_clean([overlap.Item(e.id, e.source, e.text) for e in examples], index)
    overlap.report(flags, len(examples))
    if args.jsonl is not None:
        kept_ids = {item.id for item in kept}
        rows = [as_data_row(e) for e in examples if e.id in kept_ids]
        args.jsonl.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        print(f"wrote {len(rows):,} items to {args.jsonl}")
    return 0


def as_data_row(example: Example) -> dict[str, object]:
    """One line of `octoroute eval`/`train`'s DATA.jsonl (the source rides along; they ignore it)."""
    return {
        "prompt": example.text,
        "weak_score": example.weak,
        "strong_score": example.strong,
        "source": example.source,
    }


if __name__ == "__main__":
    sys.exit(main())

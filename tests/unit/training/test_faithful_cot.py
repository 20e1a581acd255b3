from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from training.data import Example
from training.faithful_cot import (
    DATASETS,
    EXCLUDED_DATASETS,
    NEAR_CHANCE,
    VALIDATION_ONLY,
    Dataset,
    answer_boolean,
    answer_choice,
    answer_numbers,
    aqua_prompt,
    gold_numbers,
    is_correct,
    load_faithful_cot,
    near_chance_styles,
    read_dataset,
    read_items,
    split_shippable,
)
from training.select_model import extra_sources, loso_summary, unseen


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("51", (51,)),
        ("51.0", (51,)),
        # the repository truncates and drops the sign
        ("12.7", (12,)),
        ("-5", (5,)),
        ("1,000", (1000,)),
        ("3/4", (0,)),
        ("1 1/2", (1,)),
        # multi-value answers (ASDiv), as tuple, list, set or dict
        ("(10, 5)", (5, 10)),
        ("{'width': 5, 'height': 10}", (5, 10)),
        ("[2, 2, 37]", (2, 2, 37)),
        # a unit or a currency sign after or before a lone number
        ("$705.00", (705,)),
        ("65 cents", (65,)),
        # a sentence or rationale in place of the answer: its last number
        ("Each pack costs $76. With a discount of $25 you pay $76 - $25 = $51. So you pay $51 for each", (51,)),
        ("53 - 49 = 4", (4,)),
        ("the program failed: [invalid]", ()),
        ("I don't know", ()),
        ("", ()),
    ],
)
def test_answer_numbers(answer: str, expected: tuple[int, ...]) -> None:
    assert answer_numbers(answer) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("#### 51", (51,)), ("#### 1,200", (1200,)), ("9", (9,)), (["15", "5", "20"], (5, 15, 20))],
)
def test_gold_numbers(raw: object, expected: tuple[int, ...]) -> None:
    assert gold_numbers(raw) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("D", "D"), (" B ", "B"), ("E (None of these", "E"), ("A or D (since they are the same", None), ("F", None)],
)
def test_answer_choice(answer: str, expected: str | None) -> None:
    assert answer_choice(answer) == expected


def test_is_correct_by_kind() -> None:
    assert is_correct("number", "So there are 469 boys", (469,))
    assert not is_correct("number", "469", (470,))
    assert is_correct("number", "(5, 10)", (5, 10))
    assert not is_correct("number", "5", (5, 10))
    assert not is_correct("number", "[invalid]", (0,))
    assert is_correct("choice", "C", "C")
    assert not is_correct("choice", "C or D", "C")


@pytest.mark.parametrize(
    ("answer", "completion", "expected"),
    [
        # the repository's own parse, a JSON boolean (str() of it) or the string
        ("True", "", True),
        ("False", "Yes, ...", False),
        # its extraction failed: the word after the last "answer is", punctuation allowed
        ("[invalid]", "Pears float. So the answer is no, a pear would not sink.", False),
        ("[invalid]", "At first the answer is no. On reflection the answer is yes.", True),
        # else the leading yes/no of the last line (one-line replies, least-to-most's final answer)
        ("[invalid]", "Yes, it is common to see frost during some commencements.", True),
        ("[invalid]", "Q: Do pears float?\nYes.\n\nFinal answer: Would a pear sink?\nNo, it floats.\n", False),
        ("[invalid]", "No. Hydrogen's atomic number squared is 1.", False),
        # hedges and refusals are no answer
        ("[invalid]", "The answer is likely no.", None),
        ("[invalid]", "The answer is subjective, it depends.", None),
        ("[invalid]", "It depends on the climate. Yes, in some places.", None),
        ("[invalid]", "As an AI language model, I cannot answer this.", None),
        ("[invalid]", "Nowhere is it written.", None),
        ("[invalid]", "", None),
    ],
)
def test_answer_boolean(answer: str, completion: str, expected: bool | None) -> None:
    assert answer_boolean(answer, completion) is expected


def test_is_correct_boolean_counts_hedges_wrong_whatever_the_gold() -> None:
    assert is_correct("boolean", "True", True)
    assert not is_correct("boolean", "True", False)
    assert is_correct("boolean", "[invalid]", False, "No, a pear would not sink in water.")
    assert not is_correct("boolean", "[invalid]", True, "It is difficult to say.")
    assert not is_correct("boolean", "[invalid]", False, "It is difficult to say.")


def test_aqua_prompt_puts_each_option_on_a_lettered_line() -> None:
    question = "How much?\n# Answer option: ['A)5', 'B)6 (√3 + √2)']"
    assert aqua_prompt(question, ["A)5", "B)6 (√3 + √2)"]) == "How much?\nA. 5\nB. 6 (√3 + √2)"
    with pytest.raises(ValueError, match="A\\)text"):
        aqua_prompt("How much?", ["5"])


def test_gsm8k_is_never_a_dataset_and_never_read(tmp_path: Path) -> None:
    assert "GSM8K" in EXCLUDED_DATASETS
    assert all(d.name not in EXCLUDED_DATASETS and "gsm" not in d.source for d in DATASETS)
    assert {d.source for d in DATASETS} == {
        "fcot-svamp",
        "fcot-asdiv",
        "fcot-multiarith",
        "fcot-aqua",
        "fcot-strategyqa",
    }
    assert set(VALIDATION_ONLY) == {"fcot-asdiv", "fcot-multiarith"}
    with pytest.raises(ValueError, match="evaluation set"):
        read_items(tmp_path, Dataset("GSM8K", "fcot-gsm8k", "number", 1))


def _jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _predictions(answers: dict[int, str]) -> str:
    return _jsonl([{"id": i, "answer": a, "completion": "...", "completions": []} for i, a in answers.items()])


def _make_repo(tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A git repository with the files, plus every dataset's question file (one item, no runs) not given."""
    for dataset in DATASETS:
        gold: object = True if dataset.kind == "boolean" else "#### 1"
        one = {"id": 0, "question": f"A {dataset.name} question", "answer": gold, "options": ["A)1"]}
        files.setdefault(f"data/{dataset.name}/test.jsonl", _jsonl([one]))
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "runs"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return repo / ".git", commit


SVAMP_QUESTIONS = [
    {"id": 0, "question": "Tom has 3 apples and eats 1. How many are left?", "answer": "#### 2"},
    {"id": 1, "question": "Ann has 4 pens and buys 5. How many does she have?", "answer": "#### 9"},
]
AQUA_QUESTIONS = [
    {
        "id": 0,
        "question": "What is 2 + 2?\n# Answer option: ['A)3', 'B)4']",
        "answer": "B",
        "options": ["A)3", "B)4"],
    }
]


def _repo(tmp_path: Path) -> tuple[Path, str]:
    out = "output_dir/SVAMP/test"
    files = {
        "data/SVAMP/test.jsonl": _jsonl(SVAMP_QUESTIONS),
        "data/AQUA/test.jsonl": _jsonl(AQUA_QUESTIONS),
        # GSM8K is in the repository, with runs: it must never be read
        "data/GSM8K/test.jsonl": _jsonl([{"id": 0, "question": "A GSM8K question", "answer": "#### 1"}]),
        "output_dir/GSM8K/test/gpt4_COT/predictions.jsonl": _predictions({0: "1"}),
        "output_dir/GSM8K/test/code001_COT/predictions.jsonl": _predictions({0: "2"}),
        # weak: code001 with two styles (one right on item 0, one wrong everywhere)
        f"{out}/code001_COT/predictions.jsonl": _predictions({0: "2", 1: "8"}),
        f"{out}/code001_standard/predictions.jsonl": _predictions({0: "3", 1: "8"}),
        # weak: text003 right on both, given in another order and once as a sentence
        f"{out}/text003_noNL/predictions.jsonl": _predictions({1: "She has 4 + 5 = 9 pens", 0: "2"}),
        # misses item 1: left out, so gpt-3.5-turbo is not on the weak side at all
        f"{out}/gpt-3.5-turbo_COT/predictions.jsonl": _predictions({0: "7"}),
        # strong: gpt4, one style
        f"{out}/gpt4_NL+SL/predictions.jsonl": _predictions({0: "2", 1: "9"}),
        # not a model of either side
        f"{out}/text001_COT/predictions.jsonl": _predictions({0: "2", 1: "9"}),
        "output_dir/AQUA/test/code002_COT/predictions.jsonl": _predictions({0: "A"}),
        "output_dir/AQUA/test/gpt4_COT/predictions.jsonl": _predictions({0: "B (4"}),
    }
    return _make_repo(tmp_path, files)


def test_runs_are_joined_on_id_and_left_out_when_they_miss_an_item(tmp_path: Path) -> None:
    git_dir, commit = _repo(tmp_path)
    results = read_dataset(git_dir, DATASETS[0], commit)
    assert sorted(results.runs) == [
        ("code001", "COT"),
        ("code001", "standard"),
        ("gpt4", "NL+SL"),
        ("text003", "noNL"),
    ]
    assert results.runs[("text003", "noNL")] == {0: True, 1: True}
    assert "gpt-3.5-turbo_COT (1 of 2 items)" in results.left_out
    assert "gpt4_COT (unreadable)" in results.left_out


def test_examples_average_styles_within_a_model_then_models(tmp_path: Path) -> None:
    git_dir, commit = _repo(tmp_path)
    examples = load_faithful_cot(git_dir, commit)
    by_id = {e.id: e for e in examples}
    assert sorted(by_id) == ["fcot-aqua:0", "fcot-svamp:0", "fcot-svamp:1"]  # StrategyQA: no runs
    # item 0: code001 right in one of two styles (0.5), text003 right (1) -> 0.75
    assert (by_id["fcot-svamp:0"].weak, by_id["fcot-svamp:0"].strong) == (0.75, 1.0)
    # item 1: code001 wrong in both (0), text003 right (1) -> 0.5
    assert (by_id["fcot-svamp:1"].weak, by_id["fcot-svamp:1"].strong) == (0.5, 1.0)
    assert by_id["fcot-svamp:1"].text == "Ann has 4 pens and buys 5. How many does she have?"
    aqua = by_id["fcot-aqua:0"]
    assert (aqua.source, aqua.text, aqua.weak, aqua.strong) == ("fcot-aqua", "What is 2 + 2?\nA. 3\nB. 4", 0.0, 1.0)
    assert all("GSM8K" not in e.text and "gsm" not in e.source for e in examples)


def test_a_dataset_without_a_covering_strong_run_gives_no_examples(tmp_path: Path) -> None:
    files = {
        "data/SVAMP/test.jsonl": _jsonl(SVAMP_QUESTIONS),
        "output_dir/SVAMP/test/code001_COT/predictions.jsonl": _predictions({0: "2", 1: "9"}),
        "output_dir/SVAMP/test/gpt4_COT/predictions.jsonl": _predictions({0: "2"}),
    }
    git_dir, commit = _make_repo(tmp_path, files)
    assert load_faithful_cot(git_dir, commit) == []


def test_validation_only_sets_are_split_off() -> None:
    examples = [Example(f"{d.source}:0", d.source, "q", 0.0, 1.0) for d in DATASETS]
    shippable, validation = split_shippable(examples)
    assert [e.source for e in shippable] == ["fcot-svamp", "fcot-aqua", "fcot-strategyqa"]
    assert [e.source for e in validation] == ["fcot-asdiv", "fcot-multiarith"]


def test_validation_only_sets_never_reach_the_training_data() -> None:
    train = [Example("fcot-svamp:0", "fcot-svamp", "q", 0.0, 1.0)]
    assert [e.id for e in extra_sources([], None, None, train)] == ["fcot-svamp:0"]
    with pytest.raises(ValueError, match="validation-only"):
        extra_sources([], None, None, [Example("fcot-asdiv:0", "fcot-asdiv", "q", 0.0, 1.0)])


def test_held_out_items_that_near_copy_a_training_item_are_not_scored() -> None:
    question = "Jack had {} pens and gave 3 of them to Mary. How many pens does Jack have now?"
    training = [Example("fcot-svamp:0", "fcot-svamp", question.format(8), 0.0, 1.0)]
    copy = Example("fcot-asdiv:1", "fcot-asdiv", question.format(9), 0.0, 1.0)
    other = Example(
        "fcot-asdiv:2", "fcot-asdiv", "A train travels 60 miles an hour. How far does it go in 3 hours?", 0, 1
    )
    assert unseen([copy, other], training) == [other]


STRATEGYQA_QUESTIONS = [
    {"id": i, "question": f"Would a pear number {i} sink in water?", "answer": i % 2 == 0, "explanation": "..."}
    for i in range(10)
]


def _boolean_predictions(answers: dict[int, tuple[object, str]]) -> str:
    return _jsonl([{"id": i, "answer": a, "completion": c, "completions": [c]} for i, (a, c) in answers.items()])


def _strategyqa_repo(tmp_path: Path, best_nonl_right: int) -> tuple[Path, str]:
    """StrategyQA with a standard and a noNL run per side; noNL gets `best_nonl_right` of 10 right for gpt4."""
    out = "output_dir/StrategyQA/test"
    gold = {q["id"]: bool(q["answer"]) for q in STRATEGYQA_QUESTIONS}
    coin = {i: (True, "") for i in gold}  # always yes: right on the even items, 5 of 10
    files = {
        "data/StrategyQA/test.jsonl": _jsonl(STRATEGYQA_QUESTIONS),
        # weak: right on 0-4 by its answer field (JSON booleans), wrong on 5-9
        f"{out}/code002_standard/predictions.jsonl": _boolean_predictions(
            {i: (g if i < 5 else not g, "") for i, g in gold.items()}
        ),
        f"{out}/code002_noNL/predictions.jsonl": _boolean_predictions(coin),
        # strong: string answers, a failed extraction read from the completion, one hedge (item 9)
        f"{out}/gpt4_standard/predictions.jsonl": _boolean_predictions(
            {
                **{i: (str(g), "") for i, g in gold.items()},
                8: ("[invalid]", "The answer is yes, pears of this number sink."),
                9: ("[invalid]", "It depends on the pear."),
            }
        ),
        f"{out}/gpt4_noNL/predictions.jsonl": _boolean_predictions(
            {i: (g if i < best_nonl_right else not g, "") for i, g in gold.items()}
        ),
    }
    return _make_repo(tmp_path, files)


def test_strategyqa_items_are_the_question_scored_yes_no(tmp_path: Path) -> None:
    git_dir, commit = _strategyqa_repo(tmp_path, best_nonl_right=7)
    examples = {e.id: e for e in load_faithful_cot(git_dir, commit) if e.source == "fcot-strategyqa"}
    assert sorted(examples) == [f"fcot-strategyqa:{i}" for i in range(10)]
    assert examples["fcot-strategyqa:3"].text == "Would a pear number 3 sink in water?"
    # noNL is 0.7 for gpt4 (0.2 above chance): kept, averaged with standard
    assert (examples["fcot-strategyqa:0"].weak, examples["fcot-strategyqa:0"].strong) == (1.0, 1.0)
    # item 8 (gold yes): gpt4 standard right from the completion, noNL wrong; code002 wrong in standard, noNL right
    assert (examples["fcot-strategyqa:8"].weak, examples["fcot-strategyqa:8"].strong) == (0.5, 0.5)
    # item 9 (gold no): the hedge is wrong
    assert examples["fcot-strategyqa:9"].strong == 0.0


def test_a_style_near_chance_for_every_model_is_left_out(tmp_path: Path) -> None:
    git_dir, commit = _strategyqa_repo(tmp_path, best_nonl_right=5)
    strategyqa = next(d for d in DATASETS if d.source == "fcot-strategyqa")
    results = read_dataset(git_dir, strategyqa, commit)
    assert sorted(results.runs) == [("code002", "standard"), ("gpt4", "standard")]
    assert any(reason.startswith("noNL (") and "best 0.500" in reason for reason in results.left_out)
    examples = {e.id: e for e in load_faithful_cot(git_dir, commit) if e.source == "fcot-strategyqa"}
    assert (examples["fcot-strategyqa:8"].weak, examples["fcot-strategyqa:8"].strong) == (0.0, 1.0)


def test_near_chance_needs_a_chance_level_and_every_model_below_it() -> None:
    runs = {("code002", "noNL"): {0: True, 1: False}, ("gpt4", "noNL"): {0: True, 1: True}}
    assert near_chance_styles(Dataset("X", "x", "boolean", 2, chance=0.5), runs) == {}
    only_low = {("code002", "noNL"): {0: True, 1: False}}
    assert near_chance_styles(Dataset("X", "x", "boolean", 2, chance=0.5), only_low) == {"noNL": 0.5}
    assert near_chance_styles(Dataset("X", "x", "number", 2), only_low) == {}
    assert near_chance_styles(Dataset("X", "x", "choice", 2, chance=0.5 - NEAR_CHANCE), only_low) == {}


def test_a_strategyqa_answer_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    files = {"data/StrategyQA/test.jsonl": _jsonl([{"id": 0, "question": "Is it?", "answer": "yes"}])}
    git_dir, commit = _make_repo(tmp_path, files)
    strategyqa = next(d for d in DATASETS if d.source == "fcot-strategyqa")
    with pytest.raises(ValueError, match="not a boolean"):
        read_items(git_dir, strategyqa, commit)


def test_loso_summary_adds_the_mean_without_faithful_cot_when_it_is_held_out() -> None:
    older = {"arc_challenge": (0.6, 0.5), "gpqa": (0.4, 0.5)}
    assert loso_summary(older) == "LOSO mean 0.500 (length 0.500)"
    with_fcot = {**older, "fcot-strategyqa": (0.8, 0.2)}
    assert loso_summary(with_fcot) == ("LOSO mean 0.600 (length 0.400) LOSO mean without fcot (2) 0.500 (length 0.500)")

from __future__ import annotations

import pytest
from training.zeroeval import (
    TASKS,
    ModelRun,
    Task,
    TaskResults,
    answer_of,
    exact_correct,
    examples_of,
    first_json_object,
    first_number,
    is_correct,
    last_json_object,
    number_correct,
    sanitise_number,
    side_models,
    zebra_solved,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"answer": 4}', {"answer": 4}),
        # prose around it, and a second object that is not the first
        ('Here you go:\n```json\n{"answer": "a"}\n```\nor {"answer": "b"}', {"answer": "a"}),
        # nested braces belong to the outer object
        ('{"solution": {"House 1": {"Name": "Eric"}}}', {"solution": {"House 1": {"Name": "Eric"}}}),
        # a line break inside a string is dropped, not an error
        ('{"reasoning": "two\nlines", "answer": "5"}', {"reasoning": "twolines", "answer": "5"}),
        # the first complete object does not parse: no answer from JSON, no looking further
        ('{"answer": 5,} {"answer": 6}', None),
        ('{"answer": "never closed"', None),
        ("no braces at all", None),
        ("}{", None),
    ],
)
def test_first_json_object(text: str, expected: object) -> None:
    assert first_json_object(text) == expected


def test_last_json_object_takes_the_last_complete_one() -> None:
    text = 'Example: {"solution": {"House 1": {"Name": "Peter"}}}\nMine: {"solution": {"House 1": {"Name": "Eric"}}}'
    assert last_json_object(text) == {"solution": {"House 1": {"Name": "Eric"}}}
    assert last_json_object('{"a": 1} then {"broken": }') is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"reasoning": "r", "answer": "[1, 2]"}', "[1, 2]"),
        # JSON values come back as Python writes them (the gold answers are Python literals)
        ('{"answer": 42}', "42"),
        ('{"answer": true}', "True"),
        ('{"answer": [1, "a"]}', "[1, 'a']"),
        ('{"answer": null}', "None"),
        # the object parses but has no answer: fall back to the pattern
        ('{"reasoning": "r"} and then "answer": "7"', "7"),
        # unparseable JSON (an unescaped quote): the first quoted value after the key
        ('{"reasoning": "he said "hi"", "answer": "hello"}', "hello"),
        # no quotes around the value
        ('{"reasoning": "x", "answer": 3.5\n', "3.5"),
        # no quotes around the key either
        ("reasoning: because\nanswer: 12, done", "12"),
        # a boxed final answer, only when it ends the output
        ("so the result is $\\boxed{36}$.", "36"),
        ("\\boxed{36} is what I first thought, but after a long check I think it is not right at all.", None),
        ("I cannot solve this.", None),
        ("", None),
    ],
)
def test_answer_of(output: str, expected: str | None) -> None:
    assert answer_of(output) == expected


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("[(4, 1), (2, 3)]", "[(4, 1), (2, 3)]", True),
        # quotes at either end do not count
        ("'abc'", "'abc'", True),
        ('"abc"', "'abc'", True),
        ("abc", "'abc'", True),
        # but everything inside does
        ("[(4, 1)]", "[(4,1)]", False),
        ("'Abc'", "'abc'", False),
        # a real line break in the answer is compared as the literal writes it
        ("'a\nb'", "'a\\nb'", True),
        ("True", "True", True),
        ("", "''", True),
        ("", "'x'", False),
        (None, "'x'", False),
    ],
)
def test_exact_correct(answer: str | None, gold: str, expected: bool) -> None:
    assert exact_correct(answer, gold) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234$", "1234"),
        ("3/4", "0.75"),
        ("-(1+2)/6", "-0.5"),
        # not plain arithmetic: left as it is
        ("\\frac{3}{4}", "\\frac{3}{4}"),
        ("x/2", "x/2"),
        ("1/0", "1/0"),
        ("__import__('os')/1", "__import__('os')/1"),
        ("2**99/1", "2**99/1"),
    ],
)
def test_sanitise_number(text: str, expected: str) -> None:
    assert sanitise_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("-15", -15.0), ("x = 2.50 cm", 2.5), ("1/8", 0.125), ("none", None), ("", None)],
)
def test_first_number(text: str, expected: float | None) -> None:
    assert first_number(text) == expected


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("21", "-15", False),
        ("-15", "-15", True),
        ("-15.0", "-15", True),
        ("$-15$", "-15", True),
        ("1,000", "1000", True),
        ("The answer is 13.8", "13.8", True),
        ("9.110", "9.11", True),
        ("9.9", "9.11", False),
        ("0.5", "1/2", True),
        ("#### 18", "18", True),
        ("18", "#### 18", True),
        # only the first number counts (ZeroEval's rule, kept so the scores agree)
        ("2\\sqrt{3}", "2", True),
        ("no idea", "2", False),
        (None, "2", False),
    ],
)
def test_number_correct(answer: str | None, gold: str, expected: bool) -> None:
    assert number_correct(answer, gold) is expected


def test_is_correct_reads_the_answer_then_compares() -> None:
    assert is_correct("exact", '```json\n{"reasoning": "...", "answer": "\'ab\'"}\n```', "'ab'")
    assert not is_correct("exact", "I think it is 'ab'", "'ab'")
    assert is_correct("number", '{"reasoning": "...", "answer": "$\\\\frac{1}{2}$ = 0.5"}', "1")
    assert is_correct("number", "... so the total is $\\boxed{36}$", "36")
    with pytest.raises(ValueError, match="gold grid"):
        is_correct("grid", "{}", "")


HEADER = ("House", "Name", "Drink")
ROWS = (("1", "Arnold", "tea"), ("2", "Peter", "water"))
HOUSE_2 = ' "House 2": {"Name": "Peter", "Drink": "water"}}}'


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            '{"reasoning": "r", "solution": {"House 1": {"Name": "Arnold", "Drink": "tea"},'
            ' "House 2": {"Name": "Peter", "Drink": "water"}}}',
            True,
        ),
        # case, spaces and one-element lists do not matter
        (
            '{"solution": {"House 1": {"Name": " ARNOLD ", "Drink": ["Tea"]},'
            ' "House 2": {"Name": "peter", "Drink": "Water"}}}',
            True,
        ),
        # the last object counts: the example's grid before it does not
        (
            '{"solution": {"House 1": {"Name": "x"}}} Final: {"solution": {"House 1": {"Name": "Arnold",'
            ' "Drink": "tea"}, "House 2": {"Name": "Peter", "Drink": "water"}}}',
            True,
        ),
        # one wrong cell
        (
            '{"solution": {"House 1": {"Name": "Peter", "Drink": "tea"},'
            ' "House 2": {"Name": "Arnold", "Drink": "water"}}}',
            False,
        ),
        # a missing house, a missing cell, an empty cell, an empty list
        ('{"solution": {"House 1": {"Name": "Arnold", "Drink": "tea"}}}', False),
        ('{"solution": {"House 1": {"Name": "Arnold"}, "House 2": {"Name": "Peter", "Drink": "water"}}}', False),
        (
            '{"solution": {"House 1": {"Name": "Arnold", "Drink": ""},' + HOUSE_2,
            False,
        ),
        (
            '{"solution": {"House 1": {"Name": "Arnold", "Drink": []},' + HOUSE_2,
            False,
        ),
        # malformed: no solution, a null one, a string for a house, no JSON at all
        ('{"reasoning": "I give up"}', False),
        ('{"solution": null}', False),
        ('{"solution": {"House 1": "Arnold, tea", "House 2": "Peter, water"}}', False),
        ("House 1: Arnold, tea. House 2: Peter, water.", False),
    ],
)
def test_zebra_solved(output: str, expected: bool) -> None:
    assert zebra_solved(output, HEADER, ROWS) is expected


def test_no_task_reads_the_evaluation_benchmarks() -> None:
    assert {task.name for task in TASKS} == {"crux", "math-l5", "zebra-grid", "numersense-v2"}


def _results(runs: dict[str, dict[str, bool]], size: int = 2) -> TaskResults:
    task = Task("crux", "question", "exact", size)
    questions = {"1": "second question", "0": "first question"}
    return TaskResults(
        task, questions, {m: ModelRun(m, correct, len(correct)) for m, correct in runs.items()}, ("gpt-4-0314",)
    )


def test_examples_average_each_side_over_models_that_cover_every_item() -> None:
    results = _results(
        {
            "Qwen2-7B-Instruct": {"0": True, "1": False},
            "gemma-2-9b-it": {"0": False, "1": False},
            # misses an item: left out of the weak side for the whole task
            "Yi-1.5-9B-Chat": {"0": True},
            # not in either tuple
            "gemma-2-2b-it": {"0": True, "1": True},
            "gpt-4o-2024-05-13": {"0": True, "1": True},
        }
    )
    assert side_models(results, ("gemma-2-9b-it", "Yi-1.5-9B-Chat", "Qwen2-7B-Instruct")) == (
        "gemma-2-9b-it",
        "Qwen2-7B-Instruct",
    )
    examples = examples_of(results)
    assert [(e.id, e.source, e.text, e.weak, e.strong) for e in examples] == [
        ("zeroeval-crux:0", "zeroeval-crux", "first question", 0.5, 1.0),
        ("zeroeval-crux:1", "zeroeval-crux", "second question", 0.0, 1.0),
    ]


def test_a_task_without_a_strong_model_gives_no_examples() -> None:
    assert examples_of(_results({"Qwen2-7B-Instruct": {"0": True, "1": False}})) == []

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from octoroute.core.types import Features, Importance, TaskType
from octoroute.routing.features import (
    CODE_LINES_CAP,
    SCAN_HEAD_CHARS,
    SCAN_TAIL_CHARS,
    count_code_lines,
    count_fences,
    extract_features,
    infer_task_type,
    last_user_text,
)


def extract(messages: Sequence[Mapping[str, object]], task: TaskType | None = None) -> Features:
    return extract_features(messages, tools_present=False, importance=Importance.NORMAL, task_type=task)


def user(text: str) -> dict[str, object]:
    return {"role": "user", "content": text}


def test_token_estimate_counts_all_text_rounded_up() -> None:
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "a" * 10},
        {"role": "developer", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "b" * 5}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "abc", "arguments": '{"x":1}'}}],
        },
        {"role": "tool", "content": "c" * 2},
    ]
    # 10 + 5 + 3 + 7 + 2 = 27 characters -> ceil(27 / 4) = 7
    assert extract(messages).token_estimate == 7
    assert extract([]).token_estimate == 0
    assert extract([user("abcd")]).token_estimate == 1
    assert extract([user("abcde")]).token_estimate == 2


def test_counts_messages_and_user_turns() -> None:
    messages: list[dict[str, object]] = [user("hi"), {"role": "assistant", "content": "hello"}, user("bye")]
    f = extract(messages)
    assert (f.message_count, f.user_turns) == (3, 2)


def test_multimodal_content() -> None:
    messages: list[dict[str, object]] = [
        user("earlier"),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    f = extract(messages)
    assert f.has_images
    assert f.task_type is TaskType.QUESTION_ANSWER
    assert f.token_estimate == -(-(len("earlier") + len("What is in this picture?")) // 4)
    assert not extract([user("no picture here")]).has_images
    assert extract([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]).has_images


@pytest.mark.parametrize(
    "content",
    [None, 42, [None, "text", {"type": "text"}, {"type": "text", "text": 5}], {"type": "text", "text": "x"}],
)
def test_malformed_content_is_ignored(content: object) -> None:
    f = extract([{"role": "user", "content": content}, {"role": "assistant", "tool_calls": [None, {"function": 1}]}])
    assert f.token_estimate == 0
    assert f.task_type is TaskType.CASUAL_CHAT


def test_last_user_text() -> None:
    messages: list[dict[str, object]] = [
        user("first"),
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        },
        {"role": "assistant", "content": "reply"},
        {"role": "tool", "content": "tool output"},
    ]
    assert last_user_text(messages) == "a\nb"
    assert last_user_text([{"role": "system", "content": "only system"}]) == ""


def test_explicit_task_type_is_kept() -> None:
    f = extract([user("hello")], task=TaskType.DEEP_ANALYSIS)
    assert f.task_type is TaskType.DEEP_ANALYSIS
    assert f.task_type_explicit
    inferred = extract([user("hello")])
    assert inferred.task_type is TaskType.CASUAL_CHAT
    assert not inferred.task_type_explicit


def test_tools_and_importance_pass_through() -> None:
    f = extract_features([user("x")], tools_present=True, importance=Importance.HIGH, task_type=None)
    assert f.has_tools
    assert f.importance is Importance.HIGH


PYTHON = """def add(a, b):
    return a + b

class Greeter(Base):
    pass
"""
JS = """import React from 'react';
const x = 5;
export function App() {
  return <div>{x}</div>;
}"""
C = '#include <stdio.h>\nint main(void) {\n    printf("hi\\n");\n    return 0;\n}'
SQL = "SELECT name FROM users\nWHERE id = 3;"
PY_BLOCK = "for k in items:\n    if k > 2:\n        total += k"


@pytest.mark.parametrize(
    ("text", "is_code"),
    [
        (PYTHON, True),
        (JS, True),
        (C, True),
        (SQL, True),
        (PY_BLOCK, True),
        ("x = 1\ny = x * 2", True),
        ("```\nsomething\n```", True),
        ("Here is my function:\n```python\nprint('hi')\n```\nWhy does it fail?", True),
        # prose, including prose with code-ish punctuation
        ("I went home; it was late.", False),
        ("I like tea; she likes coffee;\nWe argued about it;", False),
        ("import the data into excel and then class it by region", False),
        ("For example:\nif you could help me, that would be great.", False),
        ("Public transport is great (really).\nLet me know what you think.", False),
        ("What is the capital of France?", False),
        ("- first item (a)\n- second item (b)", False),
        ("A => B, and B => C, therefore A => C.", False),
        ("Dear team,\nthe meeting moved to 3pm.\nThanks!", False),
    ],
)
def test_code_detection(text: str, is_code: bool) -> None:
    f = extract([user(text)])
    assert f.has_code is is_code, (f.code_fences, f.code_lines)
    assert (f.task_type is TaskType.CODE) is is_code


def test_code_fences_count_blocks_and_unclosed_opens() -> None:
    assert extract([user("```a```\n```b```")]).code_fences == 2
    assert extract([user("```python\nprint(1)")]).code_fences == 1
    assert extract([user("no fences")]).code_fences == 0


def test_code_lines_count() -> None:
    assert count_code_lines(PYTHON) >= 3
    assert count_code_lines("The results were good; the team was happy.") == 0


def test_code_lines_stop_at_the_cap() -> None:
    assert count_code_lines(PYTHON * 50) == CODE_LINES_CAP
    assert count_code_lines(PYTHON * 50, cap=2) == 2
    assert extract([user(PYTHON * 50)]).code_lines == CODE_LINES_CAP


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no fences",
        "```",
        "````",
        "``````",
        "`a` and ``b``",
        "```a```\n```b```",
        "`" * 7,
        "x`" * 100 + "```",
        "`" * 500,
    ],
)
def test_count_fences_counts_like_str_count(text: str) -> None:
    assert count_fences(text) == text.count("```")


def test_signals_come_from_last_user_message_only() -> None:
    messages: list[dict[str, object]] = [user(PYTHON), {"role": "assistant", "content": "Looks fine."}, user("thanks!")]
    f = extract(messages)
    assert f.task_type is TaskType.CASUAL_CHAT
    assert f.code_lines == 0
    assert f.token_estimate > 10  # the earlier code still counts toward size


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("hello", TaskType.CASUAL_CHAT),
        ("hi, how are you?", TaskType.CASUAL_CHAT),
        ("Thanks so much!", TaskType.CASUAL_CHAT),
        ("I had a nice day at the beach", TaskType.CASUAL_CHAT),
        ("", TaskType.CASUAL_CHAT),
        ("What is the capital of France?", TaskType.QUESTION_ANSWER),
        ("how do magnets work", TaskType.QUESTION_ANSWER),
        ("Explain the causes of World War I", TaskType.QUESTION_ANSWER),
        ("The sky is blue. Right?", TaskType.QUESTION_ANSWER),
        ("Please summarize this article: ...", TaskType.DOCUMENT_SUMMARY),
        ("long text ... \n\nTL;DR please", TaskType.DOCUMENT_SUMMARY),
        ("Can you condense these notes?", TaskType.DOCUMENT_SUMMARY),
        ("Analyze the trade-offs between Raft and Paxos", TaskType.DEEP_ANALYSIS),
        ("Prove that there are infinitely many primes.", TaskType.DEEP_ANALYSIS),
        ("Walk me through it step by step", TaskType.DEEP_ANALYSIS),
        ("compare postgres and mysql in depth", TaskType.DEEP_ANALYSIS),
        ("Write a short poem about autumn", TaskType.CREATIVE_WRITING),
        ("Compose a song for my sister's birthday", TaskType.CREATIVE_WRITING),
        ("tell me a bedtime story", TaskType.CREATIVE_WRITING),
        ("I want a piece of flash fiction set on Mars", TaskType.CREATIVE_WRITING),
        ("Write a function that reverses a list", TaskType.CASUAL_CHAT),
    ],
)
def test_task_inference(text: str, task: TaskType) -> None:
    assert extract([user(text)]).task_type is task


def test_inference_order_code_before_keywords() -> None:
    assert infer_task_type("summarize this", has_code=True) is TaskType.CODE
    assert infer_task_type("summarize the analysis", has_code=False) is TaskType.DOCUMENT_SUMMARY


def test_huge_message_scans_head_and_tail() -> None:
    filler = "lorem ipsum dolor sit amet. " * ((SCAN_HEAD_CHARS * 3) // 28)
    text = filler + "\n\nSummarize the above."
    tail_instruction = extract([user(text)])
    assert tail_instruction.task_type is TaskType.DOCUMENT_SUMMARY
    assert tail_instruction.token_estimate == -(-len(text) // 4)  # size still counts everything
    buried = extract([user(filler + "please summarize this" + filler)])
    assert buried.task_type is TaskType.CASUAL_CHAT  # the middle of a huge paste is not scanned


FILLER = "lorem ipsum dolor sit amet. " * ((SCAN_HEAD_CHARS + SCAN_TAIL_CHARS) * 3 // 28)
PROSE_100KB = "The team moved the nightly jobs to the new cluster.\n" * 2_000


def test_long_prose_with_instruction_at_the_end() -> None:
    text = PROSE_100KB + "\nSummarize the above."
    f = extract([user(text)])
    assert f.task_type is TaskType.DOCUMENT_SUMMARY
    assert f.token_estimate == -(-len(text) // 4)
    assert extract([user("Summarize the following notes:\n\n" + PROSE_100KB)]).task_type is TaskType.DOCUMENT_SUMMARY
    assert extract([user(PROSE_100KB + "\nWhich of these points matter most?")]).task_type is TaskType.QUESTION_ANSWER


def test_long_code_paste_is_code() -> None:
    pasted = "Why does this fail?\n" + PYTHON * 1_500
    f = extract([user(pasted)])
    assert (f.task_type, f.code_fences, f.code_lines) == (TaskType.CODE, 0, CODE_LINES_CAP)
    fenced = extract([user("Why does this fail?\n```python\n" + PYTHON * 1_500 + "```\nSummarize the fix.")])
    assert (fenced.task_type, fenced.code_fences) == (TaskType.CODE, 1)


def test_fence_anywhere_in_a_long_message_counts() -> None:
    f = extract([user(FILLER + "\n```\nprint('hi')\n```\n" + FILLER + "Why does it print twice?")])
    assert (f.task_type, f.code_fences) == (TaskType.CODE, 1)


# Every keyword (and spelling) the README lists, as a user would write it.
KEYWORD_PHRASES = {
    TaskType.DOCUMENT_SUMMARY: (
        "summarize", "summarise", "summarized", "summarising", "summary", "summaries", "tl;dr", "tldr",
        "condense", "recap",
    ),
    TaskType.DEEP_ANALYSIS: (
        "analyze", "analyse", "analyzing", "analysis", "prove", "proof", "derive", "derivation", "step by step",
        "step-by-step", "trade-offs", "tradeoff", "trade offs", "in depth", "in-depth", "compare", "comparison",
        "contrast", "critique", "pros and cons", "rigorously", "thorough", "thoroughly",
    ),
    TaskType.CREATIVE_WRITING: (
        "write a poem", "compose a song", "create a story", "draft some lyrics", "invent a fable", "make up a story",
        "come up with a haiku", "fiction", "fictional", "limerick", "sonnet", "once upon a time", "short story",
        "role-play", "roleplay", "tell me an old fable",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("phrase", "task"), [(p, task) for task, phrases in KEYWORD_PHRASES.items() for p in phrases])
def test_every_keyword_is_found_at_either_end_of_a_long_paste(phrase: str, task: TaskType) -> None:
    assert extract([user(FILLER + "\n\nNow, " + phrase + ".")]).task_type is task
    assert extract([user(phrase.capitalize() + ":\n\n" + FILLER)]).task_type is task


@pytest.mark.parametrize("phrase", ["Please summarize this.", "Compare them in depth.", "Write a poem about it."])
def test_keywords_buried_in_the_middle_do_not_decide(phrase: str) -> None:
    assert extract([user(FILLER + phrase + FILLER)]).task_type is TaskType.CASUAL_CHAT
    question = extract([user(FILLER + phrase + FILLER + "Who wrote this?")])
    assert question.task_type is TaskType.QUESTION_ANSWER


def test_window_edges() -> None:
    # A keyword that ends on the head window's last character counts; one character later it is cut.
    for pad, task in ((SCAN_HEAD_CHARS - 10, TaskType.DOCUMENT_SUMMARY), (SCAN_HEAD_CHARS - 9, TaskType.CASUAL_CHAT)):
        assert extract([user("x" * pad + " summarize" + FILLER)]).task_type is task
    # A keyword that starts on the tail window's first character counts; one character earlier it is cut.
    for pad, task in ((SCAN_TAIL_CHARS - 10, TaskType.DOCUMENT_SUMMARY), (SCAN_TAIL_CHARS - 9, TaskType.CASUAL_CHAT)):
        assert extract([user(FILLER + "summarize " + "y" * pad)]).task_type is task


def test_pathological_input_is_handled() -> None:
    # Inputs shaped to trip backtracking regexes still finish (counted as data, not code).
    for text in ("if " + "(" * 50_000, ")" * 50_000 + "x", "import " + "a," * 20_000 + " x", "a." * 20_000 + "("):
        assert isinstance(extract([user(text)]), Features)


@pytest.mark.parametrize(
    ("line", "is_code"),
    [
        ("    return a + b", True),
        ("return x;", True),
        ("return", True),
        ("return compute(x)", True),
        ("return the book to the library.", False),
        ("return to sender", False),
    ],
)
def test_return_lines(line: str, is_code: bool) -> None:
    assert (count_code_lines(line) == 1) is is_code

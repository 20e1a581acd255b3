"""Routing features from an OpenAI `messages` list, computed once per request.

This runs on every auto-routed request, so it is deliberately cheap, and its
cost is bounded by a fixed window rather than by the size of the prompt:

- Token estimate: every text string in the conversation (system, user,
  assistant, tool messages, text parts, tool-call names and arguments) is
  measured with `len()` and the total divided by 4, rounded up. Four characters
  per token is the usual rule of thumb for English with BPE tokenizers; it
  under-counts CJK text (about one token per character) and ignores images.
  It only has to be stable and in the right range for the 1.0 thresholds.
- Everything else looks at the LAST user message only, the request being made
  now. Code fences (```) are counted over all of it: `count_fences` hops from
  backtick to backtick with memchr, so even a 100 KB paste costs a few calls.
- Code lines and task keywords look only at its first `SCAN_HEAD_CHARS` and
  last `SCAN_TAIL_CHARS` characters. That is where the request sits when a
  document is pasted ("Summarize this: ..." / "... Summarize the above."), a
  sentence or a short paragraph that these windows hold with room to spare;
  the middle is the document, and a keyword there ("the Q3 summary shows ...")
  says nothing about what is being asked. The window is also the cost: each
  scanned character costs ~25 ns of keyword search and each scanned line ~2 µs
  of code-line checks, so 1,500 characters keep a 16 KB or 100 KB prompt at a
  few tens of microseconds (twice the window roughly doubles that).
- `Features.code_lines` counts code-looking lines up to `CODE_LINES_CAP`, then
  stops: two already decide `has_code`, and a pasted file needs no exact count.
- A keyword regex runs only where one of its literal starts occurs (a C
  substring search) instead of as a `search` over the text: the leading word
  boundary defeats `re`'s prefix scan, which made each search cost ~60 ns per
  character.
- Regexes are anchored or bounded (no nested quantifiers), so matching stays
  linear in the scanned text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from octoroute.core.types import Features, Importance, TaskType

CHARS_PER_TOKEN = 4
SCAN_HEAD_CHARS = 1_000
SCAN_TAIL_CHARS = 500
CODE_LINES_CAP = 10
SMALL_TALK_MAX_CHARS = 60

_TEXT_PART_TYPES = frozenset({"text", "input_text"})
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_FENCE = "```"
_FENCE_HOPS = 32

# A line (leading whitespace stripped) that starts like code in a common language.
# Each branch needs structure prose lacks (a parenthesis, `=`, a quoted module,
# a type before a name), so "import the data" or "public transport is" do not
# count. Branches are anchored and have at most one unbounded run each, so a
# match costs O(line length); the possessive `*+`/`++` on a name skip backtracking
# that can never succeed (what follows a name is never a name character).
_CODE_LINE_START = re.compile(
    r"""(?:
      (?:async\s+)?def\s+\w+\s*\(
    | class\s+\w+(?:\s*[:({<]|\s+(?:extends|implements)\b)
    | import\s+[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+)*\s*;?$
    | import\s.+\sfrom\s+['"]
    | import\s+['"]
    | from\s+[\w.]+\s+import\s
    | \#include\s*[<"]
    | \#define\s
    | \#!/
    | <\?php
    | using\s+[\w.]+\s*;
    | package\s+[\w.]+\s*;?$
    | (?:export\s+)?(?:async\s+)?function\b\s*\*?\s*\w*\s*\(
    | (?:export\s+)?(?:const|let|var|val)\s+[\w$]+\s*[:=]
    | (?:pub\s+)?fn\s+\w+\s*[<(]
    | func\s+(?:\(\w+\s+\*?\w+\)\s*)?\w+\s*\(
    | (?:public|private|protected)\s+(?:static\s+)?[\w<>\[\]]+\s+\w+\s*[({=;]
    | (?:SELECT|INSERT\s+INTO|DELETE\s+FROM|CREATE\s+TABLE|ALTER\s+TABLE)\b
    | \$\s+[a-z]
    | //
    | /\*
    | </?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>
    | [A-Za-z_][\w.]*+(?:\[[^\]\n]*\])?\s*(?:[-+*/%|&^]|\*\*|//|\?\?)?=(?!=)(?!.*[.!?]$)\s*\S
    | [\w.]++\(.*\)\s*;?$
    | [}\])][}\]);,\s]*$
    )""",
    re.VERBOSE,
)
_CODE_LINE_END = ("{", "};")
_LIST_ITEM = re.compile(r"(?:[-*+]|\d+[.)])\s")
_FOR_HEADER = re.compile(r"for\s+\w+(?:\s*,\s*\w+)*\s+in\s")
_BARE_HEADERS = frozenset({"else:", "try:", "finally:", "except:"})
_CONDITION_HEADERS = ("if ", "elif ", "while ")
_RETURN_VALUE_CHARS = frozenset("()[]{}=+-*/<>%&|!\"'")

_SUMMARY = re.compile(r"\b(?:summari[sz](?:e|es|ed|ing)|summary|summaries|tl;?dr|condense|recap)\b")
_ANALYSIS = re.compile(
    r"\b(?:analy[sz](?:e|es|ed|ing)|analysis|prove|proof|derive|derivation|step[- ]by[- ]step"
    r"|trade[- ]?offs?|in[- ]depth|compare|comparison|contrast|critique|pros and cons"
    r"|rigorous(?:ly)?|thorough(?:ly)?)\b"
)
_CREATIVE = re.compile(
    r"\b(?:write|compose|create|draft|invent|make up|come up with)\b[^.?!\n]{0,60}?"
    r"\b(?:story|stories|poem|poems|poetry|song|songs|lyrics|haiku|limerick|sonnet|fable|fairy ?tale"
    r"|screenplay|novel|verse|ballad)\b"
    r"|\b(?:fiction|fictional|haiku|limerick|sonnet|once upon a time|short story|role-?play)\b"
    r"|\btell (?:me )?an? (?:\w+ )?(?:story|poem|fable|fairy ?tale)\b"
)
# A message made only of greetings / thanks / "how are you" (whole-message match).
_SMALL_TALK = re.compile(
    r"(?:(?:hi|hello|hey|yo|hiya|howdy|thanks|thank you|thx|ty|cheers|good (?:morning|afternoon|evening|night)"
    r"|how are you(?: doing| today)?|how's it going|how is it going|what's up|whats up|sup|there|everyone|all"
    r"|friend|buddy|mate|again|so much|a lot|ok|okay|cool|great|nice|bye|goodbye|see you|lol|haha)"
    r"[\s,!.?:;)(']*)+"
)
_FIRST_WORD = re.compile(r"\s*([a-z]+)")
_QUESTION_WORDS = frozenset(
    {
        "who", "what", "why", "how", "when", "where", "which", "whose", "whom",
        "explain", "describe", "define",
        "is", "are", "am", "was", "were", "can", "could", "does", "do", "did",
        "should", "would", "will", "shall", "may", "might",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Keywords:
    """A task's keyword regex and the literal text (lower case, right after the leading
    word boundary) that every one of its matches begins with. Keep `starts` in step
    with the regex: a keyword whose start is missing here is never found."""

    task: TaskType
    pattern: re.Pattern[str]
    starts: tuple[str, ...]


# In priority order: the first task with a keyword wins.
_KEYWORD_TASKS = (
    _Keywords(TaskType.DOCUMENT_SUMMARY, _SUMMARY, ("summar", "tl;dr", "tldr", "condense", "recap")),
    _Keywords(
        TaskType.DEEP_ANALYSIS,
        _ANALYSIS,
        (
            "analy", "prove", "proof", "deriv", "step", "trade", "in depth", "in-depth", "compar", "contrast",
            "critique", "pros and cons", "rigorous", "thorough",
        ),
    ),
    _Keywords(
        TaskType.CREATIVE_WRITING,
        _CREATIVE,
        (
            "write", "compose", "create", "draft", "invent", "make up", "come up with", "tell ",
            "fiction", "haiku", "limerick", "sonnet", "once upon a time", "short story", "role",
        ),
    ),
)  # fmt: skip


def content_text(content: object) -> str:
    """The text of one message's `content`: a string, null, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content if _is_text_part(part)]
        return "\n".join(texts)
    return ""


def last_user_text(messages: Sequence[Mapping[str, object]]) -> str:
    """The text of the last `user` message ("" if there is none), untruncated."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def extract_features(
    messages: Sequence[Mapping[str, object]],
    *,
    tools_present: bool,
    importance: Importance,
    task_type: TaskType | None,
) -> Features:
    """Measure a conversation once; `task_type=None` means infer it from the last user message."""
    chars = 0
    user_turns = 0
    has_images = False
    for message in messages:
        role = message.get("role")
        if role == "user":
            user_turns += 1
        n, images = _content_size(message.get("content"))
        chars += n
        has_images = has_images or images
        if role == "assistant":
            chars += _tool_calls_size(message.get("tool_calls"))
    text = last_user_text(messages)
    code_fences = (count_fences(text) + 1) // 2  # a pair is one block; an unclosed fence still opens one
    window = _scan_window(text)
    code_lines = count_code_lines(window)
    explicit = task_type is not None
    if task_type is None:
        task_type = infer_task_type(window, has_code=code_fences > 0 or code_lines >= 2)  # = Features.has_code
    return Features(
        token_estimate=-(-chars // CHARS_PER_TOKEN),
        message_count=len(messages),
        user_turns=user_turns,
        code_fences=code_fences,
        code_lines=code_lines,
        has_tools=tools_present,
        has_images=has_images,
        importance=importance,
        task_type=task_type,
        task_type_explicit=explicit,
    )


def count_fences(text: str) -> int:
    """How many ``` fences `text` holds, counted like `text.count("```")` but cheaper.

    Hopping from backtick to backtick uses memchr, so a long fenced paste costs a few
    calls instead of a character-by-character count; text with many backticks
    (inline code everywhere) hands the rest to `str.count` after a few hops.
    """
    count = 0
    at = text.find("`")
    for _ in range(_FENCE_HOPS):
        if at < 0:
            return count
        if text.startswith(_FENCE, at):
            count += 1
            at += len(_FENCE) - 1
        at = text.find("`", at + 1)
    return count + (text.count(_FENCE, at) if at >= 0 else 0)


def count_code_lines(text: str, cap: int = CODE_LINES_CAP) -> int:
    """How many lines look like source code, counting stops at `cap`; a single such line is weak evidence."""
    count = 0
    for line in text.splitlines():
        if _is_code_line(line):
            count += 1
            if count >= cap:
                break
    return count


def infer_task_type(text: str, *, has_code: bool) -> TaskType:
    """Classify the user's request; checked in order, the first signal wins.

    A message that is nothing but small talk counts as casual chat even with a
    question mark ("hi, how are you?"), so greetings keep reaching the fast tier.
    """
    if has_code:
        return TaskType.CODE
    lowered = text.lower()
    for keywords in _KEYWORD_TASKS:
        if _has_keyword(lowered, keywords):
            return keywords.task
    stripped = lowered.strip()
    if len(stripped) <= SMALL_TALK_MAX_CHARS and _SMALL_TALK.fullmatch(stripped):
        return TaskType.CASUAL_CHAT
    if _is_question(stripped):
        return TaskType.QUESTION_ANSWER
    return TaskType.CASUAL_CHAT


def _has_keyword(lowered: str, keywords: _Keywords) -> bool:
    """Same answer as `keywords.pattern.search(lowered)`, matching only where a keyword can start.

    `match` at a position still sees the character before it, so the word boundary holds.
    """
    if not any(map(lowered.__contains__, keywords.starts)):  # the usual case, without a Python loop
        return False
    for start in keywords.starts:
        at = lowered.find(start)
        while at >= 0:
            if keywords.pattern.match(lowered, at):
                return True
            at = lowered.find(start, at + 1)
    return False


def _is_question(stripped_lower: str) -> bool:
    if stripped_lower.endswith("?"):
        return True
    first = _FIRST_WORD.match(stripped_lower)
    return first is not None and first.group(1) in _QUESTION_WORDS


def _is_code_line(line: str) -> bool:
    stripped = line.strip()
    if len(stripped) < 2:
        return stripped in ("}", "{")
    if stripped.endswith(_CODE_LINE_END) or _CODE_LINE_START.match(stripped):
        return True
    if stripped.endswith(":"):
        return _is_block_header(stripped)
    if stripped.startswith("return ") or stripped == "return":
        return _is_return_statement(stripped[7:])
    if stripped.endswith(";"):
        # Prose can end a line with ';'; code that does nearly always has a call or assignment.
        return "(" in stripped or "=" in stripped
    if "=>" in stripped:
        return "(" in stripped or "{" in stripped  # arrow function, not a prose "A => B"
    if line.startswith(("    ", "\t")) and not _LIST_ITEM.match(stripped):
        return any(c in stripped for c in "=(){};")
    return False


def _is_return_statement(value: str) -> bool:
    """`return x`, `return a + b`, `return f(x)`; not "return the book to the library."."""
    value = value.strip().rstrip(";")
    if not value:
        return True
    if value.endswith("."):
        return False
    return len(value.split(maxsplit=1)) == 1 or any(c in value for c in _RETURN_VALUE_CHARS)


def _is_block_header(stripped: str) -> bool:
    """A Python block header (`if x > 0:`, `for k in d:`), not a prose lead-in like "for example:"."""
    if stripped in _BARE_HEADERS:
        return True
    if stripped.startswith(_CONDITION_HEADERS):
        return any(c in stripped for c in "=<>!()[]")
    if stripped.startswith("except "):
        rest = stripped[7:].lstrip()
        return rest[:1].isupper() or rest.startswith("(")
    if stripped.startswith("with "):
        return " as " in stripped or "(" in stripped
    return _FOR_HEADER.match(stripped) is not None


def _is_text_part(part: object) -> bool:
    return isinstance(part, Mapping) and part.get("type") in _TEXT_PART_TYPES and isinstance(part.get("text"), str)


def _content_size(content: object) -> tuple[int, bool]:
    """Characters of text and whether any image part is present."""
    if isinstance(content, str):
        return len(content), False
    if not isinstance(content, list):
        return 0, False
    chars = 0
    images = False
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in _IMAGE_PART_TYPES:
            images = True
        elif kind in _TEXT_PART_TYPES:
            text = part.get("text")
            if isinstance(text, str):
                chars += len(text)
    return chars, images


def _tool_calls_size(tool_calls: object) -> int:
    """Characters of tool-call names and arguments, which the model reads back as context."""
    if not isinstance(tool_calls, list):
        return 0
    chars = 0
    for call in tool_calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            for key in ("name", "arguments"):
                value = function.get(key)
                if isinstance(value, str):
                    chars += len(value)
    return chars


def _scan_window(text: str) -> str:
    if len(text) <= SCAN_HEAD_CHARS + SCAN_TAIL_CHARS:
        return text
    return text[:SCAN_HEAD_CHARS] + "\n" + text[-SCAN_TAIL_CHARS:]

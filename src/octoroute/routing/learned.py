"""The learned default scorer: how much a prompt needs a stronger model, in [0, 1].

A linear model over a bounded view of the prompt, trained offline by
`training/train_scorer.py` on public per-item "small models failed, big models
passed" labels (sources, commits and licenses in `training/DATA.md`). The
weights ship as package data (`learned_weights.json`) and are read once.

What one prediction reads, so its cost does not grow with the prompt:

- the full length in characters, as a number: `log1p(len(text))`. Length is a
  strong prior for difficulty and stays an explicit, named feature;
- the first `HEAD_CHARS` and the last `TAIL_CHARS` characters (the whole text
  when it is shorter than both together). That is where the question sits when
  a document is pasted; the middle is the document;
- from that window: its first `MAX_TOKENS` tokens as word unigrams, 5-letter
  prefixes of longer words, and bigrams (digit runs folded to `0`, single
  punctuation marks kept: `$`, `=`, `?` carry signal), each present term valued
  `1/sqrt(distinct terms)` so a long window does not outvote a short one; and a
  few counts and densities (digits, maths symbols, lines, answer options,
  question marks, code marks, numbers, words).

The text part is fitted without the length features and added to the length
prior at equal spread. The shipped weights (2026-12-07.6 on) use the counts
and densities only and no word terms: held-out training data preferred them,
and term weights learned from a handful of benchmarks mostly encode those
benchmarks' formats. The term machinery stays, so a weights file with terms
still loads; see `training/DATA.md`.

The raw linear score is mapped to a percentile of the reference distribution
(the training prompts' raw scores): `score = 0.4` means 40% of reference
prompts score lower, so a target share of traffic per tier is a threshold on
`score`. Interpolation between reference points keeps the map strictly
increasing, so distinct raw scores stay distinct.

Usage::

    model = LearnedModel.bundled()
    model.predict("Prove that every bounded monotone sequence converges.").score
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache
from heapq import nsmallest
from importlib import resources
from itertools import islice, pairwise
from types import MappingProxyType
from typing import Final

from octoroute.config.weightsfile import WeightsDocument, parse_weights

HEAD_CHARS: Final = 2000
TAIL_CHARS: Final = 1000
MAX_FACTORS: Final = 5
PREFIX: Final = 5
# Caps that keep the worst case (CJK, punctuation runs, one number per
# character) near the cost of plain English text of the same window.
MAX_TOKENS: Final = 900
MAX_NUMBERS: Final = 200
OPTION_LINES_SCANNED: Final = 40
WEIGHTS_RESOURCE: Final = "learned_weights.json"

# ASCII words, digit runs, runs of other letters (a CJK sentence is one token:
# no spaces to split on, and one token per character would cost 3,000 tokens
# per window), single punctuation marks.
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\W\d_a-z]+|[^\sa-z0-9]")
_DIGIT_RUN = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_OPTION_LINE = re.compile(r"[ \t]*\(?[A-Ja-j][.):]\s")
_DIGITS: Final = "0123456789"
_MATHS: Final = "=+*/^<>%$\\"
_CODE_MARKS: Final = ("def ", "return", "{", "}", "();", "import ", "=>", "```")

# Names of the dense features, in the order `dense_features` returns them; weights
# file format 1 (`config.weightsfile.FORMAT`) has one weight per name.
DENSE_NAMES: Final = (
    "log_length",
    "digit_share",
    "math_share",
    "log_lines",
    "options",
    "question_marks",
    "code_marks",
    "log_numbers",
    "log_words",
)


def window_of(text: str) -> str:
    """The bounded part of `text` a prediction reads: head, plus tail when long."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def extract_terms(window: str) -> frozenset[str]:
    """Distinct word unigrams and bigrams of `window`, digit runs folded to `0`."""
    # C-level steps where possible (findall, map, join): a Python loop per
    # token would cost several times more.
    tokens = _TOKEN.findall(_DIGIT_RUN.sub("0", window.lower()))[:MAX_TOKENS]
    terms = set(tokens)
    terms.update([f"{tok[:PREFIX]}~" for tok in terms if len(tok) > PREFIX])
    terms.update(map(" ".join, pairwise(tokens)))
    return frozenset(terms)


def dense_features(text: str, window: str) -> tuple[float, ...]:
    """The named numeric features (`DENSE_NAMES` order) of one prompt."""
    size = max(len(window), 1)
    # One C-level str.count per character: a few µs whatever the script, where
    # a Python loop costs ~100 µs and str.translate slows down on non-ASCII text.
    digits = sum(map(window.count, _DIGITS))
    maths = sum(map(window.count, _MATHS))
    return (
        math.log1p(len(text)),
        digits / size,
        maths / size,
        math.log1p(window.count("\n")),
        float(min(_count_option_lines(window), 10)),
        float(min(window.count("?"), 10)),
        float(min(sum(window.count(mark) for mark in _CODE_MARKS), 20)),
        math.log1p(sum(1 for _ in islice(_NUMBER.finditer(window), MAX_NUMBERS))),
        math.log1p(window.count(" ") + window.count("\n")),
    )


def _count_option_lines(window: str) -> int:
    lines = window.split("\n")
    if len(lines) > 2 * OPTION_LINES_SCANNED:
        lines = lines[:OPTION_LINES_SCANNED] + lines[-OPTION_LINES_SCANNED:]
    return sum(1 for line in lines if _OPTION_LINE.match(line))


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prompt's score and the contributions that moved it most."""

    score: float
    factors: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class _Weights:
    bias: float
    dense: tuple[float, ...]
    dense_means: tuple[float, ...]
    terms: MappingProxyType[str, float]
    reference: tuple[float, ...]


class LearnedModel:
    """A trained linear scorer with its percentile calibration. Immutable."""

    __slots__ = ("_weights", "version")

    version: str

    def __init__(self, version: str, weights: _Weights) -> None:
        self.version = version
        self._weights = weights

    @classmethod
    def bundled(cls) -> LearnedModel:
        """The model shipped with octoroute (read from package data once)."""
        return _load_bundled()

    @classmethod
    def from_bytes(cls, data: bytes) -> LearnedModel:
        """Parse a weights file (`config.weightsfile`); raises ValueError saying what is wrong."""
        return cls.from_document(parse_weights(data))

    @classmethod
    def from_document(cls, doc: WeightsDocument) -> LearnedModel:
        """The model of a validated weights document."""
        terms = MappingProxyType(dict(doc.terms))
        weights = _Weights(doc.bias, doc.dense, doc.dense_means, terms, tuple(sorted(doc.reference)))
        return cls(doc.version, weights)

    def raw_score(self, text: str) -> float:
        """The uncalibrated linear score (what training fits)."""
        return self._contributions(text)[0]

    def predict(self, text: str) -> Prediction:
        """Score one prompt: a percentile in [0, 1] and its top factors."""
        raw, factors = self._contributions(text)
        ranked = nsmallest(MAX_FACTORS, factors, key=lambda item: (-abs(item[1]), item[0]))
        named = tuple((f"word '{label[1:]}'" if label.startswith(" ") else label, value) for label, value in ranked)
        return Prediction(score=percentile(self._weights.reference, raw), factors=named)

    def _contributions(self, text: str) -> tuple[float, list[tuple[str, float]]]:
        weights = self._weights
        window = window_of(text)
        values = dense_features(text, window)
        factors: list[tuple[str, float]] = []
        parts = [weights.bias]
        for name, value, weight, mean in zip(DENSE_NAMES, values, weights.dense, weights.dense_means, strict=True):
            effect = weight * (value - mean)
            parts += (weight * mean, effect)
            if effect != 0.0:
                factors.append((_describe_dense(name, value, len(text)), effect))
        table = weights.terms
        # No term weights (the shipped model since 2026-12-07.6): skip the tokenizer.
        terms = extract_terms(window) if table else frozenset()
        if terms:
            scale = 1.0 / math.sqrt(len(terms))
            for term in terms & table.keys():
                effect = table[term] * scale
                parts.append(effect)
                factors.append((" " + term, effect))  # named only if it makes the top five
        # fsum is exact, so the set's iteration order (which varies between
        # processes with string hashing) never changes the score.
        return math.fsum(parts), factors


def percentile(reference: tuple[float, ...], raw: float) -> float:
    """Share of `reference` (sorted) below `raw`, interpolated, strictly increasing.

    Beyond the reference's ends the map continues as a squashed tail inside the
    first and last step, so it stays in [0, 1] and still orders what it sees.
    """
    count = len(reference)
    step = 1.0 / count
    low, high = reference[0], reference[-1]
    spread = max(high - low, 1e-12)
    if raw <= low:
        return step * 0.5 * math.exp((raw - low) / spread)
    if raw >= high:
        return 1.0 - step * 0.5 * math.exp((high - raw) / spread)
    index = bisect_left(reference, raw)
    below, above = reference[index - 1], reference[index]
    fraction = (raw - below) / (above - below) if above > below else 0.0
    return step * (index - 0.5 + fraction)


def _describe_dense(name: str, value: float, length: int) -> str:
    if name == "log_length":
        return f"length {length:,} chars"
    if name in ("digit_share", "math_share"):
        return f"{name.replace('_', ' ')} {value:.0%}"
    if name == "log_lines":
        return f"lines {round(math.expm1(value)) + 1}"
    if name == "log_numbers":
        return f"numbers {round(math.expm1(value))}"
    if name == "log_words":
        return f"words {round(math.expm1(value))}"
    return f"{name.replace('_', ' ')} {value:g}"


@cache
def _load_bundled() -> LearnedModel:
    # Cached so every caller shares one parsed copy; the model is immutable.
    data = resources.files("octoroute.routing").joinpath(WEIGHTS_RESOURCE).read_bytes()
    return LearnedModel.from_bytes(data)

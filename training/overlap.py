"""The overlap check: keep evaluation benchmarks out of the scorer's training data.

Every training item is compared against every prompt of the evaluation sets
(`../shared/data/routellm/*.jsonl` by default) and flagged when it is

- from a benchmark family derived from MMLU, GSM8K or MT-Bench, by its source
  name (`FORBIDDEN_FAMILIES`: MMLU-Pro reuses MMLU questions, MGSM translates
  GSM8K, and a translation shares no words with its original, so the name is
  the only signal);
- an exact copy after normalisation (case, Unicode form, punctuation, spaces);
- a near copy: word 3-shingle Jaccard >= `JACCARD_MIN`, or shingle containment
  >= `CONTAINMENT_MIN` (one text inside the other: a question without its
  options, a prompt with a preamble added), or word-set containment >=
  `WORDSET_MIN` (reordered or relabelled options, a reworded sentence).

Candidates come from an inverted index on shingles that are rare in the
reference, so the check is linear in practice. Pure Python, no dependencies:
`python -m training.overlap TRAIN.jsonl` checks a file of {"id","source","text"}.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import orjson

DEFAULT_REFERENCE = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "routellm"
FORBIDDEN_FAMILIES = (
    ("mmlu", re.compile(r"mmlu", re.IGNORECASE)),
    ("gsm8k", re.compile(r"gsm", re.IGNORECASE)),
    ("mt-bench", re.compile(r"mt[-_ ]?bench", re.IGNORECASE)),
)
SHINGLE = 3
JACCARD_MIN = 0.45
CONTAINMENT_MIN = 0.8
CONTAINMENT_MIN_SHINGLES = 6
WORDSET_MIN = 0.8
WORDSET_MIN_WORDS = 8
WORDSET_SIZE_RATIO = 0.5
RARE_DF = 50
TOP_CANDIDATES = 30


@dataclass(frozen=True, slots=True)
class Item:
    """One text to check (training) or to check against (reference)."""

    id: str
    source: str
    text: str


@dataclass(frozen=True, slots=True)
class Flag:
    """Why a training item was removed."""

    item_id: str
    source: str
    reason: str
    match_id: str
    similarity: float


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation to spaces, single spaces."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w]+", " ", folded).split())


def shingles(words: Sequence[str], size: int = SHINGLE) -> frozenset[str]:
    """Word `size`-shingles; a text shorter than `size` words is one shingle."""
    if len(words) < size:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def family_of(source: str) -> str | None:
    """The forbidden benchmark family a source name belongs to, if any."""
    for family, pattern in FORBIDDEN_FAMILIES:
        if pattern.search(source):
            return family
    return None


@dataclass(frozen=True, slots=True)
class _Prepared:
    item: Item
    norm: str
    words: frozenset[str]
    shingles: frozenset[str]


def _prepare(item: Item) -> _Prepared:
    norm = normalise(item.text)
    words = norm.split()
    return _Prepared(item, norm, frozenset(words), shingles(words))


class ReferenceIndex:
    """The evaluation prompts, indexed for exact and near-duplicate lookups."""

    def __init__(self, reference: Iterable[Item]) -> None:
        self._items = [_prepare(item) for item in reference]
        self._exact: dict[str, int] = {}
        postings: defaultdict[str, list[int]] = defaultdict(list)
        for index, prepared in enumerate(self._items):
            self._exact.setdefault(prepared.norm, index)
            for shingle in prepared.shingles:
                postings[shingle].append(index)
        self._postings = {s: ids for s, ids in postings.items() if len(ids) <= RARE_DF}

    def __len__(self) -> int:
        return len(self._items)

    def match(self, item: Item) -> Flag | None:
        """The first reason `item` overlaps the reference, or None."""
        family = family_of(item.source)
        if family is not None:
            return Flag(item.id, item.source, f"family {family}", item.source, 1.0)
        prepared = _prepare(item)
        if not prepared.norm:
            return None
        exact = self._exact.get(prepared.norm)
        if exact is not None:
            return Flag(item.id, item.source, "exact", self._items[exact].item.id, 1.0)
        counts: Counter[int] = Counter()
        for shingle in prepared.shingles:
            counts.update(self._postings.get(shingle, ()))
        # Ties broken by position, so the check gives the same answer in every process.
        ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_CANDIDATES]
        for index, _ in ranked:
            flag = _compare(prepared, self._items[index])
            if flag is not None:
                return flag
        return None


def _compare(item: _Prepared, ref: _Prepared) -> Flag | None:
    shared = len(item.shingles & ref.shingles)
    union = len(item.shingles) + len(ref.shingles) - shared
    jaccard = shared / union if union else 0.0
    if jaccard >= JACCARD_MIN:
        return Flag(item.item.id, item.item.source, "near-duplicate (shingle jaccard)", ref.item.id, jaccard)
    smaller = min(len(item.shingles), len(ref.shingles))
    if smaller >= CONTAINMENT_MIN_SHINGLES and shared / smaller >= CONTAINMENT_MIN:
        return Flag(item.item.id, item.item.source, "contained (shingle containment)", ref.item.id, shared / smaller)
    # Similar sizes only: any short question's words turn up in a long passage.
    sizes = sorted((len(item.words), len(ref.words)))
    if sizes[0] >= WORDSET_MIN_WORDS and sizes[0] >= WORDSET_SIZE_RATIO * sizes[1]:
        common = len(item.words & ref.words) / min(len(item.words), len(ref.words))
        if common >= WORDSET_MIN:
            return Flag(item.item.id, item.item.source, "reworded copy (word-set containment)", ref.item.id, common)
    return None


def load_reference(directory: Path) -> list[Item]:
    """Every prompt of every `*.jsonl` in `directory` (lines with "prompt")."""
    items: list[Item] = []
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl evaluation files in {directory}")
    for path in files:
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if line.strip():
                row = orjson.loads(line)
                items.append(Item(str(row.get("id", f"{path.name}:{number}")), path.stem, str(row["prompt"])))
    return items


def split_clean(items: Sequence[Item], index: ReferenceIndex) -> tuple[list[Item], list[Flag]]:
    """Items that pass the check, and a flag for each one removed."""
    kept: list[Item] = []
    flags: list[Flag] = []
    for item in items:
        flag = index.match(item)
        if flag is None:
            kept.append(item)
        else:
            flags.append(flag)
    return kept, flags


def report(flags: Sequence[Flag], total: int, out: TextIO | None = None) -> None:
    """Print what was removed and why: counts per reason and source, then each near copy."""
    out = out or sys.stdout
    print(f"overlap check: {len(flags)} of {total} training items removed", file=out)
    by_reason = Counter((flag.reason, flag.source) for flag in flags)
    for (reason, source), count in sorted(by_reason.items()):
        print(f"  {count:5d}  {reason:36s} {source}", file=out)
    for flag in flags:
        if not flag.reason.startswith("family"):
            print(
                f"  removed {flag.item_id} ({flag.source}): {flag.reason} {flag.similarity:.2f} of {flag.match_id}",
                file=out,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("train", type=Path, help='JSONL with "id", "source", "text"')
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    args = parser.parse_args(argv)
    rows = [orjson.loads(line) for line in args.train.read_bytes().splitlines() if line.strip()]
    items = [Item(str(r["id"]), str(r["source"]), str(r["text"])) for r in rows]
    _, flags = split_clean(items, ReferenceIndex(load_reference(args.reference)))
    report(flags, len(items))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

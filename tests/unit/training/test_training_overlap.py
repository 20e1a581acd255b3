from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from training.overlap import Item, ReferenceIndex, family_of, load_reference, normalise, report, split_clean

REFERENCE = [
    Item(
        "mmlu/1",
        "mmlu",
        "Which of the following best describes the function of the mitochondria in eukaryotic cells?\n"
        "A. protein synthesis\nB. energy production\nC. lipid storage\nD. cell division\nAnswer:",
    ),
    Item(
        "mmlu/2",
        "mmlu",
        "A landowner conveyed a tract of land to a purchaser by a deed that was never recorded. Two years later "
        "the landowner conveyed the same tract to a neighbor, who paid value and had no notice of the first deed, "
        "and the neighbor recorded promptly. The jurisdiction has a notice-type recording statute. "
        "Who owns the tract?\nA. The purchaser\nB. The neighbor\nC. Both, as tenants in common\n"
        "D. The landowner\nAnswer:",
    ),
    Item(
        "gsm8k/1",
        "gsm8k",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
    ),
]


@pytest.fixture(scope="module")
def index() -> ReferenceIndex:
    return ReferenceIndex(REFERENCE)


@pytest.mark.parametrize(
    ("source", "family"),
    [
        ("mmlu", "mmlu"),
        ("MMLU-Pro", "mmlu"),
        ("cmmlu_train", "mmlu"),
        ("gsm8k", "gsm8k"),
        ("agentverse-mgsm", "gsm8k"),
        ("GSM-Hard", "gsm8k"),
        ("mt_bench", "mt-bench"),
        ("MT-Bench-101", "mt-bench"),
        ("arc_challenge", None),
        ("math", None),
        ("gpqa", None),
    ],
)
def test_family_by_name(source: str, family: str | None) -> None:
    assert family_of(source) == family


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # exact after case, punctuation and spacing
        (
            "natalia SOLD clips to 48 of her friends in april -- and then she sold half as many clips in may; "
            "how many clips did natalia sell altogether in april and may",
            "exact",
        ),
        # a paraphrased ending keeps most shingles
        (
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "What is the total number of clips Natalia sold in April and May?",
            "near-duplicate (shingle jaccard)",
        ),
        # the facts of a long item without its options sit inside the reference prompt
        (
            "A landowner conveyed a tract of land to a purchaser by a deed that was never recorded. "
            "Two years later the landowner conveyed the same tract to a neighbor.",
            "contained (shingle containment)",
        ),
        # options reordered and relabelled: few shingles survive, the words do
        (
            "Which of the following best describes the function of the mitochondria in eukaryotic cells? "
            "(1) cell division (2) lipid storage (3) energy production (4) protein synthesis",
            "reworded copy (word-set containment)",
        ),
    ],
)
def test_copies_are_flagged(index: ReferenceIndex, text: str, reason: str) -> None:
    flag = index.match(Item("t1", "somewhere", text))
    assert flag is not None
    assert flag.reason == reason


def test_word_set_catches_shuffled_sentences(index: ReferenceIndex) -> None:
    text = (
        "How many clips did Natalia sell altogether in April and May, if she sold clips to 48 of her friends "
        "in April and half as many clips in May?"
    )
    flag = index.match(Item("t2", "somewhere", text))
    assert flag is not None
    assert flag.match_id == "gsm8k/1"


@pytest.mark.parametrize(
    "text",
    [
        "What is the function of the Golgi apparatus in plant cells?",
        "Write a function to find the longest common subsequence of two strings.",
        "Tom has 12 apples and gives 5 to his sister. How many apples does he have left?",
        "",
    ],
)
def test_unrelated_items_pass(index: ReferenceIndex, text: str) -> None:
    assert index.match(Item("t3", "arc_challenge", text)) is None


def test_family_beats_text(index: ReferenceIndex) -> None:
    flag = index.match(Item("t4", "MGSM", "Tom a 12 pommes. Combien lui en reste-t-il ?"))
    assert flag is not None
    assert flag.reason == "family gsm8k"


def test_split_and_report_say_what_was_removed(index: ReferenceIndex) -> None:
    items = [
        Item("keep", "arc_challenge", "Which gas do plants take in for photosynthesis?"),
        Item("drop-family", "mmlu_pro", "anything"),
        Item("drop-copy", "math", REFERENCE[2].text.upper()),
    ]
    kept, flags = split_clean(items, index)
    assert [item.id for item in kept] == ["keep"]
    out = io.StringIO()
    report(flags, len(items), out)
    text = out.getvalue()
    assert "2 of 3 training items removed" in text
    assert "family mmlu" in text
    assert "removed drop-copy (math): exact 1.00 of gsm8k/1" in text


def test_normalise() -> None:
    assert normalise("  Ünïcode\u00a0TEXT, with—punctuation!! ") == "ünïcode text with punctuation"


def test_load_reference_reads_every_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(orjson.dumps({"id": "a/1", "prompt": "one"}) + b"\n\n")
    (tmp_path / "b.jsonl").write_bytes(orjson.dumps({"prompt": "two"}) + b"\n")
    items = load_reference(tmp_path)
    assert [(i.id, i.source, i.text) for i in items] == [("a/1", "a", "one"), ("b.jsonl:1", "b", "two")]
    with pytest.raises(FileNotFoundError):
        load_reference(tmp_path / "missing")


def test_real_evaluation_sets_are_found() -> None:
    # The default path resolves to ../shared/data/routellm from the repository root.
    from training.overlap import DEFAULT_REFERENCE

    items = load_reference(DEFAULT_REFERENCE)
    assert {item.source for item in items} >= {"mmlu", "gsm8k"}

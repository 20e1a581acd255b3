from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import orjson
import pytest
from training.mmlu_pro import as_data_row, correct, examples_of, is_mmlu_derived, read_results

from octoroute.cli.evaluate import read_data


def record(qid: str, src: str = "stemez-Physics", pred: str | None = "A", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "question_id": qid,
        "question": f"What is item {qid}?",
        "options": ["1 m", "2 m", "3 m"],
        "answer": "A",
        "category": "computer science",
        "src": src,
        "pred": pred,
    }
    return base | extra


def test_questions_mmlu_pro_took_from_mmlu_never_become_examples() -> None:
    weak = {"1": record("1", src="ori_mmlu-high_school_physics"), "2": record("2")}
    strong = {"1": record("1", src="ori_mmlu-high_school_physics"), "2": record("2")}
    assert is_mmlu_derived(weak["1"])
    assert not is_mmlu_derived(weak["2"])
    assert [e.id for e in examples_of([weak], [strong])] == ["mmlupro:2"]


def test_an_example_carries_the_prompt_its_subject_and_both_sides_scores() -> None:
    weak = {"7": record("7", pred="B")}
    strong_a = {"7": record("7", pred="A")}
    strong_b = {"7": record("7", pred=None)}
    (example,) = examples_of([weak], [strong_a, strong_b])
    assert example.text == "What is item 7?\nA. 1 m\nB. 2 m\nC. 3 m"
    assert example.source == "stemqa-computer_science"
    assert (example.weak, example.strong) == (0.0, 0.5)


def test_a_strong_run_without_the_item_is_left_out_of_that_items_mean() -> None:
    weak = {"3": record("3", pred="A")}
    (example,) = examples_of([weak], [{"3": record("3", pred="A")}, {}])
    assert example.strong == 1.0


def test_a_run_that_asked_another_revision_of_the_question_does_not_count() -> None:
    weak = {"4": record("4", question="Rate 5: how many?"), "5": record("5")}
    respaced = record("5", question="What  is item\n5?", pred="C")
    changed = record("4", question="Rate 0.5: how many?")
    examples = examples_of([weak], [{"4": changed, "5": respaced}, {"4": record("4", question="Rate 5: how many?")}])
    assert [(e.id, e.strong) for e in examples] == [("mmlupro:4", 1.0), ("mmlupro:5", 0.0)]
    # and when the weak run is the odd one out, the item goes
    assert examples_of([{"4": changed}], [weak]) == []


def test_options_stored_as_the_text_of_a_list_are_read() -> None:
    weak = {"6": record("6", options="['x', 'y']")}
    (example,) = examples_of([weak], [weak])
    assert example.text.endswith("\nA. x\nB. y")


def test_no_runs_on_a_side_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        examples_of([], [{}])


def test_correct_needs_a_prediction_equal_to_the_gold_letter() -> None:
    assert correct(record("1", pred="A")) == 1.0
    assert correct(record("1", pred="B")) == 0.0
    assert correct(record("1", pred=None, answer=None)) == 0.0


def test_results_are_read_from_the_zip_at_a_commit_skipping_stray_entries(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model_outputs_m_5shots.json", orjson.dumps([record("1"), "stray", record("2")]))
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "eval_results").mkdir()
    (repo / "eval_results" / "model_outputs_m_5shots.zip").write_bytes(buffer.getvalue())
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "runs"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    runs = read_results(repo / ".git", "m", commit)
    assert sorted(runs) == ["1", "2"]


def test_an_exported_row_is_octoroute_eval_and_train_data(tmp_path: Path) -> None:
    weak = {"7": record("7", pred="B"), "8": record("8", pred="A")}
    examples = examples_of([weak], [{"7": record("7"), "8": record("8")}])
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(orjson.dumps(as_data_row(e)) + b"\n" for e in examples))
    prompts, labels = read_data(path)
    assert prompts == [e.text for e in examples]
    assert (labels.weak, labels.strong) == ((0.0, 1.0), (1.0, 1.0))

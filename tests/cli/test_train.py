"""`octoroute train` as a user runs it: labelled prompts in, a cross-validated
report and a weights file out, and the file in use by `score`, `route` and `check`
through `[routing] learned_weights`. Real processes throughout."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import orjson
import pytest

from octoroute.routing.learned import LearnedModel

OCTOROUTE = Path(sys.executable).parent / "octoroute"
NO_SKLEARN = Path(__file__).parent / "no_sklearn"
QUICK = ("--bootstrap", "200", "--draws", "200")
WORDS = ("the", "a", "river", "house", "blue", "table", "quickly", "green", "music", "letter", "garden", "window")


def octoroute(*args: str, stdin: bytes = b"", cwd: Path | None = None, pythonpath: Path | None = None):
    env = {**os.environ, "COLUMNS": "200"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [str(OCTOROUTE), *args], input=stdin, capture_output=True, timeout=300, env=env, cwd=cwd, check=False
    )


def sums_are_hard(path: Path, count: int = 400, seed: int = 1) -> list[dict[str, object]]:
    """Prompts where each written sum makes the weak model likelier to fail, whatever the length:
    length alone ranks them barely above chance, the counts the scorer reads rank them well."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sums = rng.randint(0, 6)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        maths = " ".join(f"{rng.randint(1, 999)} + {rng.randint(1, 99)} =" for _ in range(sums))
        failed = rng.random() < 0.1 + 0.15 * sums
        rows.append(
            {"prompt": f"{text} {maths}".strip() + "?", "weak_score": 0.0 if failed else 1.0, "strong_score": 1}
        )
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return rows


def table_row(stdout: str, name: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.strip().startswith(name))
    return line.split()


def config_with(weights: str) -> str:
    return (
        '[[models.fast]]\nname = "small"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[[models.deep]]\nname = "big"\nbase_url = "http://127.0.0.1:9/v1"\n'
        f"[routing]\nlearned_weights = {orjson.dumps(weights).decode()}\n"
    )


def test_train_reports_cross_validated_quality_and_writes_a_file_the_scorer_loads(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data)
    out = tmp_path / "weights.json"
    result = octoroute("train", str(data), "--out", str(out), *QUICK)
    assert result.returncode == 0, result.stderr
    stdout = result.stdout.decode()
    trained, length = table_row(stdout, "trained"), table_row(stdout, "length")
    # APGR over every score is the third column: the trained model ranks the sums first.
    assert float(trained[2]) > float(length[2]) + 0.05
    assert "5-fold cross-validation" in stdout
    assert re.search(r"trained vs bundled default \(\S+\): Δ APGR [+-]\d\.\d{3}", stdout)
    assert f'learned_weights = "{out}"' in stdout
    model = LearnedModel.from_bytes(out.read_bytes())
    assert model.version.startswith("trained-")
    assert model.predict("12 + 4 = 5 + 6 = 7 + 8 = 9 + 1 =").score > model.predict("the blue river song").score


def test_training_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=200)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for out in (first, second):
        assert octoroute("train", str(data), "-o", str(out), "--bootstrap", "0", "--draws", "20").returncode == 0
    assert first.read_bytes() == second.read_bytes()


def test_word_terms_and_a_name_are_options(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=200)
    out = tmp_path / "w.json"
    result = octoroute("train", str(data), "-o", str(out), "--terms", "--name", "mine-1", "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    document = orjson.loads(out.read_bytes())
    assert document["version"] == "mine-1"
    assert document["terms"], "word terms were asked for"
    assert "(version mine-1, " in result.stdout.decode()


def test_score_route_and_check_use_the_configured_weights(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data)
    assert octoroute("train", str(data), "-o", str(tmp_path / "w.json"), "--bootstrap", "0").returncode == 0
    (tmp_path / "octoroute.toml").write_text(config_with("w.json"))  # relative to the working directory
    model = LearnedModel.from_bytes((tmp_path / "w.json").read_bytes())
    prompts = ["hello there", "12 + 4 = 5 + 6 = 7 + 8 =", "the green garden window?"]
    stdin = b"".join(orjson.dumps({"prompt": p}) + b"\n" for p in prompts)

    scored = octoroute("score", "--config", "octoroute.toml", stdin=stdin, cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    got = [orjson.loads(line)["score"] for line in scored.stdout.splitlines()]
    assert got == [round(model.predict(p).score, 6) for p in prompts]
    default = octoroute("score", stdin=stdin, cwd=tmp_path)
    assert [orjson.loads(line)["score"] for line in default.stdout.splitlines()] != got

    explained = octoroute("route", "--explain", "--config", "octoroute.toml", prompts[1], cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert f"model {model.version}" in explained.stdout.decode()

    checked = octoroute("check", "octoroute.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"learned weights w.json ({model.version})" in checked.stdout.decode()

    # the trained model as the shadow candidate of the bundled one
    shadowed = config_with("w.json").replace("[routing]\n", '[routing.shadow]\nstrategy = "learned"\n')
    (tmp_path / "shadowed.toml").write_text(shadowed)
    checked = octoroute("check", "shadowed.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"shadow learned with learned weights w.json ({model.version})" in checked.stdout.decode()


def test_a_bad_weights_file_is_a_config_problem(tmp_path: Path) -> None:
    cases = {
        "missing.json": "cannot read missing.json",
        "garbage.json": "not JSON",
        "other.json": "not a weights file of format octoroute-learned-scorer/1: format",
        "short.json": "dense",
    }
    (tmp_path / "garbage.json").write_text("weights!")
    (tmp_path / "other.json").write_text('{"format": "something-else/2"}')
    good = orjson.loads(resources.files("octoroute.routing").joinpath("learned_weights.json").read_bytes())
    (tmp_path / "short.json").write_bytes(orjson.dumps({**good, "dense": good["dense"][:8]}))
    for name, fragment in cases.items():
        (tmp_path / "c.toml").write_text(config_with(name))
        for args in (("check", "c.toml"), ("score", "--config", "c.toml")):
            result = octoroute(*args, stdin=b'{"prompt": "hi"}\n', cwd=tmp_path)
            assert result.returncode != 0, (name, args)
            err = result.stderr.decode()
            assert "routing.learned_weights" in err, (name, args, err)
            assert fragment in err, (name, args, err)
            assert "Traceback" not in err


def test_problems_with_the_input_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=30)
    out = tmp_path / "w.json"
    few = octoroute("train", str(data), "-o", str(out))
    assert few.returncode == 2
    assert few.stderr.decode().strip() == (
        f"octoroute train: {data}: 30 prompts; 5-fold cross-validation needs at least 50 (10 per fold)"
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(data.read_bytes() + b"{not json\n")
    bad = octoroute("train", str(broken), "-o", str(out), "--folds", "2")
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith(f"octoroute train: {broken}:31: not JSON")
    no_sklearn = octoroute("train", str(data), "-o", str(out), "--folds", "2", pythonpath=NO_SKLEARN)
    assert no_sklearn.returncode == 2
    assert "pip install 'octoroute[train]'" in no_sklearn.stderr.decode()
    assert not out.exists()
    nothing = octoroute("train", "-o", str(out))
    assert nothing.returncode == 2
    assert "give DATA.jsonl, or --log events.jsonl with --labels labels.jsonl" in nothing.stderr.decode()
    both = octoroute("train", str(data), "--log", str(data), "--labels", str(data), "-o", str(out))
    assert both.returncode == 2
    assert "give DATA.jsonl, or --log with --labels, not both" in both.stderr.decode()
    for result in (few, bad, no_sklearn, nothing, both):
        assert len(result.stderr.decode().strip().splitlines()) == 1
        assert result.stdout == b""


def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=100)
    out = tmp_path / "w.json"
    out.write_text("keep me")
    refused = octoroute("train", str(data), "-o", str(out), "--bootstrap", "0")
    assert refused.returncode == 2
    assert "exists; give --force" in refused.stderr.decode()
    assert out.read_text() == "keep me"
    forced = octoroute("train", str(data), "-o", str(out), "--bootstrap", "0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert LearnedModel.from_bytes(out.read_bytes()).version.startswith("trained-")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".w.json")] == []


def test_json_gives_eval_rows_the_comparison_with_the_bundled_model_and_the_file(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=200)
    out = tmp_path / "w.json"
    result = octoroute("train", str(data), "-o", str(out), "--json", *QUICK)
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    names = [row["name"] for row in document["rows"]]
    assert names[0] == "trained"
    assert names[1].startswith("bundled ")
    assert names[2:] == ["length", "random"]
    trained, length = document["rows"][0], document["rows"][2]
    assert trained["apgr_every"] > length["apgr_every"]
    assert trained["vs_length"]["apgr_difference"] == pytest.approx(
        trained["apgr_every"] - length["apgr_every"], abs=2e-6
    )
    bundled = document["rows"][1]
    difference = trained["apgr_every"] - bundled["apgr_every"]
    assert document["vs_bundled"]["apgr_difference"] == pytest.approx(difference, abs=2e-6)
    assert document["vs_bundled"]["resamples"] == 200
    assert document["vs_bundled"]["bundled"] == LearnedModel.bundled().version
    assert document["weights"] == {
        "path": str(out.resolve()),
        "version": LearnedModel.from_bytes(out.read_bytes()).version,
        "terms": 0,
        "settings": {"word_terms": False, "text_weight": 1.0},
    }
    assert "selection" not in document
    assert "plot" not in document


def test_select_chooses_the_settings_by_cross_validation_and_reports_a_nested_row(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=200)
    out = tmp_path / "w.json"
    result = octoroute("train", str(data), "-o", str(out), "--select", "--folds", "3", "--json", *QUICK)
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    grid = [(row["word_terms"], row["text_weight"]) for row in document["selection"]]
    assert grid[:8] == [(t, w) for t in (False, True) for w in (0.5, 1.0, 2.0, 4.0)]
    for terms, weight in grid[8:]:  # widened: the best so far, at twice the largest weight tried
        assert weight == 2 * max(w for _, w in grid[: grid.index((terms, weight))])
    best = max(document["selection"], key=lambda row: row["apgr_every"])  # first of equals wins
    written = document["weights"]["settings"]
    assert written == {"word_terms": best["word_terms"], "text_weight": best["text_weight"]}
    assert (document["weights"]["terms"] > 0) == written["word_terms"]
    trained = document["rows"][0]
    assert trained["apgr_every"] > document["rows"][2]["apgr_every"]  # beats length out of fold
    assert "each fold's setting chosen by an inner 3-fold cross-validation" in document["notes"][0]
    # the same data with other settings is another model: another default version
    plain = octoroute("train", str(data), "-o", str(tmp_path / "p.json"), "--folds", "3", "--bootstrap", "0", "--json")
    assert orjson.loads(plain.stdout)["weights"]["version"] != document["weights"]["version"]


def test_select_refuses_settings_it_would_choose(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    sums_are_hard(data, count=100)
    for extra in (("--terms",), ("--text-weight", "2")):
        result = octoroute("train", str(data), "-o", str(tmp_path / "w.json"), "--select", *extra)
        assert result.returncode == 2
        assert "--select chooses --terms and --text-weight itself" in result.stderr.decode()

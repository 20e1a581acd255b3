"""`octoroute eval --log` on the event file a real gateway wrote: the field names it reads are the
ones the gateway writes, and the live score is evaluated against labels joined on X-Request-Id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.test_learned_routing import HARD, default_routing, three_tiers
from tests.support import eventually

from octoroute.routing.evaluation import Labels, evaluate_scores, length_score
from octoroute.routing.learned import LearnedModel
from octoroute.routing.scoring import bundled_model

OCTOROUTE = Path(sys.executable).parent / "octoroute"


def octoroute(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script, on a wide terminal so rich wraps no line of its tables."""
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([str(OCTOROUTE), *args], capture_output=True, text=True, timeout=120, check=False, env=env)


# request id: (prompt, weak answer's quality, strong answer's quality)
LABELLED = {
    "q0": ("hi", 0, 0),
    "q1": ("What is 2 + 2?", 1, 1),
    "q2": (HARD, 0, 1),
    "q3": ("Write a haiku about rain.", 1, 0),
    "q4": ("Explain, step by step, why the sum of two odd numbers is even, and prove it.", 0, 1),
}


def test_eval_reads_the_event_file_a_gateway_wrote(upstreams, gateway, sdk_clients, tmp_path):
    events = tmp_path / "events.jsonl"
    config = default_routing(three_tiers(upstreams), observability={"events_file": str(events), "log_content": True})
    client = sdk_clients.openai(gateway(config).base_url)

    def send(request_id: str, text: str, model: str = "auto") -> None:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], extra_headers={"X-Request-Id": request_id}
        )

    for request_id, (text, _, _) in LABELLED.items():
        send(request_id, text)
    send("direct", HARD, model="deep")  # names a group: not auto-routed, so no score
    send("unlabelled", "Tell me about the weather.")

    def requests() -> list[dict[str, object]]:
        records = [json.loads(line) for line in events.read_text().splitlines()]
        return [r for r in records if r["event"] == "request"]

    eventually(lambda: len(requests()) == 7, what="seven request events")
    labels = tmp_path / "labels.jsonl"
    rows = [{"request_id": rid, "weak_score": w, "strong_score": s} for rid, (_, w, s) in LABELLED.items()]
    rows.append({"request_id": "direct", "weak_score": 0, "strong_score": 1})
    rows.append({"request_id": "ghost", "weak_score": 1, "strong_score": 0})  # no such request
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))

    result = octoroute("eval", "--log", str(events), "--labels", str(labels), "--json", "--bootstrap", "50")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["counts"] == {
        "request events": 7,
        "with a label and a score (evaluated)": 5,
        "without a label": 1,
        "labelled, without a score (not auto-routed)": 1,
        "labels matching no request event": 1,
    }
    live, length, _ = document["rows"]
    assert live["name"] == "live (learned)"
    model = bundled_model()
    weak = [w for _, w, _ in LABELLED.values()]
    strong = [s for _, _, s in LABELLED.values()]
    expected = evaluate_scores(
        [round(model.predict(t).score, 4) for t, _, _ in LABELLED.values()], Labels.of(weak, strong)
    )
    assert live["apgr_every"] == round(expected.apgr_every, 6)
    assert live["cpt50"] == round(expected.cpt50, 6)
    by_length = evaluate_scores([length_score(t) for t, _, _ in LABELLED.values()], Labels.of(weak, strong))
    assert length["apgr_every"] == round(by_length.apgr_every, 6)
    assert "length baseline: prompt characters (the log has the text)" in document["notes"]


def test_train_learns_from_the_event_file_a_gateway_wrote_and_its_labels(upstreams, gateway, sdk_clients, tmp_path):
    events = tmp_path / "events.jsonl"
    config = default_routing(three_tiers(upstreams), observability={"events_file": str(events), "log_content": True})
    client = sdk_clients.openai(gateway(config).base_url)
    labelled = {}
    for i in range(24):  # every third prompt asks for sums: those are the ones the weak model failed
        text = f"Add {i} + 17 = ? and {i} * 3 = ? and {i} - 2 = ?" if i % 3 == 0 else f"Say hello to friend number {i}."
        labelled[f"t{i}"] = (text, 0 if i % 3 == 0 else 1, 1)
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": text}], extra_headers={"X-Request-Id": f"t{i}"}
        )

    def request_events() -> int:
        return sum('"event":"request"' in line.replace(" ", "") for line in events.read_text().splitlines())

    eventually(lambda: request_events() == 24, what="24 request events")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"request_id": r, "weak_score": w, "strong_score": s}) + "\n"
            for r, (_, w, s) in labelled.items()
        )
    )
    out = tmp_path / "w.json"
    result = octoroute("train", "--log", str(events), "--labels", str(labels), "-o", str(out), "--folds", "2")
    assert result.returncode == 0, result.stderr
    assert f"{events} with {labels}: 24 prompts" in result.stdout
    model = LearnedModel.from_bytes(out.read_bytes())
    hard = min(model.predict(t).score for t, w, _ in labelled.values() if w == 0)
    easy = max(model.predict(t).score for t, w, _ in labelled.values() if w == 1)
    assert hard > easy

    silent = tmp_path / "silent.jsonl"  # the same events without their text: nothing to learn from
    silent.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "prompt"}) + "\n"
            for line in events.read_text().splitlines()
        )
    )
    refused = octoroute("train", "--log", str(silent), "--labels", str(labels), "-o", str(tmp_path / "x.json"))
    assert refused.returncode == 2
    assert "set [observability] log_content = true" in refused.stderr
    assert not (tmp_path / "x.json").exists()

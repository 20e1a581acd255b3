"""Golden files for the Ollama translators (protocols/ollama.py):
tests/golden/translate/ollama_<kind>/<case>.input.json → <case>.expected.json.

Inputs follow Ollama's API reference (docs/api.md in the ollama repository) and
what the official `ollama` Python client sends; each expected file holds the
whole output and every degradation as [kind, path]. Outputs are also checked
where a real consumer reads them: translated requests against the OpenAI spec,
answers and streamed objects with the `ollama` client's own models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ollama
import orjson
import pytest
from tests.spec_validation import validate
from tests.unit.translate.test_translate_golden import case_id, expected_path, lost_as_json

from octoroute.protocols import ollama as translate
from octoroute.protocols.ollama import Endpoint, Timings

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "translate"
TIMINGS = Timings(total=5_000_000, prompt_eval=1_000_000, eval=3_000_000)
CREATED = "2026-12-07T12:00:00Z"


def cases(folder: str) -> list[Path]:
    found = sorted((GOLDEN / folder).glob("*.input.json"))
    assert found, f"no golden cases in {folder}"
    return found


def run_request(case: dict[str, Any]) -> dict[str, Any]:
    endpoint = Endpoint(case["endpoint"])
    translator = translate.chat_request if endpoint is Endpoint.CHAT else translate.generate_request
    body, thinking, lost = translator(case["body"])
    validate("CreateChatCompletionRequest", {**body, "model": "m"})
    wanted = (
        None if thinking is None else {"enabled": thinking.enabled, "show": thinking.show, "effort": thinking.effort}
    )
    return {"output": body, "thinking": wanted, "degradations": lost_as_json(lost)}


def run_response(case: dict[str, Any]) -> dict[str, Any]:
    endpoint = Endpoint(case["endpoint"])
    answer, lost = translate.completion_response(
        case["completion"],
        endpoint,
        model=case["model"],
        created_at=CREATED,
        timings=TIMINGS,
        show_thinking=case["show_thinking"],
    )
    model = ollama.ChatResponse if endpoint is Endpoint.CHAT else ollama.GenerateResponse
    model.model_validate(answer)
    return {"output": answer, "degradations": lost_as_json(lost)}


def run_stream(case: dict[str, Any]) -> dict[str, Any]:
    endpoint = Endpoint(case["endpoint"])
    stream = translate.OllamaStream(case["model"], endpoint, show_thinking=case["show_thinking"])
    objects = [o for chunk in case["chunks"] for o in stream.feed(chunk, CREATED)] + stream.finish(TIMINGS)
    model = ollama.ChatResponse if endpoint is Endpoint.CHAT else ollama.GenerateResponse
    for obj in objects:
        model.model_validate(obj)
    assert [o["done"] for o in objects] == [False] * (len(objects) - 1) + [True]
    return {"output": objects, "degradations": lost_as_json(stream.degradations)}


RUNNERS = {"ollama_request": run_request, "ollama_response": run_response, "ollama_stream": run_stream}


@pytest.mark.parametrize(
    ("folder", "path"),
    [(folder, path) for folder in RUNNERS for path in cases(folder)],
    ids=lambda v: case_id(v) if isinstance(v, Path) else v,
)
def test_ollama_golden(folder: str, path: Path) -> None:
    result = RUNNERS[folder](orjson.loads(path.read_bytes()))
    assert result == orjson.loads(expected_path(path, "json").read_bytes())

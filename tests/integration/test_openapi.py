"""schemathesis against docs/openapi.yaml and a live gateway with a fixture
upstream: for generated valid and invalid inputs on every endpoint, no 5xx,
the status and body conform to the description, and every error has the
shape of its route's API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import start_gateway
from tests.support import endpoint, fleet_config

from octoroute.demo.simulated import SimulatedUpstream

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(SPEC)
EXAMPLES = int(os.environ.get("OCTOROUTE_HYPOTHESIS_EXAMPLES", "40"))  # per operation, to keep `make test` short


@schemathesis.check
def error_shape_of_the_route(ctx: Any, response: Any, case: Any) -> bool | None:
    """Any 4xx or 5xx is Anthropic's error object under /v1/messages, Ollama's under /api/, OpenAI's elsewhere."""
    if response.status_code < 400:
        return None
    body = response.json()
    if case.path.startswith("/api/"):
        assert set(body) == {"error"}, body
        assert isinstance(body["error"], str), body
    elif case.path.startswith("/v1/messages"):
        assert body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
    else:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape_of_the_route,
]


@pytest.fixture(scope="module")
def running(loop_thread):
    sim = SimulatedUpstream(label="fast")
    loop_thread.run(sim.start())
    config = fleet_config({"fast": [endpoint(sim, "m")], "embed": [endpoint(sim, "e")]})
    config["groups"] = {"embed": {"serves": ["embeddings"]}}
    gateway = loop_thread.run(start_gateway(config))
    yield gateway
    loop_thread.run(gateway.runner.cleanup())
    loop_thread.run(sim.stop())


@pytest.fixture(scope="module")
def gateway_url(running) -> str:
    return str(running.url)


def test_the_description_covers_every_endpoint(running) -> None:
    paths = {operation.path for operation in (result.ok() for result in schema.get_all_operations())}
    served = {route.resource.canonical for route in running.app.router.routes() if route.resource is not None}
    assert paths == served - {"/metrics", "/dashboard"}  # Prometheus text and an HTML page
    assert paths == {
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/v1/responses/{response_id}",
        "/v1/models",
        "/v1/embeddings",
        "/v1/completions",
        "/api/embed",
        "/api/embeddings",
        "/chat",
        "/health",
        "/ready",
        "/models",
        "/metrics.json",
        "/",
        "/api/chat",
        "/api/generate",
        "/api/tags",
        "/api/show",
        "/api/ps",
        "/api/version",
    }


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_generated_requests(case, gateway_url) -> None:
    case.call_and_validate(base_url=gateway_url, checks=CHECKS, timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
        (
            "/v1/messages",
            {"model": "auto", "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/v1/responses", {"model": "auto", "stream": True, "input": "hi"}),
        ("/v1/completions", {"model": "auto", "stream": True, "prompt": "hi"}),
    ],
)
def test_streamed_answers_conform_to_the_description(path: str, body: dict[str, Any], gateway_url: str) -> None:
    """The generator draws `stream: true` only now and then; these always do."""
    case = schema[path]["POST"].Case(body=body, headers={"Content-Type": "application/json"})
    response = case.call(base_url=gateway_url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream")
    case.validate_response(response, checks=CHECKS)

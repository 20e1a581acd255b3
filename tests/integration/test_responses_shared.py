"""`previous_response_id`, `GET` and `DELETE /v1/responses/{id}` work whichever process
answers: the workers of one `octoroute serve --workers 2` (a fresh connection per
request, so the kernel spreads them; which worker answered is read from the
request id's per-process prefix), and two gateways sharing one real redis-server.
Driven by the official `openai` SDK, streamed and not."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from tests.integration.test_shared_state import (
    ID_PREFIX,
    Served,
    backend_up,
    request,
    serve,  # noqa: F401  (fixture)
    shared,
)
from tests.support import endpoint, fleet_config

MAX_HOPS = 200  # fresh connections until both workers have served follow-ups (2**-199 to fail by chance)
MIN_HOPS = 8


@pytest.fixture
def sdk() -> Iterator[Callable[[Served], openai.OpenAI]]:
    """Factory: an SDK client for a gateway that opens a new connection for every request."""
    made: list[openai.OpenAI] = []

    def make(served: Served) -> openai.OpenAI:
        http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        client = openai.OpenAI(
            base_url=served.base_url,
            api_key="client-a",
            max_retries=0,
            http_client=http,
            _strict_response_validation=True,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def worker_of(headers: httpx.Headers) -> str:
    return headers["x-request-id"][:ID_PREFIX]


def create(client: openai.OpenAI, *, stream: bool, **body: Any) -> tuple[Response, str]:
    """(the response, the worker that answered), streamed or not."""
    if not stream:
        raw = client.responses.with_raw_response.create(model="fast", **body)
        return raw.parse(), worker_of(raw.headers)
    with client.responses.with_streaming_response.create(model="fast", stream=True, **body) as raw:
        events = list(raw.parse())
        worker = worker_of(raw.headers)
    assert events[-1].type == "response.completed", events[-1]
    return events[-1].response, worker


def test_a_conversation_continues_on_whichever_worker_answers(upstreams, serve, sdk) -> None:  # noqa: F811
    sim = upstreams("fast")
    served = serve(fleet_config({"fast": [endpoint(sim, "m")]}), workers=2)
    client = sdk(served)
    previous, worker = create(client, stream=False, input="Hi, I am Ann.")
    chain = [(previous.id, worker)]
    for hop in range(1, MAX_HOPS + 1):
        if hop > MIN_HOPS and len({w for _, w in chain}) == 2:
            break
        answer, worker = create(client, stream=hop % 2 == 0, previous_response_id=previous.id, input=f"turn {hop}")
        assert answer.previous_response_id == previous.id
        # the upstream got every earlier turn (user and assistant) before this one
        assert len(sim.chat_requests[-1].body["messages"]) == 2 * hop + 1, served.output()
        chain.append((answer.id, worker))
        previous = answer
    workers = [w for _, w in chain]
    assert len(set(workers)) == 2, workers  # both workers made responses of the chain ...
    crossings = sum(a != b for a, b in itertools.pairwise(workers))
    assert crossings >= 1  # ... so at least one follow-up found a response the other worker stored
    # every response of the chain can be read back, and a delete is seen by both workers
    for response_id, _ in chain:
        assert client.responses.retrieve(response_id).id == response_id
    first = chain[0][0]
    client.responses.delete(first)
    answered_404: set[str] = set()
    for _ in range(MAX_HOPS):
        status, headers, _ = request(served.port, "GET", f"/v1/responses/{first}")
        assert status == 404
        answered_404.add(headers["x-request-id"][:ID_PREFIX])
        if len(answered_404) == 2:
            break
    assert len(answered_404) == 2
    with pytest.raises(openai.BadRequestError) as gone:
        client.responses.create(model="fast", previous_response_id=first, input="hello?")
    assert gone.value.body["param"] == "previous_response_id"


def two_gateways_one_conversation(
    upstreams: Any,
    redis_server: Any,
    start: Any,
    sdk: Callable[[Served], openai.OpenAI],
) -> tuple[Any, tuple[Served, openai.OpenAI], tuple[Served, openai.OpenAI], Response, Response]:
    """Gateways A and B (`start`: the `serve` fixture) on one Redis in front of one
    upstream; a response made on A and its follow-up made on B. Returns the upstream,
    (A, its client), (B, its client) and the two responses."""
    sim = upstreams("fast")
    data = fleet_config({"fast": [endpoint(sim, "m")]}, state=shared(redis_server))
    a, b = start(data), start(data)
    on_a, on_b = sdk(a), sdk(b)
    first, _ = create(on_a, stream=False, input="Hi, I am Ann.")
    second, _ = create(on_b, stream=False, previous_response_id=first.id, input="What is my name?")
    return sim, (a, on_a), (b, on_b), first, second


def test_a_response_made_on_one_gateway_is_continued_on_another_through_redis(
    upstreams,
    redis_server,
    serve,  # noqa: F811
    sdk,
) -> None:
    sim, (a, on_a), (b, on_b), first, second = two_gateways_one_conversation(upstreams, redis_server, serve, sdk)
    assert second.previous_response_id == first.id
    assert len(sim.chat_requests[-1].body["messages"]) == 3
    third, _ = create(on_a, stream=True, previous_response_id=second.id, input="And again?")
    assert len(sim.chat_requests[-1].body["messages"]) == 5
    assert on_b.responses.retrieve(third.id).output_text == third.output_text  # streamed on A, read on B
    on_b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        on_a.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as gone:
        on_a.responses.create(model="fast", previous_response_id=first.id, input="hello?")
    assert gone.value.body["param"] == "previous_response_id"
    for served in (a, b):  # all of it went through Redis: neither gateway fell back to its own memory
        assert backend_up(served.port) == 1.0
        assert "using local state" not in served.output()


def test_with_redis_killed_each_gateway_still_continues_what_it_stored_itself(
    upstreams,
    redis_server,
    serve,  # noqa: F811
    sdk,
) -> None:
    sim, (a, on_a), (b, on_b), first, second = two_gateways_one_conversation(upstreams, redis_server, serve, sdk)
    redis_server.kill()
    # A's own response, from A's copy: the conversation goes on, no error
    third, _ = create(on_a, stream=True, previous_response_id=first.id, input="Still there?")
    assert len(sim.chat_requests[-1].body["messages"]) == 3
    assert on_a.responses.retrieve(third.id).id == third.id  # stored during the outage, in A
    assert on_b.responses.retrieve(second.id).id == second.id
    # the other gateway's response: the 400 / 404 of an unknown id, never a 500
    with pytest.raises(openai.BadRequestError) as unknown:
        on_b.responses.create(model="fast", previous_response_id=first.id, input="hello?")
    assert unknown.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        on_b.responses.retrieve(third.id)
    for served in (a, b):
        assert backend_up(served.port) == 0.0  # the shared state fell back, as for every other use

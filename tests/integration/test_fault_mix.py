"""The fault mix (issue 11): a gateway in front of healthy and faulty upstreams of
every kind, mixed traffic on both APIs, stream and not, good and bad input. Every
request is answered: 2xx from a healthy endpoint, the API's error event on a
stream cut after its commit point, a well-formed 5xx only where no endpoint could
serve, a well-formed 4xx for bad input. bench/faults.py runs it with larger numbers."""

from __future__ import annotations

from octoroute.demo.faults import (
    POST_COMMIT,
    VIOLATIONS,
    Api,
    BadInput,
    Fault,
    FaultFleet,
    Outcome,
    Planned,
    judge,
    plan_mix,
    run_mix,
)

REQUESTS = 240


def test_the_fault_mix_loses_no_request_and_never_cuts_a_stream_silently(upstreams, gateway, loop_thread):
    healthy = upstreams("healthy")
    fleet = FaultFleet(healthy.base_url)
    loop_thread.run(fleet.__aenter__())
    try:
        gw = gateway(fleet.gateway_config())
        report = loop_thread.run(run_mix(gw.url, plan_mix(REQUESTS, seed=1), concurrency=16), timeout=120)
    finally:
        loop_thread.run(fleet.__aexit__(None, None, None))
    assert report.total == REQUESTS
    assert report.violations == [], "\n".join(report.violations)
    assert not set(report.outcomes) & VIOLATIONS
    # Every kind of fault was met, and the mix reached each verdict it should.
    for fault, server in fleet.servers.items():
        assert fault is Fault.REFUSED or server.served > 0, fault
    assert report.outcomes[Outcome.SERVED] > REQUESTS // 2
    assert report.outcomes[Outcome.NO_ENDPOINT] > 0
    assert report.outcomes[Outcome.REJECTED] > 0
    assert set(report.by_kind) >= {*(f.value for f in Fault), *(b.value for b in BadInput), "dead"}
    assert healthy.count > 0


def test_the_verdicts_catch_what_must_never_happen():
    """The judge is what makes the mix able to fail: each violation is recognised."""
    chat = Planned(Api.OPENAI, stream=False, fault=Fault.ERROR_500)
    stream = Planned(Api.OPENAI, stream=True, fault=Fault.BAD_FIRST_EVENT)
    messages = Planned(Api.ANTHROPIC, stream=True, fault=Fault.CUT_UNDELIMITED)
    bad = Planned(Api.ANTHROPIC, stream=False, bad=BadInput.DEEP_JSON)
    error = b'{"error":{"message":"m","type":"t"}}'
    anthropic_error = b'{"type":"error","error":{"message":"m","type":"t"}}'
    sse = "text/event-stream"
    assert judge(chat, 502, "", "application/json", error) is Outcome.LOST
    assert judge(chat, 200, "error_500", "application/json", b'{"object":"chat.completion"}') is Outcome.WRONG_ENDPOINT
    assert judge(chat, 200, "ok-error_500", "application/json", b"<html>") is Outcome.MALFORMED
    assert judge(chat, 200, "ok-error_500", "application/json", b'{"object":"chat.completion"}') is Outcome.SERVED
    assert judge(stream, 200, "ok-x", sse, b'data: {"a":1}\n\n') is Outcome.SILENT_CUT
    assert judge(stream, 200, "ok-x", sse, b'data: {"a":1}\n\ndata: [DONE]\n\n') is Outcome.SERVED
    assert judge(stream, 200, "ok-x", sse, b'data: {"a":1}\n\ndata: {"error":{}}\n\n') is Outcome.LOST
    assert Fault.CUT_UNDELIMITED in POST_COMMIT
    cut = b"event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n"
    assert judge(messages, 200, "cut_undelimited", sse, cut) is Outcome.STREAM_ERROR_EVENT
    invented = b"event: message_start\ndata: {}\n\n"
    assert judge(messages, 200, "cut_undelimited", sse, invented) is Outcome.SILENT_CUT
    assert judge(bad, 500, "", "application/json", anthropic_error) is Outcome.SERVER_ERROR_FOR_BAD_INPUT
    assert judge(bad, 400, "", "application/json", error) is Outcome.MALFORMED  # OpenAI shape on /v1/messages
    assert judge(bad, 400, "", "application/json", anthropic_error) is Outcome.REJECTED

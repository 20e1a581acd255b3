"""OpenTelemetry tracing: spans, links, statuses, sampling, propagation and the OTLP export path."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.support import serve_on_loopback

from octoroute.config.models import TracingConfig
from octoroute.core.errors import ConfigError
from octoroute.observe.tracing import Tracing

CLIENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CLIENT_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{CLIENT_TRACE_ID:032x}-{CLIENT_SPAN_ID:016x}-01"


def in_memory(**config: object) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(TracingConfig.model_validate({"enabled": True, **config}), exporter)
    return tracing, exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attempt_number(span: ReadableSpan) -> int:
    number = (span.attributes or {})["octoroute.attempt"]
    assert isinstance(number, int)
    return number


# --- the request's spans ------------------------------------------------------


def test_request_routing_and_two_attempts_make_one_linked_trace() -> None:
    tracing, exporter = in_memory(service_name="gw-test")
    request = tracing.request("POST", "/v1/chat/completions", "req-1")
    route = tracing.routing(request)
    route.set("octoroute.tier", "fast")
    route.set("octoroute.strategy", "rule")
    route.set("octoroute.reason", "rule_casual_short")
    route.end()
    first = tracing.attempt(request, "fast/a", "fast", 1)
    first.set("octoroute.outcome", "timeout")
    first.end("fast/a: first_byte timeout after 10s")
    second = tracing.attempt(request, "fast/b", "fast", 2)
    second.set("octoroute.outcome", "ok")
    second.end()
    request.set("http.response.status_code", 200)
    request.end()

    spans = by_name(exporter.get_finished_spans())
    assert sorted((name, len(group)) for name, group in spans.items()) == [
        ("octoroute.request", 1),
        ("octoroute.route", 1),
        ("octoroute.upstream", 2),
    ]
    [root], [routing] = spans["octoroute.request"], spans["octoroute.route"]
    failed, ok = sorted(spans["octoroute.upstream"], key=attempt_number)

    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    assert dict(root.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "octoroute.request_id": "req-1",
        "http.response.status_code": 200,
    }
    assert root.status.status_code is StatusCode.UNSET
    assert root.resource.attributes["service.name"] == "gw-test"

    assert routing.kind is SpanKind.INTERNAL
    assert dict(routing.attributes or {}) == {
        "octoroute.tier": "fast",
        "octoroute.strategy": "rule",
        "octoroute.reason": "rule_casual_short",
    }

    assert failed.kind is SpanKind.CLIENT
    assert ok.kind is SpanKind.CLIENT
    assert dict(failed.attributes or {}) == {
        "octoroute.endpoint": "fast/a",
        "octoroute.group": "fast",
        "octoroute.attempt": 1,
        "octoroute.outcome": "timeout",
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "fast/a: first_byte timeout after 10s"
    assert dict(ok.attributes or {})["octoroute.outcome"] == "ok"
    assert ok.status.status_code is StatusCode.UNSET

    for child in (routing, failed, ok):
        assert trace_id(child) == trace_id(root)
        assert parent_id(child) == span_id(root)
    tracing.shutdown()


def test_request_error_marks_the_root_span() -> None:
    tracing, exporter = in_memory()
    request = tracing.request("POST", "/v1/messages", "req-2")
    request.set("http.response.status_code", 502)
    request.end("all endpoints for 'fast' failed")
    [root] = exporter.get_finished_spans()
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "all endpoints for 'fast' failed"
    tracing.shutdown()


def test_a_client_traceparent_is_continued() -> None:
    tracing, exporter = in_memory()
    request = tracing.request("POST", "/v1/chat/completions", "req-3", TRACEPARENT)
    tracing.attempt(request, "fast/a", "fast", 1).end()
    request.end()
    spans = by_name(exporter.get_finished_spans())
    [root], [upstream] = spans["octoroute.request"], spans["octoroute.upstream"]
    assert trace_id(root) == CLIENT_TRACE_ID
    assert root.parent is not None
    assert root.parent.is_remote
    assert parent_id(root) == CLIENT_SPAN_ID
    assert trace_id(upstream) == CLIENT_TRACE_ID
    assert parent_id(upstream) == span_id(root)
    tracing.shutdown()


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    tracing, exporter = in_memory()
    tracing.request("GET", "/v1/models", "req-4", "not-a-traceparent").end()
    [root] = exporter.get_finished_spans()
    assert root.parent is None
    assert trace_id(root) != CLIENT_TRACE_ID
    tracing.shutdown()


def test_spans_ignore_the_ambient_context() -> None:
    # The request path hops between tasks, so an unrelated current span must not become a parent.
    tracing, exporter = in_memory()
    outer = trace.NonRecordingSpan(
        trace.SpanContext(CLIENT_TRACE_ID, CLIENT_SPAN_ID, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(outer):
        tracing.request("POST", "/v1/chat/completions", "req-5").end()
    [root] = exporter.get_finished_spans()
    assert root.parent is None
    assert trace_id(root) != CLIENT_TRACE_ID
    tracing.shutdown()


# --- sampling -------------------------------------------------------------------


def test_sample_ratio_zero_records_nothing() -> None:
    tracing, exporter = in_memory(sample_ratio=0)
    for n in range(20):
        request = tracing.request("POST", "/v1/chat/completions", f"req-{n}")
        route = tracing.routing(request)
        route.set("octoroute.tier", "fast")
        route.end()
        attempt = tracing.attempt(request, "fast/a", "fast", 1)
        attempt.set("octoroute.outcome", "http_5xx")
        attempt.end("HTTP 500")
        request.end()
    assert exporter.get_finished_spans() == ()
    tracing.shutdown()


def test_an_unsampled_client_trace_stays_unsampled() -> None:
    tracing, exporter = in_memory(sample_ratio=1)
    unsampled = TRACEPARENT[:-2] + "00"
    request = tracing.request("POST", "/v1/chat/completions", "req-6", unsampled)
    tracing.attempt(request, "fast/a", "fast", 1).end()
    request.end()
    assert exporter.get_finished_spans() == ()
    tracing.shutdown()


# --- handle and lifecycle -------------------------------------------------------


def test_end_twice_is_harmless(caplog: pytest.LogCaptureFixture) -> None:
    tracing, exporter = in_memory()
    request = tracing.request("POST", "/v1/chat/completions", "req-7")
    request.end("boom")
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        request.end()
        request.end("again")
        request.set("http.response.status_code", 500)
    assert caplog.records == []  # the SDK warns on a second end() and on set-after-end; neither reached it
    [root] = exporter.get_finished_spans()
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "boom"
    assert "http.response.status_code" not in (root.attributes or {})
    tracing.shutdown()


class CountingExporter(InMemorySpanExporter):
    def __init__(self) -> None:
        super().__init__()
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1
        super().shutdown()


def test_shutdown_stops_export_and_is_safe_twice(caplog: pytest.LogCaptureFixture) -> None:
    exporter = CountingExporter()
    tracing = Tracing.build(TracingConfig(enabled=True), exporter)
    tracing.request("POST", "/v1/chat/completions", "before").end()
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        tracing.shutdown()
        tracing.shutdown()
    assert caplog.records == []
    assert exporter.shutdowns == 1  # a real exporter warns when shut down twice
    late = tracing.request("POST", "/v1/chat/completions", "after")
    with caplog.at_level(logging.CRITICAL, logger="opentelemetry"):  # the SDK warns about the dropped span
        late.end()
    assert [dict(s.attributes or {})["octoroute.request_id"] for s in exporter.get_finished_spans()] == ["before"]


def test_each_tracing_has_its_own_provider() -> None:
    one, one_spans = in_memory(service_name="one")
    two, two_spans = in_memory(service_name="two")
    one.request("POST", "/v1/chat/completions", "a").end()
    two.request("POST", "/v1/messages", "b").end()
    assert [s.resource.attributes["service.name"] for s in one_spans.get_finished_spans()] == ["one"]
    assert [s.resource.attributes["service.name"] for s in two_spans.get_finished_spans()] == ["two"]
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # the global one is untouched
    one.shutdown()
    two.shutdown()


# --- without the extra ----------------------------------------------------------

OTEL_MODULES = [
    "opentelemetry",
    "opentelemetry.sdk",
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.trace.sampling",
    "opentelemetry.exporter",
    "opentelemetry.exporter.otlp",
    "opentelemetry.exporter.otlp.proto",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
]


def test_without_opentelemetry_build_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError) as caught:
        Tracing.build(TracingConfig(enabled=True))
    [problem] = caught.value.problems
    assert problem.path == "observability.tracing.enabled"
    assert "pip install 'octoroute[otel]'" in problem.message


def test_without_the_otlp_exporter_build_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError) as caught:
        Tracing.build(TracingConfig(enabled=True))
    [problem] = caught.value.problems
    assert "pip install 'octoroute[otel]'" in problem.message


# --- the real OTLP/HTTP export path ---------------------------------------------


@dataclass
class Post:
    path: str
    content_type: str
    body: bytes


async def start_collector(posts: list[Post]) -> tuple[web.AppRunner, int]:
    async def traces(request: web.Request) -> web.Response:
        posts.append(Post(request.path, request.content_type, await request.read()))
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    return await serve_on_loopback(app)


def test_shutdown_flushes_spans_to_an_otlp_http_collector(caplog: pytest.LogCaptureFixture) -> None:
    posts: list[Post] = []

    async def main() -> None:
        runner, port = await start_collector(posts)
        try:
            config = TracingConfig(enabled=True, endpoint=f"http://127.0.0.1:{port}/v1/traces", service_name="gw-otlp")
            tracing = Tracing.build(config)
            request = tracing.request("POST", "/v1/chat/completions", "req-otlp")
            attempt = tracing.attempt(request, "fast/a", "fast", 1)
            attempt.set("octoroute.outcome", "ok")
            attempt.end()
            request.end()
            # The batch processor holds spans for seconds; only the flush in shutdown() sends them
            # now. It blocks (the exporter is synchronous), so it runs off the loop serving the collector.
            await asyncio.to_thread(tracing.shutdown)
            with caplog.at_level(logging.WARNING, logger="opentelemetry"):
                tracing.shutdown()  # the exporter itself warns when shut down twice
            assert caplog.records == []
        finally:
            await runner.cleanup()

    asyncio.run(main())

    assert [(p.path, p.content_type) for p in posts] == [("/v1/traces", "application/x-protobuf")]
    export = ExportTraceServiceRequest.FromString(posts[0].body)
    [resource_spans] = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "gw-otlp"
    names = sorted(span.name for scope in resource_spans.scope_spans for span in scope.spans)
    assert names == ["octoroute.request", "octoroute.upstream"]

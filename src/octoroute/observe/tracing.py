"""OpenTelemetry spans for requests, routing decisions and upstream attempts.

Optional: the `otel` extra (`pip install 'octoroute[otel]'`) brings the
OpenTelemetry API, SDK and OTLP/HTTP exporter. This module imports without
them; only `Tracing.build` imports OpenTelemetry, and turns its absence into
a `ConfigError` with the install hint.

Each `Tracing` owns its own `TracerProvider` (never the global one), so
several apps in one process export independently. Parents are passed
explicitly instead of read from the ambient context, because one request's
work hops between asyncio tasks:

    tracing = Tracing.build(config.observability.tracing)
    request = tracing.request("POST", "/v1/chat/completions", request_id, headers.get("traceparent"))
    route = tracing.routing(request)
    route.set("octoroute.tier", "fast")
    route.end()
    attempt = tracing.attempt(request, "fast/qwen", "fast", 1)
    attempt.set("octoroute.outcome", "timeout")
    attempt.end("first_byte timeout after 10s")
    request.set("http.response.status_code", 200)
    request.end()
    tracing.shutdown()  # at app cleanup: flushes what is queued
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoroute.core.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from octoroute.config.models import TracingConfig

INSTALL_HINT = "tracing needs OpenTelemetry; install the extra: pip install 'octoroute[otel]'"


class SpanHandle:
    """One open span. `end` is idempotent; `set` after `end` is ignored."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    def set(self, key: str, value: str | int | float | bool) -> None:
        if not self._ended:
            self._span.set_attribute(key, value)

    def end(self, error: str | None = None) -> None:
        """Close the span; `error` marks it failed (status ERROR) with that description."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            # Only failing spans pay for this import; it is a dict lookup once build() has run.
            from opentelemetry.trace import StatusCode

            self._span.set_status(StatusCode.ERROR, error)
        self._span.end()


class Tracing:
    """Spans for requests, routing decisions and upstream attempts. Built only when tracing is enabled."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("octoroute")
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._propagator = TraceContextTextMapPropagator()
        self._empty_context: Callable[[], Context] = Context
        self._in_context = set_span_in_context
        self._shut = False

    @classmethod
    def build(cls, config: TracingConfig, exporter: SpanExporter | None = None) -> Tracing:
        """A provider exporting to `config.endpoint` by OTLP/HTTP in batches, or, when
        `exporter` is given (tests), to that exporter synchronously as each span ends."""
        try:
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError as exc:
            raise ConfigError([ConfigProblem("observability.tracing.enabled", INSTALL_HINT)]) from exc

        processor: SpanProcessor
        if exporter is None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise ConfigError([ConfigProblem("observability.tracing.enabled", INSTALL_HINT)]) from exc
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint))
        else:
            processor = SimpleSpanProcessor(exporter)
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({SERVICE_NAME: config.service_name}),
            # The app's cleanup calls shutdown(); an atexit hook would keep every
            # provider (and its exporter) alive for the life of the process.
            shutdown_on_exit=False,
        )
        provider.add_span_processor(processor)
        return cls(provider)

    def request(self, method: str, route: str, request_id: str, traceparent: str | None = None) -> SpanHandle:
        """The root span of one request; continues the client's trace when it sent a W3C `traceparent`."""
        # An explicit empty context: the ambient one is not this request's (see module docstring).
        context = self._empty_context()
        if traceparent is not None:
            context = self._propagator.extract({"traceparent": traceparent}, context)
        span = self._tracer.start_span(
            "octoroute.request",
            context,
            self._server,
            {"http.request.method": method, "http.route": route, "octoroute.request_id": request_id},
        )
        return SpanHandle(span)

    def routing(self, parent: SpanHandle) -> SpanHandle:
        """The routing decision; the caller sets `octoroute.tier`, `octoroute.strategy`, `octoroute.reason`."""
        return SpanHandle(self._tracer.start_span("octoroute.route", self._child_of(parent)))

    def attempt(self, parent: SpanHandle, endpoint: str, group: str, number: int) -> SpanHandle:
        """One upstream attempt; the caller sets `octoroute.outcome` and ends it with the error, if any."""
        span = self._tracer.start_span(
            "octoroute.upstream",
            self._child_of(parent),
            self._client,
            {"octoroute.endpoint": endpoint, "octoroute.group": group, "octoroute.attempt": number},
        )
        return SpanHandle(span)

    def shutdown(self) -> None:
        """Export what is queued and stop; blocks up to the exporter's timeout. Safe to call twice."""
        if self._shut:
            return
        self._shut = True
        self._provider.shutdown()

    def _child_of(self, parent: SpanHandle) -> Context:
        return self._in_context(parent._span, self._empty_context())

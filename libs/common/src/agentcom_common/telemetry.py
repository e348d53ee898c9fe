"""OpenTelemetry setup and W3C trace context in NATS headers.

Export is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise spans still exist (so
logs carry trace ids and context still travels between services) but nothing is sent anywhere.
"""

import contextlib
from collections.abc import Generator, Mapping

from opentelemetry import context as otel_context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentcom_common import __version__, metering, task_traces


def configure(service: str, otlp_endpoint: str | None) -> task_traces.Provider:
    """Install the global tracer and meter providers for this process; returns the tracer one."""
    resource = Resource.create(
        {"service.name": f"agentcom-{service}", "service.version": __version__}
    )
    # task roots get ids derived from the task id (`task_traces`)
    tracer_provider = task_traces.Provider(resource=resource, id_generator=task_traces.TaskIds())
    exporters: list[PeriodicExportingMetricReader] = []
    if otlp_endpoint:
        # imported only when traces are exported: the OTLP exporters (protobuf, requests) took
        # about a fifth of every process's start-up imports, with or without an endpoint
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
        )
        exporters.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        )
    trace.set_tracer_provider(tracer_provider)
    metering.install(resource, exporters)
    return tracer_provider


def inject_headers(
    headers: dict[str, str] | None = None, context: Context | None = None
) -> dict[str, str]:
    """Headers with the `traceparent` (and `tracestate`) of `context`'s span, by default the
    current one, added."""
    carrier = dict(headers or {})
    propagate.inject(carrier, context=context)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The trace context carried by a message's headers (empty when none)."""
    return propagate.extract(dict(headers or {}))


@contextlib.contextmanager
def continued(
    headers: Mapping[str, str] | None, name: str, kind: trace.SpanKind, scope: str
) -> Generator[trace.Span]:
    """A span continuing the trace a received message carries (`traceparent`), current for
    the block: what the handler publishes or writes to an outbox then carries it on.

    When no span is exported (`task_traces.exporting`) the received context itself is current
    for the block: the trace still continues, and no span is built per request or message
    only to be dropped."""
    token = otel_context.attach(extract_context(headers))
    try:
        if not task_traces.exporting():
            yield trace.get_current_span()
            return
        with task_traces.tracer(scope).start_as_current_span(name, kind=kind) as span:
            yield span
    finally:
        otel_context.detach(token)

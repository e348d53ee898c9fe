"""A task's spans, recorded by different code with nothing passed between them but the task
id, form one trace under the root the queue records at submit."""

import subprocess
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentcom_common import task_traces, telemetry


def test_spans_of_one_task_share_its_derived_trace_under_its_root(
    spans: InMemorySpanExporter,
) -> None:
    task_id = "task-00c0ffee12345678"
    with trace.get_tracer("t").start_as_current_span("POST /api/tasks") as request:
        task_traces.record_root(task_id, "task submit", "t")
    with task_traces.span(task_id, "sidecar run", "t"):
        headers = telemetry.inject_headers()
    by_name = {
        s.name: s
        for s in spans.get_finished_spans()
        if s.context is not None and s.context.trace_id == 0x00C0FFEE12345678
    }
    assert set(by_name) == {"task submit", "sidecar run"}
    root = by_name["task submit"]
    assert root.parent is None
    assert root.context is not None
    assert root.context.span_id == 0x00C0FFEE12345678
    assert [link.context.span_id for link in root.links] == [request.get_span_context().span_id]
    child = by_name["sidecar run"]
    assert child.parent is not None
    assert child.parent.span_id == root.context.span_id
    assert headers["traceparent"].startswith(f"00-{task_traces.trace_id(task_id)}-")
    assert task_traces.trace_id(task_id) == "000000000000000000c0ffee12345678"


def test_a_task_id_of_another_form_gets_a_stable_hashed_trace() -> None:
    assert task_traces.ids("goal-x/1") == task_traces.ids("goal-x/1")
    assert task_traces.ids("goal-x/1") != task_traces.ids("goal-x/2")


def test_only_a_provider_with_a_span_processor_counts_as_exporting() -> None:
    # telemetry.configure's provider without OTLP has no span processor: a root per task would
    # be built only to be dropped (the queue's submit path), so none is built
    provider = task_traces.Provider()
    assert not task_traces.exporting(provider)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert task_traces.exporting(provider)
    assert task_traces.exporting(trace.NoOpTracerProvider())  # not ours: assumed to keep them


def test_without_otlp_no_span_is_built_and_the_trace_context_still_travels() -> None:
    # a fresh process configured as a service without OTEL_EXPORTER_OTLP_ENDPOINT: nothing is
    # built to be dropped, and what a task span's block publishes still names the task's trace
    probe = """
from opentelemetry import trace
from agentcom_common import task_traces, telemetry
provider = telemetry.configure("probe", None)
assert not task_traces.exporting()
with task_traces.span("task-00c0ffee12345678", "scheduler assign", "t") as span:
    print(telemetry.inject_headers()["traceparent"], span.is_recording())
received = {"traceparent": "00-0000000000000000000000000000beef-000000000000cafe-01"}
with telemetry.continued(received, "rpc", trace.SpanKind.SERVER, "t") as span:
    print(telemetry.inject_headers()["traceparent"], span.is_recording())
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == [
        "00-000000000000000000c0ffee12345678-00c0ffee12345678-01",
        "False",
        # an RPC or a consumed message: the caller's context continues, no span of its own
        "00-0000000000000000000000000000beef-000000000000cafe-01",
        "False",
    ]
